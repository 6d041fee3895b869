/**
 * AutoRound's scale/min searches for the asymmetric GGUF K-quants (Q2_K, Q4_K, Q5_K) and the
 * double quantization of their sub-block scales, ported from auto_round/data_type/gguf.py (v0.15:
 * `iterative_wls_quant_search_chunk`, `make_qp_quants`, `double_quant_tensor`,
 * `double_quant_tensor_sym_rtn`, `_imatrix_handle_zero`, `search_gguf_scale_min_asym`). The
 * symmetric searches are in search_sym.ts. They are llama.cpp's `make_qkx2_quants` / `make_qp_quants`
 * (ggml-quants.c) as AutoRound rewrote them for tensors; where the two differ, the AutoRound form is
 * kept and the difference is noted at the spot.
 *
 * Arithmetic: AutoRound runs these in float32 torch, and a near-tie between two grid points is
 * decided by the last bit of a float32 sum, so float64 arithmetic picks a different scale now and
 * then (about one group in three for Q6_K). Here every operation is emulated in float32 in torch's
 * order (torch_f32.ts): each elementwise op rounds to float32 as the Python expression nests, and
 * each row sum adds in the order of torch's CPU kernel (8 lanes, element i in lane i mod 8, lanes
 * added left to right; {@link torchSum}). That reproduces auto-round's CPU bytes exactly. A CUDA run
 * of auto-round sums in a different order, so bytes from a GPU run can differ in near-ties.
 * `torch.round` is half-to-even ({@link rint}); `get_reciprocal(x)` is fr(1/x) for
 * |x| ≥ 1e-30 and 0 otherwise (auto_round/utils/common.py).
 *
 * Layout: a tensor is a run of groups of `gs` consecutive weights (row-major [N, K] with gs | K);
 * super-groups are `sgs` consecutive groups.
 */
import { fr, recip, rint as rnd, scratch, torchSum } from "./torch_f32.ts";

export { recip };

/**
 * `_imatrix_handle_zero` applied to the imatrix rows of groups of `gs` columns: a group with more
 * than `half` zeros (≤ 1e-30) falls back to |w| (bits ≤ 3) or |w| + sqrt(Σw²/32); a group with some
 * zeros gets its exact zeros replaced by the sum of its entries over the non-zero count.
 *
 * Difference: AutoRound divides by (gs − zeros) also when every entry is zero (giving NaN, which
 * makes the block's scale NaN); here such a group keeps weights of 0, so the no-data fallback of the
 * search applies.
 */
export function handleZeroImportance(
  imp: Float64Array,
  x: Float64Array,
  gs: number,
  half: number,
  bits: number,
): Float64Array {
  let zeros = 0;
  for (let i = 0; i < gs; i++) if (imp[i] <= 1e-30) zeros++;
  if (zeros === 0) return imp;
  if (zeros > half) return bits <= 3 ? x.map(Math.abs) : absPlusRms(x);
  const t = scratch(0, gs);
  t.set(imp.subarray(0, gs));
  const mean = zeros === gs ? 0 : fr(torchSum(t, gs) / (gs - zeros));
  return imp.map((v) => (v === 0 ? mean : v));
}

/**
 * AutoRound's importance without an imatrix for 4 and 5 bits: |x| + sqrt(Σx²/32) over the group
 * ("Note 32 is different from QK_K"), in float32.
 */
export function absPlusRms(x: Float64Array): Float64Array {
  const n = x.length, t = scratch(0, n);
  for (let i = 0; i < n; i++) t[i] = x[i] * x[i];
  const av = fr(Math.sqrt(fr(torchSum(t, n) / 32)));
  return x.map((v) => fr(Math.abs(v) + av));
}

/** Options of {@link iterativeWlsSearch} (AutoRound's `search_kwargs`). */
export interface WlsParams {
  rmin: number;
  rdelta: number;
  nstep: number;
  useMad: boolean;
}

/**
 * `iterative_wls_quant_search_chunk` on one group: asymmetric scale and min by weighted least squares
 * over a grid of ranges (llama.cpp make_qkx2_quants). Returns [scale, wmin] with wmin = −min.
 *
 * Differences from llama.cpp kept as AutoRound has them: the initial min is not clamped to ≤ 0; the
 * grid has `nstep` points (llama.cpp nstep + 1); candidates are rounded against the best min found
 * so far, not the group minimum.
 */
