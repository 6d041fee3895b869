/**
 * Which Linear layers get quantized, and how: the default scheme, AutoRound's skip rules and the
 * user's `--layer_config` / `--ignore_layers` (auto_round/compressors/layer_config/resolver.py).
 *
 * Rules, in order:
 * 1. `--ignore_layers` names (exact, else substring of a layer name) stay in 16-bit.
 * 2. `--layer_config` entries: an exact layer name, or a pattern turned into a regex the way
 *    `to_standard_regex` does (plain text → substring match; `.*`, `^`, `$`, … kept as regex).
 *    Values: a preset name ("W8A16") or an object of bits / group_size / sym / data_type; bits ≥ 16
 *    keeps the layer in 16-bit.
 * 3. Integer weight-only schemes skip layers whose output or input size is not a multiple of 32
 *    (AutoRound's `_check_divisible_by_32`: the packed formats need it), and — a rule of the spec
 *    (ALGORITHM.md) that AutoRound handles by zero-padding instead — layers whose input size the
 *    group size does not divide.
 * 4. lm_head and embeddings are never quantized by this build (AutoRound's default `quant_lm_head`
 *    false; true is refused for tied embeddings there too).
 */
import { plainName, QuantizeError, quote, UsageError } from "../errors.ts";
import { blockLinears } from "../model/block_layout.ts";
import { blockPrefix, type ModelSpec, toStandardRegex } from "../model/config.ts";
import type { LayerPlan } from "../formats/run.ts";
import { PRESET_SCHEMES, validateScheme } from "./scheme.ts";
import { boundedRegExp, SlowRegexError } from "../std/regex.ts";
import { type QuantScheme } from "../qmath/quantized.ts";

/** A user entry of --layer_config after parsing. */
export interface LayerOverride {
  bits?: number;
  group_size?: number;
  sym?: boolean;
  data_type?: string;
}

/** Resolved plan for every Linear of the model, plus what the exporters record. */
export interface LayerConfigResult {
  /** Keyed by full layer name, e.g. `model.layers.0.self_attn.q_proj`. */
  layers: Map<string, LayerPlan & { inFeatures: number; outFeatures: number }>;
  /** User patterns that were regexes (kept for `extra_config`). */
  regexConfig: Map<string, LayerOverride>;
}

/** Shapes [out, in] of the Linear layers of block `i` (default 0). */
export function blockLinearShapes(spec: ModelSpec, i = 0): Record<string, [number, number]> {
  return Object.fromEntries(blockLinears(spec, i).map((l) => [l.name, [l.out, l.in]]));
}

/**
 * Parse `--layer_config`: a JSON object string, or the path of a JSON file. Shell-friendly
 * backslashes (`"\d"`) are repaired into valid JSON escapes as AutoRound does.
 */
