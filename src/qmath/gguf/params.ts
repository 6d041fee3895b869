/**
 * The parameters of a GGUF-quantized tensor as data: the type families' group geometry, the searched
 * scales (and mins) per group, and the search options. Shared by the steps of quantize.ts.
 */
import type { GgmlTypeName } from "./types.ts";

/** The quantization parameters of one tensor, by type family. Arrays are per group, in order. */
export type GgufParams =
  /** Q4_0, Q5_0, Q8_0: W̃ = scale · clamp(round(W/scale), −2^(b−1), 2^(b−1) − 1); groups of 32. */
  | { kind: "sym"; scale: Float32Array }
  /** Q4_1, Q5_1: W̃ = scale · (clamp(round(W/scale) + zp, 0, 2^b − 1) − zp), zp a float; groups of 32. */
  | { kind: "asym"; scale: Float32Array; zp: Float32Array }
  /**
   * Q2_K, Q4_K, Q5_K: W̃ = scale · clamp(round((W + wmin)/scale), 0, 2^b − 1) − wmin with
   * scale = dScale·ls, wmin = dWmin·lm (groups of 16 for Q2_K, 32 otherwise; d per 256).
   */
  | { kind: "kasym"; scale: Float32Array; wmin: Float32Array; dScale: Float32Array; dWmin: Float32Array }
  /** Q3_K, Q6_K: W̃ = scale · clamp(round(W/scale), −2^(b−1), 2^(b−1) − 1), scale = dScale·ls; groups of 16. */
  | { kind: "ksym"; scale: Float32Array; dScale: Float32Array };

/** Bits and group geometry of each quantized GGML type. */
export const TYPE_QUANT: Readonly<
  Record<
    Exclude<GgmlTypeName, "F32" | "F16" | "BF16" | "MXFP4">,
    { bits: number; group: number; superGroup: number }
  >
> = {
  Q4_0: { bits: 4, group: 32, superGroup: 1 },
  Q4_1: { bits: 4, group: 32, superGroup: 1 },
  Q5_0: { bits: 5, group: 32, superGroup: 1 },
  Q5_1: { bits: 5, group: 32, superGroup: 1 },
  Q8_0: { bits: 8, group: 32, superGroup: 1 },
  Q2_K: { bits: 2, group: 16, superGroup: 16 },
  Q3_K: { bits: 3, group: 16, superGroup: 16 },
  Q4_K: { bits: 4, group: 32, superGroup: 8 },
  Q5_K: { bits: 5, group: 32, superGroup: 8 },
  Q6_K: { bits: 6, group: 16, superGroup: 16 },
};
export type QuantGgmlType = keyof typeof TYPE_QUANT;

/** Every block-quantized GGML type, legacy (Q4_0 … Q8_0) then K-quants (Q2_K … Q6_K). */
export const QUANT_GGML_TYPES = Object.keys(TYPE_QUANT) as readonly QuantGgmlType[];

/** Whether a GGML type is block-quantized (not F32/F16/BF16). */
export function isQuantType(t: GgmlTypeName): t is QuantGgmlType {
  return t in TYPE_QUANT;
}

/** Options of the search. */
export interface SearchOptions {
  /**
   * Optimized RTN (AutoRound's default at iters 0): the scale search for Q4_0/Q5_0/Q8_0 block weights
   * and the importance matrix. Off gives plain RTN for those; the K-quant searches run either way.
   */
  optRtn: boolean;
  /** Per input column importance `[K]` (mean of x² over calibration tokens), when collected. */
  imatrix?: Float64Array | Float32Array;
}

/** Empty parameters of `type` for `groups` groups. */
export function allocParams(type: QuantGgmlType, groups: number): GgufParams {
  const supers = groups / TYPE_QUANT[type].superGroup, f = (n: number) => new Float32Array(n);
  switch (type) {
    case "Q4_0":
    case "Q5_0":
    case "Q8_0":
      return { kind: "sym", scale: f(groups) };
    case "Q4_1":
    case "Q5_1":
      return { kind: "asym", scale: f(groups), zp: f(groups) };
    case "Q2_K":
    case "Q4_K":
    case "Q5_K":
      return { kind: "kasym", scale: f(groups), wmin: f(groups), dScale: f(supers), dWmin: f(supers) };
    case "Q3_K":
    case "Q6_K":
      return { kind: "ksym", scale: f(groups), dScale: f(supers) };
  }
}