export function iterativeWlsSearch(
  x: Float64Array,
  w: Float64Array | undefined,
  bits: number,
  p: WlsParams,
  v?: Float64Array,
): [number, number] {
  const n = x.length, maxq = 2 ** bits - 1;
  const W = scratch(0, n), t = scratch(1, n), u = scratch(2, n), z = scratch(3, n);
  let rmin = Infinity, rmax = -Infinity;
  for (let i = 0; i < n; i++) {
    rmin = Math.min(rmin, x[i]);
    rmax = Math.max(rmax, x[i]);
    W[i] = w ? w[i] : 1;
    t[i] = W[i] * x[i];
  }
  const sumW = torchSum(W, n), sumX = torchSum(t, n);
  let scale = fr(fr(rmax - rmin) / maxq);
  let best = wlsError(x, W, maxq, scale, rmin, p.useMad, v);
  for (let step = 0; step < p.nstep; step++) {
    const factor = p.rmin + p.rdelta * step + maxq;
    const is = recip(fr(fr(rmax - rmin) / fr(factor)));
    for (let i = 0; i < n; i++) {
      let a = fr(fr(x[i] - rmin) * is);
      if (v) a = fr(a + v[i]);
      const q = Math.min(Math.max(rnd(a), 0), maxq);
      const tw = fr(q * W[i]);
      t[i] = tw;
      u[i] = tw * q;
      z[i] = tw * x[i];
    }
    const sl = torchSum(t, n), sl2 = torchSum(u, n), sxl = torchSum(z, n);
    const D = fr(fr(sumW * sl2) - fr(sl * sl));
    let thisScale = fr(fr(fr(sumW * sxl) - fr(sumX * sl)) / D);
    let thisMin = fr(fr(fr(sl2 * sumX) - fr(sl * sxl)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = fr(sxl / sl2);
    }
    const e = wlsError(x, W, maxq, thisScale, thisMin, p.useMad, v);
    if (e < best && D > 0) {
      best = e;
      scale = thisScale;
      rmin = thisMin;
    }
  }
  return [scale, -rmin];
}

/**
 * The error of scale `s` and min `m` in {@link iterativeWlsSearch}: with
 * q = clamp(round((x − m)·get_reciprocal(s) + v), 0, maxq), Σ W·|s·q + m − x| (`mad`) or
 * Σ W·(s·q + m − x)², in torch's float32 order. Uses scratch slot 4.
 */
function wlsError(
  x: Float64Array,
  W: Float32Array,
  maxq: number,
  s: number,
  m: number,
  mad: boolean,
  v?: Float64Array,
): number {
  const n = x.length, t = scratch(4, n), is = recip(s);
  for (let i = 0; i < n; i++) {
    let a = fr(fr(x[i] - m) * is);
    if (v) a = fr(a + v[i]);
    const q = Math.min(Math.max(rnd(a), 0), maxq);
    const d = fr(fr(fr(q * s) + m) - x[i]);
    t[i] = mad ? W[i] * Math.abs(d) : W[i] * fr(d * d);
  }
  return torchSum(t, n);
}

/**
 * `make_qp_quants` of data_type/gguf.py on one super-group: a non-negative scale for `data` (the
 * sub-block scales or mins) on `nmax` levels, weighted by `qw`. Returns [d, L].
 *
 * Difference: llama.cpp refines L for 5 more rounds; AutoRound has that loop commented out, and
 * falls back to max/nmax when Σ qw·L² is 0.
 */
export function makeQpQuants(nmax: number, data: Float64Array, qw: Float64Array): [number, Int16Array] {
  const n = data.length, t = scratch(0, n);
  let gmax = -Infinity;
  for (let i = 0; i < n; i++) gmax = Math.max(gmax, data[i]);
  // Σ qw·(data − s·l)² with l = round(is·data), clamped above at nmax when `clip`
  const mse = (s: number, is: number, clip: boolean) => {
    for (let i = 0; i < n; i++) {
      const l = rnd(fr(is * data[i]));
      const d = fr(data[i] - fr(s * (clip ? Math.min(l, nmax) : l)));
      t[i] = fr(qw[i] * d) * d;
    }
    return torchSum(t, n);
  };
  const scale0 = fr(gmax / nmax);
  let iscale = recip(scale0);
  let best = mse(scale0, iscale, false);
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const s = fr(gmax / fr(0.1 * is + nmax)), iss = recip(s);
    const e = mse(s, iss, true);
    if (e < best) {
      best = e;
      iscale = iss;
    }
  }
  const L = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    L[i] = Math.min(rnd(fr(iscale * data[i])), nmax);
    t[i] = fr(qw[i] * data[i]) * L[i];
  }
  const sumlx = torchSum(t, n);
  for (let i = 0; i < n; i++) t[i] = fr(qw[i] * L[i]) * L[i];
  const suml2 = torchSum(t, n);
  return [suml2 > 0 ? fr(sumlx / suml2) : fr(gmax / nmax), L];
}

/**
 * `double_quant_tensor` (non-negative values on `bits` bits, no imatrix): d = max/maxq,
 * L = min(round(x · maxq/max), maxq). Returns [d, L].
 */
export function doubleQuant(data: Float64Array, bits: number): [number, Int16Array] {
  const maxq = 2 ** bits - 1;
  let wmax = 0;
  for (const x of data) wmax = Math.max(wmax, x);
  const inv = Math.max(fr(maxq * recip(wmax)), 0);
  const L = new Int16Array(data.length);
  for (let i = 0; i < data.length; i++) L[i] = Math.min(rnd(fr(data[i] * inv)), maxq);
  return [fr(wmax / maxq), L];
}

/**
 * `double_quant_tensor_sym_rtn`: signed values on `bits` bits, full range: d = −(signed absmax)/2^(b−1),
 * L = clamp(round(x/d), −2^(b−1), 2^(b−1) − 1). Returns [d, L].
 */
export function doubleQuantSym(data: Float64Array, bits: number): [number, Int16Array] {
  const maxq = 2 ** (bits - 1);
  const d = fr(signedAbsMax(data) / -maxq), inv = recip(d);
  const L = new Int16Array(data.length);
  for (let i = 0; i < data.length; i++) L[i] = Math.min(Math.max(rnd(fr(data[i] * inv)), -maxq), maxq - 1);
  return [d, L];
}

/** Signed absolute maximum (the value with the largest |x|, first one on ties), as torch argmax picks. */
export function signedAbsMax(x: ArrayLike<number>): number {
  let m = 0, a = -1;
  for (let i = 0; i < x.length; i++) {
    if (Math.abs(x[i]) > a) {
      a = Math.abs(x[i]);
      m = x[i];
    }
  }
  return fr(m);
}
