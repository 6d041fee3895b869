/**
 * AutoRound's symmetric scale searches for the GGUF types: `make_qx_quants_chunk` and
 * `make_q3_quants` of auto_round/export/export_to_gguf/packing.py (v0.15; Q6_K, Q3_K, used by
 * data_type/gguf.py `search_gguf_scale_min_sym`) and `search_scales` of data_type/int.py (Q4_0, Q5_0,
 * Q8_0 with optimized RTN). They are llama.cpp's `make_qx_quants` / `make_q3_quants` (ggml-quants.c)
 * as AutoRound rewrote them for tensors; where the two differ, the AutoRound form is kept and the
 * difference is noted at the spot.
 *
 * Arithmetic as in search.ts: float32 in torch's CPU order (torch_f32.ts), on the group
 * `x[o .. o + n)` read in place, with shortcuts that provably leave the result unchanged (noted where
 * used); tests/gguf_reference/ holds the plain implementation they are checked against.
 */
import { signedAbsMax } from "./double_quant.ts";
import { fr, recip, RNE } from "./torch_f32.ts";
import { symSearchGrid } from "../int_quant.ts";

/** `torch.round` then clamp to [−nmax, nmax − 1] (NaN stays NaN). */
function symCode(a: number, nmax: number): number {
  const q = a + RNE - RNE;
  return q < -nmax ? -nmax : q > nmax - 1 ? nmax - 1 : q;
}

// Float32 values held as float64 (loads without a conversion each): the weights, w·x, the group, codes.
const W = new Float64Array(32),
  wx = new Float64Array(32),
  xg = new Float64Array(32),
  L = new Float64Array(32);

/** fr(−(nmax + −0.1·is)) for is = −9..9 (index is + 9), per nmax: the Python floats of the grid. */
const qxGrids = new Map<number, Float64Array>();
function qxGrid(nmax: number): Float64Array {
  let g = qxGrids.get(nmax);
  if (!g) {
    g = new Float64Array(19);
    for (let is = -9; is <= 9; is++) g[is + 9] = fr(-(nmax + -0.1 * is));
    qxGrids.set(nmax, g);
  }
  return g;
}

/**
 * `make_qx_quants_chunk` with rmse_type 1 on one group of 16 (Q6_K; Q3_K with an imatrix):
 * symmetric scale on 2^(b−1) levels searched over 19 grid points around −nmax/max, weighted by
 * `qw` (or x² without one). Returns the scale.
 *
 * The grid runs −(nmax − 0.1·is)/max for is = −9..9 in AutoRound's order (llama.cpp walks it the
 * other way, which only matters on exact ties). A grid point whose codes equal the previous point's
 * has the same sums and leaves the choice as it is (rejected again, or accepted again with the same
 * scale), so its sums are skipped; the first point after the start is always evaluated, the start
 * setting the scale by another formula.
 */
export function makeQxQuants(x: Float32Array, o: number, n: number, bits: number, qw?: Float64Array): number {
  const nmax = 2 ** (bits - 1), grid = qxGrid(nmax);
  for (let i = 0; i < n; i++) {
    const xv = (xg[i] = x[o + i]);
    W[i] = fr(qw ? qw[i] : xv * xv);
    wx[i] = fr(W[i] * xv);
  }
  const gmax = signedAbsMax(x, o, n);
  qxSums(n, nmax, fr(-nmax * recip(gmax)));
  let scale = fr(qxSlx * recip(qxSl2));
  let best = fr(scale * qxSlx);
  // `-(nmax + -0.1 * _is) / group_max` is `group_max.reciprocal() * scalar` in torch.
  const ig = fr(1 / gmax);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const iscale = fr(ig * grid[is + 9]);
    let changed = is === -9;
    for (let i = 0; i < n; i++) {
      const l = symCode(fr(xg[i] * iscale), nmax);
      if (l !== L[i]) {
        L[i] = l;
        changed = true;
      }
    }
    if (!changed) continue;
    qxSumsOfCodes(n);
    const slx = qxSlx, sl2 = qxSl2;
    if (sl2 > 0 && fr(slx * slx) > fr(best * sl2)) {
      scale = fr(slx / sl2);
      best = fr(scale * slx);
    }
  }
  return scale;
}

let qxSlx = 0, qxSl2 = 0;

/** (Σ w·x·l, Σ w·l²) with l = clamp(round(x·iscale)), into qxSlx/qxSl2 (and the codes into L). */
function qxSums(n: number, nmax: number, iscale: number): void {
  for (let i = 0; i < n; i++) L[i] = symCode(fr(xg[i] * iscale), nmax);
  qxSumsOfCodes(n);
}

/** The sums of {@link qxSums} for the codes in L, in torch's order (lanes i mod 8). */
function qxSumsOfCodes(n: number): void {
  let slx = 0, sl2 = 0;
  for (let l = 0; l < 8; l++) {
    let a = fr(wx[l] * L[l]), b = fr(fr(W[l] * L[l]) * L[l]);
    for (let j = l + 8; j < n; j += 8) {
      a = fr(a + fr(wx[j] * L[j]));
      b = fr(b + fr(fr(W[j] * L[j]) * L[j]));
    }
    slx = fr(slx + a);
    sl2 = fr(sl2 + b);
  }
  qxSlx = slx;
  qxSl2 = sl2;
}

/**
 * `make_q3_quants(do_rmse=True)` of packing.py on one group of 16 (Q3_K without an imatrix): start
 * from −4/max and move single codes while the weighted fit improves, 5 rounds. Returns the scale.
 *
 * Kept as AutoRound has it, which differs from llama.cpp: the running sums are replaced by the
 * candidate sums after every element whether or not the move was accepted, and all 5 rounds run.
 */
