/**
 * Recipes (recipes/*.json, imported as modules so a bundled program carries them): default values
 * for the tuning flags, which explicit flags override. Values from auto_round/cli/main.py RECIPES.
 */
import best from "../../recipes/best.json" with { type: "json" };
import defaultRecipe from "../../recipes/default.json" with { type: "json" };
import light from "../../recipes/light.json" with { type: "json" };
import optRtn from "../../recipes/opt_rtn.json" with { type: "json" };
import rtn from "../../recipes/rtn.json" with { type: "json" };
import { UsageError } from "../errors.ts";

/** One recipe's defaults. `lr: null` means AutoRound's rule (1/iters, 2/iters for ≤3 bits in best). */
export interface Recipe {
  name: string;
  description: string;
  iters: number;
  nsamples: number;
  seqlen: number;
  batch_size: number;
  lr: number | null;
  minmax_lr: number | null;
  disable_opt_rtn?: boolean;
}

/** Recipes by name, with AutoRound's CLI names as aliases. */
export const RECIPES: Readonly<Record<string, Recipe>> = {
  default: defaultRecipe,
  "auto-round": defaultRecipe,
  best,
  "auto-round-best": best,
  light,
  "auto-round-light": light,
  rtn,
  "auto-round-rtn": rtn,
  opt_rtn: optRtn,
  "auto-round-opt-rtn": optRtn,
};

/** Look a recipe up by name or alias. */
export function getRecipe(name: string): Recipe {
  const r = Object.hasOwn(RECIPES, name.toLowerCase()) ? RECIPES[name.toLowerCase()] : undefined;
  if (!r) throw new UsageError(`unknown recipe "${name}" (use default, best, light, rtn or opt_rtn)`);
  return r;
}
