/**
 * A pipeline-quantized Linear's own codes as GGUF block parameters, when its GGUF type stores exactly
 * that integer grid (the GGUF exporter then writes them without quantizing again).
 */
import type { GgmlTypeName } from "../../qmath/gguf/types.ts";
import type { GgufParams } from "../../qmath/gguf/quantize.ts";
import type { QuantizedLinear } from "../../qmath/quantized.ts";
import { permuteRowsHfToGguf } from "./names.ts";

/**
 * The QuantizedLinear's own quantization as GGUF parameters when the tensor's type stores exactly
 * that integer grid: symmetric 4/5/8 bits in groups of 32 as Q4_0/Q5_0/Q8_0, asymmetric 4/5 bits
 * in groups of 32 as Q4_1/Q5_1 (m = −zp·d). Returns the W̃ too; undefined when they differ.
 */
export function paramsFromQuantized(
  l: QuantizedLinear,
  type: GgmlTypeName,
): { params: GgufParams; wq: Float32Array } | undefined {
  const g = l.groupSize <= 0 || l.groupSize > l.k ? l.k : l.groupSize;
  if (g !== 32) return undefined;
  const symType = { 4: "Q4_0", 5: "Q5_0", 8: "Q8_0" }[l.bits as 4 | 5 | 8];
  const asymType = { 4: "Q4_1", 5: "Q5_1" }[l.bits as 4 | 5];
  if ((l.sym ? symType : asymType) !== type) return undefined;
  const G = l.k / g;
  const wq = new Float32Array(l.n * l.k);
  for (let r = 0; r < l.n; r++) {
    for (let c = 0; c < l.k; c++) {
      const gi = r * G + Math.floor(c / g);
      wq[r * l.k + c] = Math.fround(l.q.scales[gi] * (l.q.codes[r * l.k + c] - l.q.zeros[gi]));
    }
  }
  const scale = Float32Array.from(l.q.scales);
  const params: GgufParams = l.sym
    ? { kind: "sym", scale }
    : { kind: "asym", scale, zp: Float32Array.from(l.q.zeros) };
  return { params, wq };
}

/** Given codes of a q/k Linear with rows (and their per-group parameters) in llama.cpp's order. */
export function permuteGivenRows(
  given: { params: GgufParams; wq: Float32Array },
  n: number,
  k: number,
  heads: number,
): { params: GgufParams; wq: Float32Array } {
  const G = k / 32;
  const perm = (a: Float32Array) => permuteRowsHfToGguf(a, n, G, heads);
  const p = given.params as { scale: Float32Array; zp?: Float32Array };
  const params: GgufParams = given.params.kind === "sym"
    ? { kind: "sym", scale: perm(p.scale) }
    : { kind: "asym", scale: perm(p.scale), zp: perm(p.zp!) };
  return { wq: permuteRowsHfToGguf(given.wq, n, k, heads), params };
}
