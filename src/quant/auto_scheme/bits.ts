/**
 * AutoScheme's bits accounting (spec/AUTOSCHEME.md § 2): the price of one layer under one scheme
 * (auto-round auto_scheme/utils.py:168-229 `compute_layer_bits`), the average over the quantized
 * layers with user-fixed layers counted at their fixed scheme (utils.py:90-136), the feasible range
 * over the options and the target check with its 1e-3 snap (gen_auto_scheme.py:136-162, 251-269).
 * Bit totals are integers far below 2^53 (a 70B model at 32 bits is ~2.2e12), so numbers are exact.
 */
import { QuantizeError, UsageError } from "../../errors.ts";
import type { SchemeFields } from "./fields.ts";

/** The scheme fields the price depends on. */
export type BitsFields = Pick<
  SchemeFields,
  "bits" | "group_size" | "sym" | "data_type" | "super_bits" | "super_group_size"
>;

/** A layer as the accounting sees it. */
export interface LayerShape {
  name: string;
  /**
   * `get_layer_features` (§ 2.1): a Linear's (in, out); an Embedding's (num_embeddings,
   * embedding_dim), so its groups run along the vocabulary axis.
   */
  inFeatures: number;
  outFeatures: number;
  /** Weight numel n(ℓ); in·out when absent (the reference's `_cached_weight_numel` for offloaded weights). */
  numel?: number;
}

/** n(ℓ). */
export function layerNumel(l: LayerShape): number {
  return l.numel ?? l.inFeatures * l.outFeatures;
}

/**
 * `compute_layer_bits(layer, ignore)[0]` (§ 2.1, utils.py:168-229). Absent fields take the
 * reference's attribute defaults (bits 16, group_size 128, data_type "int", sym false, no super
 * group), so `layerBits(l, {})` is 16·n. Kept quirks (§ 7.7): a symmetric `int` scheme is charged a
 * zero point (`"int" in data_type`); MXINT4 pays a 16-bit scale and a zero point; a layer with
 * bits ≥ 16 that carries `super_bits` is priced at 32·n; with `ignore` only bits·n is counted.
 *
 * @example
 * ```ts
 * layerBits({ name: "q", inFeatures: 256, outFeatures: 256 }, { bits: 4, group_size: 128, data_type: "int", sym: true }); // 272384
 * ```
 */
export function layerBits(layer: LayerShape, f: Partial<BitsFields>, ignore = false): number {
  const n = layerNumel(layer);
  const bits = f.bits ?? 16;
  const gs = f.group_size === undefined ? 128 : f.group_size;
  const dt = f.data_type ?? "int";
  const sym = f.sym ?? false;
  const superBits = f.super_bits ?? null;
  const superGs = f.super_group_size ?? null;
  if (bits >= 16 || ignore) {
    if (superBits !== null && bits >= 16) return 32 * n; // "reset gguf 16 bits to 32 bits" (utils.py:197-199)
    return bits * n;
  }
  const inF = layer.inFeatures;
  const outF = layer.outFeatures;
  let nGroup: number;
  if (gs !== null && gs > 0) nGroup = outF * Math.ceil(inF / gs);
  else if (gs === 0) nGroup = 1;
  else if (gs === -1) nGroup = outF;
  else throw new QuantizeError(`${layer.name}: Invalid group_size ${gs} (use a positive size, 0 or -1)`);
  const scaleBits = dt.includes("mx_fp") || dt.includes("nv_fp") || dt.includes("fp4") ? 8 : 16;
  const zpBits = !sym || dt.includes("int") ? bits : 0;
  // Super groups (GGUF K-quants): two super_bits scales per group + a 32-bit scale and min per super group.
  const aux = !superGs
    ? nGroup * (scaleBits + zpBits)
    : nGroup * (superBits ?? 0) * 2 + Math.ceil(nGroup / superGs) * 64;
  return bits * n + aux;
}

/** A layer of `quant_layer_names` for the average: fixed layers carry their fixed scheme (§ 2.3). */
export interface AccountLayer extends LayerShape {
  /** The user-fixed scheme (`fixed_by_user`), priced instead of the option. */
  fixed?: Partial<BitsFields>;
}

/**
 * `compute_avg_bits_for_scheme` (§ 2.2, utils.py:90-136): Σ bits / Σ n over the quantized layers,
 * each layer at its fixed scheme if fixed, else at `option`.
 */
export function averageBits(
  layers: readonly AccountLayer[],
  option: Partial<BitsFields>,
  ignore = false,
): number {
  let bits = 0;
  let n = 0;
  for (const l of layers) {
    bits += layerBits(l, l.fixed ?? option, ignore);
    n += layerNumel(l);
  }
  if (n === 0) throw new UsageError("AutoScheme: no quantized layers to choose schemes for");
  return bits / n;
}

/** The achievable average-bits range over the options (gen:251-269). */
export interface BitsRange {
  /** The average for each option applied to every non-fixed layer, in option order. */
  perOption: number[];
  min: number;
  max: number;
}

/** § 1.5 check 1: {@link averageBits} per option, and its min and max. */
export function bitsRange(
  layers: readonly AccountLayer[],
  options: readonly Partial<BitsFields>[],
  ignore = false,
): BitsRange {
  const perOption = options.map((o) => averageBits(layers, o, ignore));
  return { perOption, min: Math.min(...perOption), max: Math.max(...perOption) };
}

/**
 * § 1.5 check 4 (gen:143-162): a target within 1e-3 of the range's min (else max) snaps to it; one
 * outside [min, max] then throws the reference's message (numbers printed with 3 decimals).
 */
export function checkTarget(target: number, range: BitsRange, optionNames: readonly string[]): number {
  let t = target;
  if (Math.abs(t - range.min) < 1e-3) t = range.min;
  else if (Math.abs(t - range.max) < 1e-3) t = range.max;
  if (!(range.min <= t && t <= range.max)) {
    const details = optionNames.map((name, i) => `${name}=${range.perOption[i].toFixed(3)}`).join(", ");
    throw new UsageError(
      `Target avg_bits=${t.toFixed(3)} is outside the achievable range [${range.min.toFixed(3)}, ` +
        `${range.max.toFixed(3)}] for options=[${
          optionNames.join(", ")
        }] (per-option avg_bits: ${details}). ` +
        "Provide at least one option whose avg_bits is <= target and one whose avg_bits is >= target. " +
        "Note that layers fixed to high-precision (e.g. lm_head/embed kept at bf16) inflate the lower " +
        "bound; adjust --layer_config/--ignore_layers if needed.",
    );
  }
  return t;
}