export function makeQ3Quants(x: Float32Array, o: number, n: number, bits: number): number {
  const nmax = 1 << (bits - 1);
  const iscale = fr(-nmax * recip(signedAbsMax(x, o, n)));
  for (let i = 0; i < n; i++) {
    const xv = (xg[i] = x[o + i]);
    L[i] = symCode(fr(iscale * xv), nmax);
    W[i] = fr(xv * xv);
    wx[i] = fr(W[i] * xv);
  }
  qxSumsOfCodes(n);
  let sumlx = qxSlx, suml2 = qxSl2;
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < n; i++) {
      const w = W[i], li = L[i];
      let slx = fr(sumlx - fr(wx[i] * li));
      let sl2 = fr(suml2 - fr(fr(w * li) * li));
      let replace = slx > 0;
      const newL = symCode(fr(fr(xg[i] * sl2) / slx), nmax);
      if (replace && newL !== li) {
        slx = fr(slx + fr(wx[i] * newL));
        sl2 = fr(sl2 + fr(fr(w * newL) * newL));
      }
      replace = replace && sl2 > 0 && fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2);
      if (replace) L[i] = newL;
      sumlx = slx;
      suml2 = sl2;
    }
  }
  return fr(sumlx * recip(suml2));
}

/** fr(−(nmax − step·is)) for is = −searchMin..searchMin (index is + searchMin), per bits. */
const symGrids = new Map<number, { searchMin: number; g: Float64Array }>();
function symGrid(bits: number): { searchMin: number; g: Float64Array } {
  let r = symGrids.get(bits);
  if (!r) {
    const { nmax, searchMin, step } = symSearchGrid(bits);
    const g = new Float64Array(2 * searchMin + 1);
    for (let is = -searchMin; is <= searchMin; is++) g[is + searchMin] = fr(-(nmax - step * is));
    symGrids.set(bits, r = { searchMin, g });
  }
  return r;
}

const terms = new Float32Array(32), order = new Int32Array(32);
const xs = new Float64Array(32), qws = new Float64Array(32); // the group and its importance in `order`
/** 1 − 2^−18: the float32 sum of n ≤ 32 terms ≥ 0 in torch's order is above (exact sum)·(1 − 2^−20). */
const SAFE = 1 - 2 ** -18;

/**
 * `search_scales` of data_type/int.py (optimized RTN for symmetric int, used for Q4_0/Q5_0/Q8_0
 * block weights): try scales −(nmax − step·i)/max around the absmax rule, keep the one with the least
 * (importance-weighted) squared error. Returns the scale of one group.
 *
 * Pruning (exact): the terms are formed largest |x| first (the clipped weights, which decide most
 * grid points) and a point is dropped as soon as the float64 sum of its terms so far, less a margin
 * above the float32 rounding of a 32-term sum, reaches the best error: its float32 error, summed in
 * torch's order over all terms ≥ 0, cannot then fall below the best. Without a prune the error is
 * the exact torch-order float32 sum of the same terms.
 */
export function searchScaleSym(
  x: Float32Array,
  o: number,
  n: number,
  bits: number,
  qw?: Float64Array,
): number {
  const nmax = 2 ** (bits - 1);
  const { searchMin, g } = symGrid(bits);
  const ig = recip(signedAbsMax(x, o, n));
  let nonneg = true;
  if (qw) { for (let i = 0; i < n; i++) if (!(qw[i] >= 0)) nonneg = false; }
  sortByMagnitude(x, o, n);
  for (let k = 0; k < n; k++) {
    xs[k] = x[o + order[k]];
    qws[k] = qw ? qw[order[k]] : 1;
  }
  let bestIs = fr(-nmax * ig);
  let best = symLoss(n, nmax, bestIs, !!qw, NaN);
  const margin = nonneg ? SAFE : NaN;
  for (let is = -searchMin; is <= searchMin; is++) {
    if (is === 0) continue;
    const iscale = fr(g[is + searchMin] * ig);
    const e = symLoss(n, nmax, iscale, !!qw, best / margin);
    if (e < best) {
      best = e;
      bestIs = iscale;
    }
  }
  return recip(bestIs);
}

/** `order` = indices of x[o .. o + n) by decreasing |x| (insertion sort). */
function sortByMagnitude(x: Float32Array, o: number, n: number): void {
  for (let i = 0; i < n; i++) {
    const a = Math.abs(x[o + i]);
    let j = i;
    while (j > 0 && Math.abs(x[o + order[j - 1]]) < a) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
}

/**
 * Σ qw·(s·l − x)² with s = 1/iscale, l = clamp(round(iscale·x)) over the group in `xs`/`qws`, in
 * torch's float32 order; Infinity as soon as the float64 partial sum reaches `stop` (NaN: never).
 */
function symLoss(n: number, nmax: number, iscale: number, weighted: boolean, stop: number): number {
  const s = recip(iscale);
  let partial = 0;
  for (let k = 0; k < n; k++) {
    const xv = xs[k];
    const l = symCode(fr(iscale * xv), nmax);
    const d = fr(fr(s * l) - xv);
    const t = weighted ? fr(fr(d * d) * qws[k]) : fr(d * d);
    terms[order[k]] = t;
    partial += t;
    if (partial >= stop) return Infinity;
  }
  let total = 0;
  for (let l = 0; l < 8; l++) {
    let lane = terms[l];
    for (let j = l + 8; j < n; j += 8) lane = fr(lane + terms[j]);
    total = fr(total + lane);
  }
  return total;
}