export async function parseLayerConfigArg(arg: string): Promise<Record<string, LayerOverride>> {
  let text = arg.trim();
  if (!text.startsWith("{")) {
    try {
      text = await Deno.readTextFile(text);
    } catch {
      throw new UsageError(`--layer_config is neither a JSON object nor a readable file: ${quote(arg)}`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    try {
      parsed = JSON.parse(text.replace(/\\(?!["\\/bfnrtu])/g, "\\\\"));
    } catch (e) {
      throw new UsageError(`--layer_config is not valid JSON: ${(e as Error).message}`);
    }
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`--layer_config must be a JSON object of layer name → settings`);
  }
  const out: Record<string, LayerOverride> = {};
  for (const [name, v] of Object.entries(parsed as Record<string, unknown>)) {
    const where = `--layer_config[${quote(name)}]`;
    if (typeof v === "string") {
      const preset = Object.hasOwn(PRESET_SCHEMES, v.toUpperCase())
        ? PRESET_SCHEMES[v.toUpperCase()]
        : undefined;
      if (!preset) throw new UsageError(`${where}: unknown scheme ${quote(v)}`);
      out[name] = { bits: preset.bits, group_size: preset.groupSize, sym: preset.sym, data_type: "int" };
      continue;
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new UsageError(`${where} must be an object or a scheme name`);
    }
    const bad = Object.keys(v).filter((key) => !Object.hasOwn(OVERRIDE_TYPES, key));
    if (bad.length) {
      throw new UsageError(
        `${where}: unknown keys ${bad.map(plainName).join(", ")} (allowed: ${
          Object.keys(OVERRIDE_TYPES).join(", ")
        })`,
      );
    }
    for (const [key, value] of Object.entries(v)) {
      const type = OVERRIDE_TYPES[key];
      if (typeof value !== type || (type === "number" && !Number.isFinite(value))) {
        throw new UsageError(`${where}.${key} is ${quote(value)}, not a ${type}`);
      }
    }
    out[name] = v as LayerOverride;
  }
  return out;
}

/** The keys a --layer_config entry may set, and their JSON types. */
const OVERRIDE_TYPES: Record<string, "number" | "boolean" | "string"> = {
  bits: "number",
  group_size: "number",
  sym: "boolean",
  data_type: "string",
  act_bits: "number",
};

/** All Linear layer names in block order with their [out, in] shapes. */
export function modelLinears(spec: ModelSpec): { name: string; out: number; in: number; router?: true }[] {
  const res = [];
  for (let i = 0; i < spec.nLayers; i++) {
    for (const l of blockLinears(spec, i)) res.push({ ...l, name: blockPrefix(i, spec) + l.name });
  }
  return res;
}

/** Resolve the plan for every Linear of the model. */
export function resolveLayerConfig(
  spec: ModelSpec,
  scheme: QuantScheme,
  user: Record<string, LayerOverride> = {},
  ignoreLayers: string[] = [],
): LayerConfigResult {
  const linears = modelLinears(spec);
  const names = linears.map((l) => l.name);
  const userPlan = new Map<string, LayerOverride>();
  const regexConfig = new Map<string, LayerOverride>();
  for (const [key, ov] of Object.entries(user)) {
    if (names.includes(key)) {
      userPlan.set(key, ov);
      continue;
    }
    let re: RegExp;
    try {
      re = boundedRegExp(toStandardRegex(key));
    } catch (e) {
      const why = e instanceof SlowRegexError ? "is refused" : "is not a valid regex";
      throw new UsageError(`--layer_config pattern ${quote(key)} ${why}: ${(e as Error).message}`);
    }
    const matched = names.filter((n) => re.test(n));
    if (matched.length === 0) {
      throw new UsageError(`--layer_config ${quote(key)} matches no Linear layer of this model`);
    }
    regexConfig.set(key, ov);
    for (const n of matched) userPlan.set(n, { ...userPlan.get(n), ...ov });
  }
  const ignored = new Set<string>();
  for (const pat of ignoreLayers.filter((p) => p.length > 0)) {
    // AutoRound appends "." to names ending in a digit so "layers.1" does not also match "layers.10".
    const p = /\d$/.test(pat) ? pat + "." : pat;
    const hits = names.filter((n) => n === pat || n.includes(p));
    if (hits.length === 0) {
      throw new UsageError(`--ignore_layers ${quote(pat)} matches no Linear layer of this model`);
    }
    for (const h of hits) ignored.add(h);
  }

  const layers: LayerConfigResult["layers"] = new Map();
  for (const l of linears) {
    const base = { inFeatures: l.in, outFeatures: l.out };
    if (l.router) {
      // auto-round adds every MoE `.gate` to ignore_layers (spec/MODELS.md § 6): routing stays exact.
      layers.set(l.name, { ...base, quantize: false, reason: "MoE router (kept 16-bit)", fromUser: false });
      continue;
    }
    if (ignored.has(l.name)) {
      layers.set(l.name, { ...base, quantize: false, reason: "--ignore_layers", fromUser: true });
      continue;
    }
    const ov = userPlan.get(l.name);
    if (ov?.bits !== undefined && ov.bits >= 16) {
      layers.set(l.name, { ...base, quantize: false, reason: "layer_config bits>=16", fromUser: true });
      continue;
    }
    if (ov?.data_type !== undefined && ov.data_type !== scheme.dataType) {
      throw new QuantizeError(
        `layer_config for ${l.name}: data_type ${
          quote(ov.data_type)
        } differs from the run's ${scheme.dataType} (mixed data types are not supported yet)`,
      );
    }
    const s = validateScheme({
      bits: ov?.bits ?? scheme.bits,
      groupSize: ov?.group_size ?? scheme.groupSize,
      sym: ov?.sym ?? scheme.sym,
      dataType: scheme.dataType,
      ...(scheme.act ? { act: scheme.act } : {}),
    }, `layer_config for ${l.name}`);
    if (s.dataType !== "int") {
      // mx/nv: a layer whose input size is not a multiple of the group stays 16-bit (auto-round
      // compressors/layer_config/resolver.py:75-90, SCHEMES.md § 3.1); FP8 takes any shape.
      const g = s.groupSize;
      const fits = s.dataType === "fp" ? g <= 0 || l.in % g === 0 : l.in % g === 0;
      layers.set(
        l.name,
        fits ? { ...base, quantize: true, scheme: s, fromUser: ov !== undefined } : {
          ...base,
          quantize: false,
          reason: `input size ${l.in} not divisible by group_size ${g}`,
          fromUser: false,
        },
      );
      continue;
    }
    if (l.out % 32 !== 0 || l.in % 32 !== 0) {
      layers.set(l.name, {
        ...base,
        quantize: false,
        reason: `shape [${l.out}, ${l.in}] not divisible by 32`,
        fromUser: false,
      });
      continue;
    }
    if (s.groupSize > 0 && s.groupSize < l.in && l.in % s.groupSize !== 0) {
      layers.set(l.name, {
        ...base,
        quantize: false,
        reason: `input size ${l.in} not divisible by group_size ${s.groupSize}`,
        fromUser: false,
      });
      continue;
    }
    layers.set(l.name, { ...base, quantize: true, scheme: s, fromUser: ov !== undefined });
  }
  return { layers, regexConfig };
}

/**
 * Compress layer names for logs the way AutoRound prints them:
 * `model.layers.[0-4].mlp.gate_proj` for a run of blocks.
 */
export function compressLayerNames(names: string[]): string[] {
  const groups = new Map<string, number[]>();
  const rest: string[] = [];
  for (const n of names) {
    const m = /^(.*\.layers\.)(\d+)(\..*)$/.exec(n);
    if (!m) {
      rest.push(n);
      continue;
    }
    const key = `${m[1]}\u0000${m[3]}`;
    groups.set(key, [...(groups.get(key) ?? []), Number(m[2])]);
  }
  const out: string[] = [];
  for (const [key, idx] of groups) {
    const [pre, post] = key.split("\u0000");
    idx.sort((a, b) => a - b);
    const runs: string[] = [];
    for (let i = 0; i < idx.length;) {
      let j = i;
      while (j + 1 < idx.length && idx[j + 1] === idx[j] + 1) j++;
      runs.push(i === j ? `${idx[i]}` : `${idx[i]}-${idx[j]}`);
      i = j + 1;
    }
    out.push(`${pre}[${runs.join(",")}]${post}`);
  }
  return [...out, ...rest];
}
