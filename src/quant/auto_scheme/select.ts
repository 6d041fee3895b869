/**
 * AutoScheme selection: given per-layer sensitivity scores for every option, choose one option per
 * layer under an average-bits target (spec/AUTOSCHEME.md § 2.5, § 4; auto-round delta_loss.py:
 * 2294-2900 and gen_auto_scheme.py:203-249). Pure: no model, no tensors.
 *
 * What the scoring pass must provide (§ 3, not implemented here):
 * - `scores`: for every non-fixed, non-embedding layer of `quant_layer_names`, one number per option
 *   (option order): S_ℓ(o) = Σ_batches [w·Σ|G^W ⊙ (W − Q_o(W))| + a·Σ_calls Σ|G^x ⊙ (x − Q^a_o(x))|]
 *   with all scored layers quantized with `o` at once, fixed layers unquantized, G the gradients of
 *   the causal-LM cross entropy w.r.t. the *quantized* tensors, w = 1 iff some non-BF16 option has
 *   bits ≤ 8 < act_bits and bits_o ≤ 8 (GGUF-K: always), a = 1 iff act_bits_o ≤ 8 (§ 3.1). Layers that
 *   do not quantize under `o` score 0; keep-16-bit options are never run and their scores are ignored
 *   here (taken as 0, § 3.1). Non-block layers other than the lm_head score 0 (§ 7.6). Raw sums: no
 *   normalization by numel, tokens, batches or option. The inactive-expert fill is done here.
 * - the layer order of `layers`: the order scores were produced (§ 4.2; the reference's is hash-seed
 *   dependent, § 7.4); it decides DP keys and exact ties.
 * - shapes (get_layer_features: Linear (in, out), Embedding (vocab, dim)), fixed schemes, the block
 *   names, whether the model is MoE, the lm_head name (if quantized) and whether embeddings are tied.
 *
 * Memory (§ 5.3): the scoring pass holds host memory to one block's working set by streaming. The
 * options are the outer loop (block inputs depend on the option); per (option, batch) it runs the
 * blocks forward once without grad, saving each block input h_i (on disk/host, or every k-th with
 * recompute), then the head with autograd, then replays the blocks in reverse, one resident at a
 * time, recomputing Q_o(W) per block (never caching a model's worth of qdq weights, not even for
 * GGUF-K where it is a deterministic function of W and the imatrix) and adding |g·Δ| into this
 * table. What stays global is small: layer metadata, the layers × options score table (float64),
 * the per-layer imatrix for GGUF-K, and this DP (its Pareto front ≤ distinct feasible bit totals).
 */
import { UsageError } from "../../errors.ts";
import { type AccountLayer, bitsRange, checkTarget, layerBits, layerNumel } from "./bits.ts";
import type { SchemeFields } from "./fields.ts";
import { buildExpertGroups, fillInactiveExperts, mergeUnionFind, parseSharedLayers } from "./groups.ts";
import { knapsack, type KnapsackChoice } from "./knapsack.ts";
import { applyGgufFallback, extraConfig } from "./layout.ts";
import { type AutoOption, defaultOptionIndex } from "./options.ts";

/** A layer of `quant_layer_names` (§ 2.3). */
export interface AutoLayer extends AccountLayer {
  /** The user-fixed scheme (layer_config entry, ignore_layers → bits 16): priced, never chosen. */
  fixed?: Partial<SchemeFields>;
  /** An nn.Embedding (quantized only under a GGUF default scheme): chosen by the rule of § 4.3. */
  embedding?: boolean;
}

