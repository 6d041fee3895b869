/**
 * AutoRound's scale/min searches for the GGUF types, ported from auto_round/data_type/gguf.py
 * (v0.15: `iterative_wls_quant_search_chunk`, `make_qp_quants`, `double_quant_tensor`,
 * `double_quant_tensor_sym_rtn`, `_imatrix_handle_zero`, `search_gguf_scale_min_asym`,
 * `search_gguf_scale_min_sym`) and auto_round/export/export_to_gguf/packing.py (`make_qx_quants_chunk`,
 * `make_q3_quants`). They are llama.cpp's `make_qkx2_quants` / `make_qp_quants` / `make_qx_quants` /
 * `make_q3_quants` (ggml-quants.c) as AutoRound rewrote them for tensors; where the two differ, the
 * AutoRound form is kept and the difference is noted at the spot.
 *
 * Arithmetic: AutoRound runs these in float32 torch; here sums run in float64 and stored values are
 * rounded to float32. `torch.round` is half-to-even ({@link roundHalfEven}); `get_reciprocal(x)` is
 * 1/x for |x| ≥ 1e-30 and 0 otherwise (auto_round/utils/common.py).
 *
 * Layout: a tensor is a run of groups of `gs` consecutive weights (row-major [N, K] with gs | K);
 * super-groups are `sgs` consecutive groups.
 */
import { roundHalfEven as rnd } from "../../tensor/dtype.ts";

const fr = Math.fround;

/** auto_round get_reciprocal for float32 tensors. */
export function recip(x: number): number {
  return Math.abs(x) >= 1e-30 ? 1 / x : 0;
}

/** Per-group importance weights, or a function of the group when there is no imatrix. */
export type GroupWeights = Float64Array;

/**
 * `_imatrix_handle_zero` applied to the imatrix rows of groups of `gs` columns: a group with more
 * than `half` zeros (≤ 1e-30) falls back to |w| (bits ≤ 3) or |w| + sqrt(Σw²/32); a group with some
 * zeros gets them replaced by the mean of its entries over the non-zero count.
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
  let zeros = 0, sum = 0;
  for (let i = 0; i < gs; i++) {
    if (imp[i] <= 1e-30) zeros++;
    sum += imp[i];
  }
  if (zeros === 0) return imp;
  const out = new Float64Array(gs);
  if (zeros > half) {
    let s2 = 0;
    for (let i = 0; i < gs; i++) s2 += x[i] * x[i];
    const av = Math.sqrt(s2 / 32); // "Note 32 is different from QK_K" (AutoRound)
    for (let i = 0; i < gs; i++) out[i] = bits <= 3 ? Math.abs(x[i]) : Math.abs(x[i]) + av;
    return out;
  }
  const mean = zeros === gs ? 0 : sum / (gs - zeros);
  for (let i = 0; i < gs; i++) out[i] = imp[i] === 0 ? mean : imp[i];
  return out;
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
  let rmin = Infinity, rmax = -Infinity, sumW = 0, sumX = 0;
  for (let i = 0; i < n; i++) {
    rmin = Math.min(rmin, x[i]);
    rmax = Math.max(rmax, x[i]);
    const wi = w ? w[i] : 1;
    sumW += wi;
    sumX += wi * x[i];
  }
  rmin = fr(rmin);
  let scale = fr((rmax - rmin) / maxq);
  const err = (s: number, m: number) => {
    const is = recip(s);
    let e = 0;
    for (let i = 0; i < n; i++) {
      const q = Math.min(Math.max(rnd((x[i] - m) * is + (v ? v[i] : 0)), 0), maxq);
      const d = s * q + m - x[i];
      e += (w ? w[i] : 1) * (p.useMad ? Math.abs(d) : d * d);
    }
    return e;
  };
  let best = err(scale, rmin);
  for (let step = 0; step < p.nstep; step++) {
    const factor = p.rmin + p.rdelta * step + maxq;
    const isNew = recip(fr((rmax - rmin) / factor));
    let sl = 0, sl2 = 0, sxl = 0;
    for (let i = 0; i < n; i++) {
      const q = Math.min(Math.max(rnd((x[i] - rmin) * isNew + (v ? v[i] : 0)), 0), maxq);
      const wq = (w ? w[i] : 1) * q;
      sl += wq;
      sl2 += wq * q;
      sxl += wq * x[i];
    }
    const D = sumW * sl2 - sl * sl;
    let thisScale = fr((sumW * sxl - sumX * sl) / D);
    let thisMin = fr((sl2 * sumX - sl * sxl) / D);
    if (thisMin > 0) {
      thisMin = 0;
      thisScale = fr(sxl / sl2);
    }
    const e = err(thisScale, thisMin);
    if (e < best && D > 0) {
      best = e;
      scale = thisScale;
      rmin = thisMin;
    }
  }
  return [scale, fr(-rmin)];
}

/**
 * `make_qp_quants` of data_type/gguf.py on one super-group: a non-negative scale for `data` (the
 * sub-block scales or mins) on `nmax` levels, weighted by `qw`. Returns [d, L].
 *
 * Difference: llama.cpp refines L for 5 more rounds; AutoRound has that loop commented out, and
 * falls back to max/nmax when Σ qw·L² is 0.
 */
