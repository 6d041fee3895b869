/**
 * AutoRound's symmetric scale searches for the GGUF types: `make_qx_quants_chunk` and
 * `make_q3_quants` of auto_round/export/export_to_gguf/packing.py (v0.15; Q6_K, Q3_K, used by
 * data_type/gguf.py `search_gguf_scale_min_sym`) and `search_scales` of data_type/int.py (Q4_0, Q5_0,
 * Q8_0 with optimized RTN). They are llama.cpp's `make_qx_quants` / `make_q3_quants` (ggml-quants.c)
 * as AutoRound rewrote them for tensors; where the two differ, the AutoRound form is kept and the
 * difference is noted at the spot.
 *
 * Arithmetic as in search.ts: float32 in torch's CPU order (torch_f32.ts).
 */
import { signedAbsMax } from "./search.ts";
import { fr, recip, rint as rnd, scratch, torchSum } from "./torch_f32.ts";

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
  const W = scratch(0, n), t = scratch(1, n), u = scratch(2, n);
  for (let i = 0; i < n; i++) W[i] = qw ? qw[i] : x[i] * x[i];
  const gmax = signedAbsMax(x);
  // (Σ w·x·l, Σ w·l²) with l = clamp(round(x·is + v))
  const sums = (iscale: number): [number, number] => {
    for (let i = 0; i < n; i++) {
      let a = fr(x[i] * iscale);
      if (v) a = fr(a + v[i]);
      const l = Math.min(Math.max(rnd(a), -nmax), nmax - 1);
      t[i] = fr(W[i] * x[i]) * l;
      u[i] = fr(W[i] * l) * l;
    }
    return [torchSum(t, n), torchSum(u, n)];
  };
  const [slx0, sl20] = sums(fr(-nmax * recip(gmax)));
  let scale = fr(slx0 * recip(sl20));
  let best = fr(scale * slx0);
  // `-(nmax + -0.1 * _is) / group_max` is `group_max.reciprocal() * scalar` in torch.
  const ig = fr(1 / gmax);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    const [slx, sl2] = sums(fr(ig * fr(-(nmax + -0.1 * is))));
    if (sl2 > 0 && fr(slx * slx) > fr(best * sl2)) {
      scale = fr(slx / sl2);
      best = fr(scale * slx);
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
  const L = scratch(0, n), w = scratch(1, n), t = scratch(2, n), u = scratch(3, n);
  const iscale = fr(-nmax * recip(signedAbsMax(x)));
  for (let i = 0; i < n; i++) {
    let a = fr(iscale * x[i]);
    if (v) a = fr(a + v[i]);
    L[i] = Math.min(Math.max(rnd(a), -nmax), nmax - 1);
    w[i] = x[i] * x[i];
    t[i] = fr(w[i] * x[i]) * L[i];
    u[i] = fr(w[i] * L[i]) * L[i];
  }
  let sumlx = torchSum(t, n), suml2 = torchSum(u, n);
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < n; i++) {
      const wx = fr(w[i] * x[i]);
      let slx = fr(sumlx - fr(wx * L[i]));
      let sl2 = fr(suml2 - fr(fr(w[i] * L[i]) * L[i]));
      let replace = slx > 0;
      const newL = Math.min(Math.max(rnd(fr(fr(x[i] * sl2) / slx)), -nmax), nmax - 1);
      if (replace && newL !== L[i]) {
        slx = fr(slx + fr(wx * newL));
        sl2 = fr(sl2 + fr(fr(w[i] * newL) * newL));
      }
      replace = replace && sl2 > 0 && fr(fr(slx * slx) * suml2) > fr(fr(sumlx * sumlx) * sl2);
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
  const n = x.length, nmax = 2 ** (bits - 1), t = scratch(0, n);
  const ig = recip(signedAbsMax(x));
  // Σ qw·(s·l − x)² with s = 1/is, l = clamp(round(is·x))
  const loss = (iscale: number) => {
    const s = recip(iscale);
    for (let i = 0; i < n; i++) {
      const l = Math.min(Math.max(rnd(fr(iscale * x[i])), -nmax), nmax - 1);
      const d = fr(fr(s * l) - x[i]);
      t[i] = qw ? fr(d * d) * qw[i] : d * d;
    }
    return torchSum(t, n);
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
  let bestIs = fr(-nmax * ig);
  let best = loss(bestIs);
  for (let is = -searchMin; is <= searchMin; is++) {
    if (is === 0) continue;
    const iscale = fr(fr(-(nmax - step * is)) * ig);
    const e = loss(iscale);
    if (e < best) {
      best = e;
      bestIs = iscale;
    }
  }
  return recip(bestIs);
}