/** Everything the selection needs. */
export interface SelectInput {
  /** `quant_layer_names` in score order (§ 4.2). */
  layers: readonly AutoLayer[];
  options: readonly AutoOption[];
  /** Layer → S_ℓ(o) per option index, for every non-fixed non-embedding layer. */
  scores: ReadonlyMap<string, readonly number[]>;
  /** `avg_bits`. */
  target: number;
  ignoreScaleZpBits?: boolean;
  /** `AutoScheme.shared_layers`: groups of exact names, regexes or substrings (§ 4.1). */
  sharedLayers?: readonly (readonly string[])[];
  /** Block names (all block lists), for shared-layer matching, MoE groups and extra_config. */
  blocks?: readonly string[];
  /** Every Linear name of the model (shared-layer matching); defaults to the names in `layers`. */
  modelLayerNames?: readonly string[];
  /** `is_moe_model`: group each block's expert layers (§ 4.1) and fill inactive experts (§ 3.1). */
  moe?: boolean;
  /** The lm_head's name, when it is in `layers` (§ 4.4). */
  lmHead?: string;
  /** `config.tie_word_embeddings` (§ 4.3). */
  tiedEmbeddings?: boolean;
}

/** One DP key: a group of layers sharing an option (§ 4.2). */
export interface DpGroup {
  key: string;
  names: string[];
  /** Per option: Σ member bits and Σ member scores. */
  bits: number[];
  loss: number[];
}

/** The selection. */
export interface Selection {
  /** The target after the 1e-3 snap (§ 1.5). */
  target: number;
  /** Option index per non-fixed layer (embeddings included), before the GGUF fallback. */
  choice: Map<string, number>;
  /** `layer_config`: fixed entries, embeddings, then DP layers (full fields), after the GGUF fallback. */
  layerConfig: Map<string, Partial<SchemeFields>>;
  /** The auto_round export's `extra_config` (§ 4.6). */
  extraConfig: Map<string, Partial<SchemeFields>>;
  /** The default scheme (§ 1.2): index into the options. */
  defaultOption: number;
  /** Σ n over the layers; P = int(totalParams·target) before subtractions; the DP's budget. */
  totalParams: number;
  budget: number;
  /** Σ bits and Σ loss of the DP's choice. */
  dpBits: number;
  dpLoss: number;
  /** Σ per-option group losses (`options_scores`) and their ascending order (`sorted_indices`). */
  optionLoss: number[];
  sortedOptions: number[];
  /** Layer → GGUF type for each GGUF fallback (§ 4.6). */
  ggufFallbacks: Map<string, string>;
  /** Average bits of `layerConfig` over the layers (the compressor's "AutoScheme final avg_bits"). */
  finalAvgBits: number;
}

/** DP groups (§ 4.1-4.2, dl:2294-2300, 2375-2393) with the inactive-expert fill applied per option. */
export function buildDpGroups(input: SelectInput): DpGroup[] {
  const { layers, options } = input;
  const ignore = input.ignoreScaleZpBits ?? false;
  const blocks = input.blocks ?? [];
  const scored = layers.filter((l) => !l.fixed && !l.embedding);
  for (const l of scored) {
    const s = input.scores.get(l.name);
    if (!s || s.length !== options.length) {
      throw new UsageError(`AutoScheme: no score per option for layer ${l.name}`);
    }
  }
  const modelNames = input.modelLayerNames ?? layers.map((l) => l.name);
  let groups = parseSharedLayers(input.sharedLayers ?? [], modelNames, blocks);
  if (input.moe) {
    const experts = buildExpertGroups(scored.map((l) => l.name), blocks);
    if (experts.length) groups = mergeUnionFind([...groups, ...experts]);
  }
  // Per option: the scored layers' [bits, loss] after the expert fill (dl:1245-1254).
  const perOption = options.map((o, i) => {
    const loss = new Map(scored.map((l) => [l.name, o.keep16 ? 0 : input.scores.get(l.name)![i]]));
    if (input.moe) fillInactiveExperts(loss, blocks);
    return loss;
  });
  const shape = new Map(scored.map((l) => [l.name, l]));
  const remaining = new Set(scored.map((l) => l.name));
  const out: DpGroup[] = [];
  const add = (names: string[]) => {
    out.push({
      key: names[0],
      names,
      bits: options.map((o) => names.reduce((a, n) => a + layerBits(shape.get(n)!, o.fields, ignore), 0)),
      loss: perOption.map((loss) => names.reduce((a, n) => a + loss.get(n)!, 0)),
    });
  };
  for (const g of groups) {
    const names = g.filter((n) => remaining.has(n));
    for (const n of names) remaining.delete(n);
    if (names.length) add(names);
  }
  for (const l of scored) if (remaining.has(l.name)) add([l.name]);
  return out;
}