export function makeQpQuants(nmax: number, data: Float64Array, qw: Float64Array): [number, Int16Array] {
  const n = data.length;
  let gmax = -Infinity;
  for (let i = 0; i < n; i++) gmax = Math.max(gmax, data[i]);
  gmax = fr(gmax);
  let iscale = recip(fr(gmax / nmax));
  const scale0 = fr(gmax / nmax);
  let best = 0;
  for (let i = 0; i < n; i++) {
    const d = data[i] - scale0 * rnd(iscale * data[i]);
    best += qw[i] * d * d;
  }
  for (let is = -4; is <= 4; is++) {
    if (is === 0) continue;
    const s = fr(gmax / (0.1 * is + nmax)), iss = recip(s);
    let mse = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.min(rnd(iss * data[i]), nmax);
      const d = data[i] - s * l;
      mse += qw[i] * d * d;
    }
    if (mse < best) {
      best = mse;
      iscale = iss;
    }
  }
  const L = new Int16Array(n);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    L[i] = Math.min(rnd(iscale * data[i]), nmax);
    sumlx += qw[i] * data[i] * L[i];
    suml2 += qw[i] * L[i] * L[i];
  }
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
  wmax = fr(wmax);
  const inv = Math.max(fr(maxq * recip(wmax)), 0);
  const L = new Int16Array(data.length);
  for (let i = 0; i < data.length; i++) L[i] = Math.min(rnd(data[i] * inv), maxq);
  return [fr(wmax / maxq), L];
}

/**
 * `double_quant_tensor_sym_rtn`: signed values on `bits` bits, full range: d = −(signed absmax)/2^(b−1),
 * L = clamp(round(x/d), −2^(b−1), 2^(b−1) − 1). Returns [d, L].
 */
export function doubleQuantSym(data: Float64Array, bits: number): [number, Int16Array] {
  const maxq = 2 ** (bits - 1);
  let wmax = 0, amax = -1;
  for (const x of data) {
    if (Math.abs(x) > amax) {
      amax = Math.abs(x);
      wmax = x;
    }
  }
  const d = fr(fr(wmax) / -maxq), inv = recip(d);
  const L = new Int16Array(data.length);
  for (let i = 0; i < data.length; i++) L[i] = Math.min(Math.max(rnd(data[i] * inv), -maxq), maxq - 1);
  return [d, L];
}

/** Signed absolute maximum (the value with the largest |x|, first one on ties), as torch argmax picks. */
function signedAbsMax(x: Float64Array): number {
  let m = 0, a = -1;
  for (const v of x) {
    if (Math.abs(v) > a) {
      a = Math.abs(v);
      m = v;
    }
  }
  return fr(m);
}

/**
 * `make_qx_quants_chunk` with rmse_type 1 on one group of 16 (Q6_K; Q3_K with an imatrix):
 * symmetric scale on 2^(b−1) levels searched over 19 grid points around −nmax/max, weighted by
 * `qw` (or x² without one). Returns the scale.
 *
 * The grid runs −(nmax − 0.1·is)/max for is = −9..9 in AutoRound's order (llama.cpp walks it the
 * other way, which only matters on exact ties).
 */
