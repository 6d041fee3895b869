/**
 * The second level of the K-quants: the sub-block scales (and mins) of one super-block quantized to
 * 4, 6 or 8 bits against one float super-block scale, as auto_round/data_type/gguf.py (v0.15) does
 * it: `make_qp_quants` (with an importance matrix), `double_quant_tensor` (without) and
 * `double_quant_tensor_sym_rtn` (Q3_K, Q6_K). Float32 arithmetic in torch's CPU order
 * (torch_f32.ts). Each call reads `data[o .. o + n)` and writes the integer levels to `L[0 .. n)`
 * (an Int16Array, as AutoRound's int tensor: a NaN level becomes 0).
 */
import { fr, recip, rint, scratch, torchSum } from "./torch_f32.ts";

/**
 * `make_qp_quants` on one super-group: a non-negative scale for `data` (the sub-block scales or
 * mins) on `nmax` levels, weighted by `qw[0 .. n)`. Returns d.
 *
 * Difference: llama.cpp refines L for 5 more rounds; AutoRound has that loop commented out, and
 * falls back to max/nmax when Σ qw·L² is 0.
 */
export function makeQpQuants(
  nmax: number,
  data: Float32Array,
  o: number,
  n: number,
  qw: ArrayLike<number>,
  L: Int16Array,
): number {
  let gmax = -Infinity;
  for (let i = 0; i < n; i++) gmax = Math.max(gmax, data[o + i]);
  const scale0 = fr(gmax / nmax);
  let iscale = recip(scale0);
  let best = qpError(data, o, n, qw, nmax, scale0, iscale, false);
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const s = fr(gmax / fr(0.1 * is + nmax)), iss = recip(s);
    const e = qpError(data, o, n, qw, nmax, s, iss, true);
    if (e < best) {
      best = e;
      iscale = iss;
    }
  }
  const t = scratch(0, n);
  for (let i = 0; i < n; i++) {
    L[i] = Math.min(rint(fr(iscale * data[o + i])), nmax);
    t[i] = fr(qw[i] * data[o + i]) * L[i];
  }
  const sumlx = torchSum(t, n);
  for (let i = 0; i < n; i++) t[i] = fr(qw[i] * L[i]) * L[i];
  const suml2 = torchSum(t, n);
  return suml2 > 0 ? fr(sumlx / suml2) : fr(gmax / nmax);
}

/** Σ qw·(data − s·l)² with l = round(is·data), clamped above at nmax when `clip` (make_qp_quants). */
function qpError(
  data: Float32Array,
  o: number,
  n: number,
  qw: ArrayLike<number>,
  nmax: number,
  s: number,
  is: number,
  clip: boolean,
): number {
  const t = scratch(1, n);
  for (let i = 0; i < n; i++) {
    const l = rint(fr(is * data[o + i]));
    const d = fr(data[o + i] - fr(s * (clip ? Math.min(l, nmax) : l)));
    t[i] = fr(qw[i] * d) * d;
  }
  return torchSum(t, n);
}

/**
 * `double_quant_tensor` (non-negative values on `bits` bits, no imatrix): d = max/maxq,
 * L = min(round(x · maxq/max), maxq). Returns d.
 */
export function doubleQuant(data: Float32Array, o: number, n: number, bits: number, L: Int16Array): number {
  const maxq = 2 ** bits - 1;
  let wmax = 0;
  for (let i = 0; i < n; i++) wmax = Math.max(wmax, data[o + i]);
  const inv = Math.max(fr(maxq * recip(wmax)), 0);
  for (let i = 0; i < n; i++) L[i] = Math.min(rint(fr(data[o + i] * inv)), maxq);
  return fr(wmax / maxq);
}

/**
 * `double_quant_tensor_sym_rtn`: signed values on `bits` bits, full range: d = −(signed absmax)/2^(b−1),
 * L = clamp(round(x/d), −2^(b−1), 2^(b−1) − 1). Returns d.
 */
export function doubleQuantSym(
  data: Float32Array,
  o: number,
  n: number,
  bits: number,
  L: Int16Array,
): number {
  const maxq = 2 ** (bits - 1);
  const d = fr(signedAbsMax(data, o, n) / -maxq), inv = recip(d);
  for (let i = 0; i < n; i++) L[i] = Math.min(Math.max(rint(fr(data[o + i] * inv)), -maxq), maxq - 1);
  return d;
}

/**
 * Signed absolute maximum of `x[o .. o + n)` (the value with the largest |x|, the first one on ties,
 * as torch argmax picks), rounded to float32.
 */
export function signedAbsMax(x: ArrayLike<number>, o: number, n: number): number {
  let m = 0, a = -1;
  for (let i = o; i < o + n; i++) {
    if (Math.abs(x[i]) > a) {
      a = Math.abs(x[i]);
      m = x[i];
    }
  }
  return fr(m);
}