/** Weight bits of an option (`_get_scheme_bits`, dl:1424-1430). */
const optBits = (o: AutoOption) => o.fields.bits;

/** Python's `sorted(range(n), key=f)`: stable ascending. */
function argsort(values: readonly number[]): number[] {
  return values.map((_, i) => i).sort((a, b) => values[a] - values[b] || a - b);
}

/**
 * The embedding option (§ 4.3, dl:2760-2830): one option for all non-fixed embeddings. `fits(o)`
 * is the reference's budget test `P − Σ_emb n·bits(o) ≥ min_dp_bits` (overhead ignored, § 7.8).
 */
export function chooseEmbeddingOption(
  options: readonly AutoOption[],
  sortedOptions: readonly number[],
  target: number,
  tied: boolean,
  fits: (o: AutoOption) => boolean,
): number {
  let candidates: number[];
  if (tied) {
    candidates = target > 6 ? [...sortedOptions] : sortedOptions.filter((i) => optBits(options[i]) <= 6);
    if (!candidates.length) candidates = [...sortedOptions];
  } else {
    const floor = Math.floor(target);
    candidates = sortedOptions.filter((i) => optBits(options[i]) === floor);
    if (!candidates.length) {
      const higher = sortedOptions.map((i) => optBits(options[i])).filter((b) => b > floor);
      if (higher.length) {
        const next = Math.min(...higher);
        candidates = sortedOptions.filter((i) => optBits(options[i]) === next);
      }
    }
    candidates.push(...sortedOptions); // "to make sure if the above candidate exceed the budget"
  }
  for (const i of candidates) if (fits(options[i])) return i;
  const byBits = argsort(options.map(optBits));
  for (const i of byBits) if (fits(options[i])) return i;
  return byBits[0];
}

/**
 * The lm_head restriction (§ 4.4, `_apply_head_trick`, dl:1438-1523), returning the head group's
 * allowed choices. `high` = options with bits ≥ 6: none → the lowest-total-loss option; one → it;
 * several → the highest-bits one if target > 6 else all. Relaxed in `sortedOptions` order while
 * min head bits + Σ other groups' min bits > budget. Unfiltered when the filter leaves nothing.
 */
export function restrictHead(
  head: KnapsackChoice[],
  others: readonly (readonly KnapsackChoice[])[],
  options: readonly AutoOption[],
  sortedOptions: readonly number[],
  target: number,
  budget: number,
): KnapsackChoice[] {
  const high = options.map((_, i) => i).filter((i) => optBits(options[i]) >= 6);
  let allowed: Set<number>;
  if (high.length === 0) allowed = new Set([sortedOptions[0]]);
  else if (high.length === 1 || target <= 6) allowed = new Set(high);
  else {
    // max(high, key=bits): the first of the highest.
    let best = high[0];
    for (const i of high) if (optBits(options[i]) > optBits(options[best])) best = i;
    allowed = new Set([best]);
  }
  const minOther = others.reduce((a, o) => a + Math.min(...o.map((c) => c.bits)), 0);
  const minHead = () => {
    const hs = head.filter((c) => allowed.has(c.option));
    return Math.min(...(hs.length ? hs : head).map((c) => c.bits));
  };
  if (minHead() + minOther > budget) {
    for (const i of sortedOptions) {
      if (allowed.has(i)) continue;
      allowed.add(i);
      if (minHead() + minOther <= budget) break;
    }
  }
  const filtered = head.filter((c) => allowed.has(c.option));
  return filtered.length ? filtered : head;
}

