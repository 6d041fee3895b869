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
 * added left to right). That reproduces auto-round's CPU bytes exactly. A CUDA run of auto-round
 * sums in a different order, so bytes from a GPU run can differ in near-ties.
 *
 * Speed (issue 12): a group is read in place from the tensor (no copies), the lane sums are formed
 * as the terms are computed (no temporary rows), and two shortcuts skip work that provably cannot
 * change the result: a grid point whose codes equal the previous point's codes gives the same
 * scale and min, hence the same error, and is skipped; and the error sum stops once its running
 * total reaches the best error, which, all terms being ≥ 0, the final float32 sum cannot go below
 * (round-to-nearest is monotone). The pre-speedup implementation is kept in tests/gguf_reference/
 * and checked against this one on random tensors.
 *
 * Layout: a group is `n` (16 or 32) consecutive weights `x[o .. o + n)`.
 */
import { fr, recip, RNE, torchSum } from "./torch_f32.ts";

export { recip };

/** `torch.round` then clamp to [0, maxq] (NaN stays NaN), for the codes of the asymmetric grids. */
function code(a: number, maxq: number): number {
  const q = a + RNE - RNE;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/** The grid of `iterative_wls_quant_search_chunk` (AutoRound's `search_kwargs`). */
export interface WlsParams {
  rmin: number;
  rdelta: number;
  nstep: number;
  useMad: boolean;
}

/** A {@link WlsParams} grid for `maxq`: fr(rmin + rdelta·step + maxq) per step (a Python float). */
export interface WlsGrid {
  maxq: number;
  useMad: boolean;
  factors: Float64Array;
}

/** The float32 factors of a grid, computed once per tensor. */
export function wlsGrid(p: WlsParams, maxq: number): WlsGrid {
  const factors = new Float64Array(p.nstep);
  for (let step = 0; step < p.nstep; step++) factors[step] = fr(p.rmin + p.rdelta * step + maxq);
  return { maxq, useMad: p.useMad, factors };
}

const xm = new Float64Array(32); // fr(x − rmin) for the current best min
const codes = new Float64Array(32); // the codes of the last grid point evaluated
// The group and its weights as float64 (the same values): loads without a float32 conversion each.
const xg = new Float64Array(32), wg = new Float64Array(32);

/** Result of {@link iterativeWlsSearch}: scale, wmin (= −min) and Σ W in torch's float32 order. */
export const wlsResult = { scale: 0, wmin: 0, sumW: 0 };

/**
 * `iterative_wls_quant_search_chunk` on the group `x[o .. o + n)` with float32 weights `W[0 .. n)`:
 * asymmetric scale and min by weighted least squares over a grid of ranges (llama.cpp
 * make_qkx2_quants). Writes {@link wlsResult}.
 *
 * Differences from llama.cpp kept as AutoRound has them: the initial min is not clamped to ≤ 0; the
 * grid has `nstep` points (llama.cpp nstep + 1); candidates are rounded against the best min found
 * so far, not the group minimum.
 */
export function iterativeWlsSearch(
  x: Float32Array,
  o: number,
  n: number,
  W: Float32Array,
  grid: WlsGrid,
): void {
  const { maxq, useMad, factors } = grid;
  let rmin = Infinity, rmax = -Infinity, sumW = 0, sumX = 0, nonneg = true;
  for (let i = 0; i < n; i++) {
    const xv = (xg[i] = x[o + i]), wv = (wg[i] = W[i]);
    rmin = Math.min(rmin, xv);
    rmax = Math.max(rmax, xv);
    if (!(wv >= 0)) nonneg = false;
  }
  for (let l = 0; l < 8; l++) {
    let a = wg[l], b = fr(wg[l] * xg[l]);
    for (let j = l + 8; j < n; j += 8) {
      a = fr(a + wg[j]);
      b = fr(b + fr(wg[j] * xg[j]));
    }
    sumW = fr(sumW + a);
    sumX = fr(sumX + b);
  }
  wlsResult.sumW = sumW;
  let scale = fr(fr(rmax - rmin) / maxq);
  let best = wlsError(n, maxq, scale, rmin, useMad, NaN);
  const bound = nonneg ? 0 : NaN; // NaN: no early exit when a weight is negative or NaN
  for (let i = 0; i < n; i++) xm[i] = fr(xg[i] - rmin);
  for (let step = 0; step < factors.length; step++) {
    const is = recip(fr(fr(rmax - rmin) / factors[step]));
    let changed = step === 0;
    for (let i = 0; i < n; i++) {
      const q = code(fr(xm[i] * is), maxq);
      if (q !== codes[i]) {
        codes[i] = q;
        changed = true;
      }
    }
    // Same codes as the last point: same sums, scale, min and error; no decision can change.
    if (!changed) continue;
    let sl = 0, sl2 = 0, sxl = 0;
    for (let l = 0; l < 8; l++) {
      let q = codes[l], tw = fr(q * wg[l]);
      let a = tw, b = fr(tw * q), c = fr(tw * xg[l]);
      for (let j = l + 8; j < n; j += 8) {
        q = codes[j];
        tw = fr(q * wg[j]);
        a = fr(a + tw);
        b = fr(b + fr(tw * q));
        c = fr(c + fr(tw * xg[j]));
      }
      sl = fr(sl + a);
      sl2 = fr(sl2 + b);
      sxl = fr(sxl + c);
    }
    const D = fr(fr(sumW * sl2) - fr(sl * sl));
    if (!(D > 0)) continue; // AutoRound keeps a point only when D > 0
    let thisScale = fr(fr(fr(sumW * sxl) - fr(sumX * sl)) / D);
    let thisMin = fr(fr(fr(sl2 * sumX) - fr(sl * sxl)) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = fr(sxl / sl2);
    }
    const e = wlsError(n, maxq, thisScale, thisMin, useMad, bound + best);
    if (e < best) {
      best = e;
      scale = thisScale;
      rmin = thisMin;
      for (let i = 0; i < n; i++) xm[i] = fr(xg[i] - rmin);
    }
  }
  wlsResult.scale = scale;
  wlsResult.wmin = -rmin;
}

/**
 * The error of scale `s` and min `m` in {@link iterativeWlsSearch} over the group in `xg`/`wg`: with
 * q = clamp(round((x − m)·get_reciprocal(s)), 0, maxq), Σ W·|s·q + m − x| (`mad`) or
 * Σ W·(s·q + m − x)², in torch's float32 order. Returns early, with a partial sum ≥ `stop`, once the
 * running total reaches `stop` (terms ≥ 0; pass NaN for the full sum).
 */
function wlsError(n: number, maxq: number, s: number, m: number, mad: boolean, stop: number): number {
  const is = recip(s);
  let total = 0;
  for (let l = 0; l < 8; l++) {
    let lane = 0;
    for (let j = l; j < n; j += 8) {
      const xv = xg[j];
      const q = code(fr(fr(xv - m) * is), maxq);
      const d = fr(fr(fr(q * s) + m) - xv);
      const t = mad ? fr(wg[j] * Math.abs(d)) : fr(wg[j] * fr(d * d));
      lane = j === l ? t : fr(lane + t);
    }
    total = fr(total + lane);
    if (total >= stop) return total;
  }
  return total;
}

/**
 * `_imatrix_handle_zero` applied to the importance `imp[0 .. gs)` of the group `x[o .. o + gs)`, in
 * place: a group with more than `half` zeros (≤ 1e-30) falls back to |w| (bits ≤ 3) or
 * |w| + sqrt(Σw²/32); a group with some zeros gets its exact zeros replaced by the sum of its
 * entries over the non-zero count.
 *
 * Difference: AutoRound divides by (gs − zeros) also when every entry is zero (giving NaN, which
 * makes the block's scale NaN); here such a group keeps weights of 0, so the no-data fallback of the
 * search applies.
 */
export function handleZeroImportance(
  imp: Float64Array,
  x: Float32Array,
  o: number,
  gs: number,
  half: number,
  bits: number,
): void {
  let zeros = 0;
  for (let i = 0; i < gs; i++) if (imp[i] <= 1e-30) zeros++;
  if (zeros === 0) return;
  if (zeros > half) {
    if (bits <= 3) { for (let i = 0; i < gs; i++) imp[i] = Math.abs(x[o + i]); }
    else absPlusRms(x, o, gs, imp);
    return;
  }
  const t = new Float32Array(gs);
  t.set(imp.subarray(0, gs));
  const mean = zeros === gs ? 0 : fr(torchSum(t, gs) / (gs - zeros));
  for (let i = 0; i < gs; i++) if (imp[i] === 0) imp[i] = mean;
}

/**
 * AutoRound's importance without an imatrix for 4 and 5 bits: |x| + sqrt(Σx²/32) over the group
 * `x[o .. o + n)` ("Note 32 is different from QK_K"), in float32, into `out[0 .. n)`.
 */
export function absPlusRms(x: Float32Array, o: number, n: number, out: Float32Array | Float64Array): void {
  let s = 0;
  for (let l = 0; l < 8; l++) {
    let lane = fr(x[o + l] * x[o + l]);
    for (let j = l + 8; j < n; j += 8) lane = fr(lane + fr(x[o + j] * x[o + j]));
    s = fr(s + lane);
  }
  const av = fr(Math.sqrt(fr(s / 32)));
  for (let i = 0; i < n; i++) out[i] = fr(Math.abs(x[o + i]) + av);
}

export { doubleQuant, doubleQuantSym, makeQpQuants, signedAbsMax } from "./double_quant.ts";