export function makeQxQuants(x: Float64Array, bits: number, qw?: Float64Array, v?: Float64Array): number {
  const n = x.length, nmax = 2 ** (bits - 1);
  const gmax = signedAbsMax(x);
  const w = (i: number) => (qw ? qw[i] : x[i] * x[i]);
  const sums = (iscale: number): [number, number] => {
    let slx = 0, sl2 = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.min(Math.max(rnd(x[i] * iscale + (v ? v[i] : 0)), -nmax), nmax - 1);
      slx += w(i) * x[i] * l;
      sl2 += w(i) * l * l;
    }
    return [slx, sl2];
  };
  const [slx0, sl20] = sums(-nmax * recip(gmax));
  let scale = fr(slx0 * recip(sl20));
  let best = scale * slx0;
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const [slx, sl2] = sums(fr(-(nmax - 0.1 * is) / gmax));
    if (sl2 > 0 && slx * slx > best * sl2) {
      scale = fr(slx / sl2);
      best = scale * slx;
    }
  }
  return scale;
}

/**
 * `make_q3_quants(do_rmse=True)` of packing.py on one group of 16 (Q3_K without an imatrix): start
 * from −4/max and move single codes while the weighted fit improves, 5 rounds. Returns the scale.
 *
 * Kept as AutoRound has it, which differs from llama.cpp: the running sums are replaced by the
 * candidate sums after every element whether or not the move was accepted, and all 5 rounds run.
 */
export function makeQ3Quants(x: Float64Array, bits: number, v?: Float64Array): number {
  const n = x.length, nmax = 1 << (bits - 1);
  const gmax = signedAbsMax(x);
  const iscale = -nmax * recip(gmax);
  const L = new Float64Array(n);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    L[i] = Math.min(Math.max(rnd(iscale * x[i] + (v ? v[i] : 0)), -nmax), nmax - 1);
    const w = x[i] * x[i];
    sumlx += w * x[i] * L[i];
    suml2 += w * L[i] * L[i];
  }
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < n; i++) {
      const w = x[i] * x[i];
      let slx = sumlx - w * x[i] * L[i];
      let sl2 = suml2 - w * L[i] * L[i];
      let replace = slx > 0;
      const newL = Math.min(Math.max(rnd((x[i] * sl2) / slx), -nmax), nmax - 1);
      if (replace && newL !== L[i]) {
        slx += w * x[i] * newL;
        sl2 += w * newL * newL;
      }
      replace = replace && sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2;
      if (replace) L[i] = newL;
      sumlx = slx;
      suml2 = sl2;
    }
  }
  return fr(sumlx * recip(suml2));
}

/**
 * `search_scales` of data_type/int.py (optimized RTN for symmetric int, used for Q4_0/Q5_0/Q8_0
 * block weights): try scales −(nmax − step·i)/max around the absmax rule, keep the one with the least
 * (importance-weighted) squared error. Returns the scale of one group.
 */
export function searchScaleSym(x: Float64Array, bits: number, qw?: Float64Array): number {
  const nmax = 2 ** (bits - 1);
  const gmax = signedAbsMax(x);
  const loss = (iscale: number) => {
    const s = recip(iscale);
    let e = 0;
    for (let i = 0; i < x.length; i++) {
      const l = Math.min(Math.max(rnd(iscale * x[i]), -nmax), nmax - 1);
      const d = s * l - x[i];
      e += d * d * (qw ? qw[i] : 1);
    }
    return e;
  };
  let searchMin: number, step: number;
  if (bits === 2) {
    searchMin = 18 * 5;
    step = 0.01;
  } else {
    const span = nmax * 0.75; // AR_SEARCH_SCALE_RATIO default
    step = (span / 200) * 2;
    searchMin = Math.trunc(span / step);
  }
  let bestIs = fr(-nmax * recip(gmax));
  let best = loss(bestIs);
  for (let is = -searchMin; is <= searchMin; is++) {
    if (is === 0) continue;
    const iscale = fr(-(nmax - step * is) * recip(gmax));
    const e = loss(iscale);
    if (e < best) {
      best = e;
      bestIs = iscale;
    }
  }
  return fr(recip(bestIs));
}