/**
 * Given scores, choose: the whole selection of § 2.5 and § 4 — range check and snap, groups, budget
 * P = int(Σn·target) minus fixed and embedding bits, the embedding and lm_head rules, the exact
 * knapsack, the GGUF fallback and the export entries. Throws UsageError for an unreachable target
 * (the range message of § 1.5, or "Avg bits is too small" when P ≤ 0 or nothing fits, dl:2866, 2890).
 */
export function chooseSchemes(input: SelectInput): Selection {
  const { layers, options } = input;
  const ignore = input.ignoreScaleZpBits ?? false;
  if (options.length === 0) throw new UsageError("AutoScheme options cannot be empty");
  const range = bitsRange(layers, options.map((o) => o.fields), ignore);
  const target = checkTarget(input.target, range, options.map((o) => o.name));
  const groups = buildDpGroups(input);
  const optionLoss = options.map((_, i) => groups.reduce((a, g) => a + g.loss[i], 0));
  const sortedOptions = argsort(optionLoss);

  const totalParams = layers.reduce((a, l) => a + layerNumel(l), 0);
  let budget = Math.trunc(totalParams * target);
  const layerConfig = new Map<string, Partial<SchemeFields>>();
  for (const l of layers) {
    if (!l.fixed) continue;
    layerConfig.set(l.name, { ...l.fixed });
    budget -= layerBits(l, l.fixed, ignore);
  }
  const choice = new Map<string, number>();
  const embeddings = layers.filter((l) => l.embedding && !l.fixed);
  if (embeddings.length) {
    const minDp = groups.reduce((a, g) => a + Math.min(...g.bits), 0);
    const embN = embeddings.reduce((a, l) => a + layerNumel(l), 0);
    const fits = (o: AutoOption) => budget - embN * optBits(o) >= minDp;
    const e = chooseEmbeddingOption(options, sortedOptions, target, input.tiedEmbeddings ?? false, fits);
    for (const l of embeddings) {
      choice.set(l.name, e);
      layerConfig.set(l.name, { ...options[e].fields });
      budget -= layerBits(l, options[e].fields, ignore);
    }
  }
  const items: KnapsackChoice[][] = groups.map((g) =>
    options.map((_, i) => ({ option: i, bits: g.bits[i], loss: g.loss[i] }))
  );
  const head = input.lmHead;
  const headLayer = head === undefined ? undefined : layers.find((l) => l.name === head);
  const hi = groups.findIndex((g) => g.key === head);
  if (headLayer && !headLayer.fixed && hi >= 0) {
    items[hi] = restrictHead(
      items[hi],
      items.filter((_, i) => i !== hi),
      options,
      sortedOptions,
      target,
      budget,
    );
  }
  if (budget <= 0) {
    throw new UsageError("Avg bits is too small (no bits left after fixed layers and embeddings)");
  }
  const best = knapsack(items, budget);
  if (!best) throw new UsageError("Avg bits is too small (no assignment of the options fits the budget)");
  groups.forEach((g, i) => {
    for (const n of g.names) {
      choice.set(n, best.options[i]);
      layerConfig.set(n, { ...options[best.options[i]].fields });
    }
  });
  const inF = new Map(layers.map((l) => [l.name, l.inFeatures]));
  const ggufFallbacks = applyGgufFallback(
    layerConfig,
    inF,
    new Set(layers.filter((l) => l.embedding).map((l) => l.name)),
  );
  const defaultOption = defaultOptionIndex(options);
  let finalBits = 0;
  for (const l of layers) finalBits += layerBits(l, layerConfig.get(l.name) ?? {}, ignore);
  return {
    target,
    choice,
    layerConfig,
    extraConfig: extraConfig(layerConfig, options[defaultOption].fields, input.blocks ?? []),
    defaultOption,
    totalParams,
    budget,
    dpBits: best.bits,
    dpLoss: best.loss,
    optionLoss,
    sortedOptions,
    ggufFallbacks,
    finalAvgBits: finalBits / totalParams,
  };
}
