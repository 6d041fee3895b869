/**
 * Step 1 of quantize.ts, per type family: the group searches (search.ts, search_sym.ts) and the
 * double quantization of the K-quants' sub-block scales (double_quant.ts) over whole rows, as
 * auto_round/data_type (v0.15) runs them — `opt_rtn_int_sym` / `rtn_int_sym` (Q4_0, Q5_0, Q8_0),
 * `int_asym_float_zp` (Q4_1, Q5_1), `search_gguf_scale_min_asym` (Q2_K, Q4_K, Q5_K),
 * `search_gguf_scale_min_sym` + `double_quant_tensor_sym_rtn` (Q3_K, Q6_K).
 *
 * {@link searchPlan} does the per-tensor preparation once (grid, importance checks);
 * {@link searchInto} fills preallocated parameters for rows `w` `[n, k]`, so it can run on any
 * range of rows (group and super-block indices are local to `w`).
 */
import { type GgufParams, type QuantGgmlType, type SearchOptions, TYPE_QUANT } from "./params.ts";
import { doubleQuant, doubleQuantSym, makeQpQuants } from "./double_quant.ts";
import {
  absPlusRms,
  handleZeroImportance,
  iterativeWlsSearch,
  type WlsGrid,
  wlsGrid,
  wlsResult,
} from "./search.ts";
import { makeQ3Quants, makeQxQuants, searchScaleSym } from "./search_sym.ts";
import { fr } from "./torch_f32.ts";

/** What {@link searchInto} needs of one tensor, prepared once. */
export interface SearchPlan {
  type: QuantGgmlType;
  k: number;
  optRtn: boolean;
  /** The importance matrix when it is used (opt-RTN on, not all zero). */
  imatrix?: Float64Array | Float32Array;
  imatrixHasZero: boolean;
  /** The WLS grid of Q2_K/Q4_K/Q5_K. */
  grid?: WlsGrid;
}

/** Prepare the search of a `[·, k]` tensor of `type`. */
export function searchPlan(type: QuantGgmlType, k: number, opts: SearchOptions): SearchPlan {
  let imatrix = opts.optRtn ? opts.imatrix : undefined;
  if (imatrix && !imatrix.some((v) => v !== 0)) imatrix = undefined; // torch.sum(imatrix) == 0
  const imatrixHasZero = imatrix?.some((v) => v === 0) ?? false;
  const { bits } = TYPE_QUANT[type];
  let grid: WlsGrid | undefined;
  if (type === "Q2_K" || type === "Q4_K" || type === "Q5_K") {
    const p = imatrix
      ? { rmin: -0.9, rdelta: 0.05, nstep: 36, useMad: false }
      : bits === 2
      ? { rmin: -0.5, rdelta: 0.1, nstep: 15, useMad: true }
      : bits === 4
      ? { rmin: -1, rdelta: 0.1, nstep: 20, useMad: false }
      : { rmin: -0.5, rdelta: 0.1, nstep: 15, useMad: false };
    grid = wlsGrid(p, 2 ** bits - 1);
  }
  return { type, k, optRtn: opts.optRtn, imatrix, imatrixHasZero, grid };
}

const qw = new Float64Array(32), W = new Float32Array(32), L = new Int16Array(16);
let superData = new Float32Array(0), superWeights = new Float64Array(0);

/** The importance of the group at column `col` into `qw` (as given: float64 or float32 values). */
function loadImportance(imatrix: Float64Array | Float32Array, col: number, gs: number): Float64Array {
  for (let i = 0; i < gs; i++) qw[i] = imatrix[col + i];
  return qw;
}

/** Fill `p` with the parameters of the rows `w` `[n, plan.k]`. */
export function searchInto(plan: SearchPlan, w: Float32Array, n: number, p: GgufParams): void {
  const { type, k } = plan, { bits, group: gs } = TYPE_QUANT[type];
  const G = (n * k) / gs;
  switch (p.kind) {
    case "sym": {
      // "int" sym, group 32 (schemes.py GGUF_SCHEME_FACTS): opt_rtn_int_sym (search_scales with the
      // imatrix) or, without opt-RTN, rtn_int_sym (±absmax/2^(b−1)); scale dtype float32 for GGUF,
      // magnitudes clamped to 1e-8 (wrapper.py q_scale_thresh for float32 scales).
      const nmax = 2 ** (bits - 1), im = plan.imatrix;
      for (let g = 0, o = 0; g < G; g++, o += gs) {
        let s: number;
        if (plan.optRtn) {
          const q = im ? loadImportance(im, o % k, gs) : undefined;
          if (q && plan.imatrixHasZero) handleZeroImportance(q, w, o, gs, gs >> 1, bits);
          s = searchScaleSym(w, o, gs, bits, q);
        } else {
          const [lo, hi] = rangeWithZero(w, o, gs);
          const a = -lo, b = hi;
          s = fr(((b < a ? 1 : -1) * Math.max(a, b)) / nmax);
        }
        p.scale[g] = s < 0 ? Math.min(s, -1e-8) : Math.max(s, 1e-8);
      }
      return;
    }
    case "asym": {
      // int_asym_float_zp: scale = (max − min)/maxq ≥ 1e-8, zp = −min/scale (not rounded).
      const maxq = 2 ** bits - 1;
      for (let g = 0, o = 0; g < G; g++, o += gs) {
        const [lo, hi] = rangeWithZero(w, o, gs);
        const s = Math.max(fr(fr(hi - lo) / maxq), 1e-8);
        p.scale[g] = s;
        p.zp[g] = fr(-lo / s);
      }
      return;
    }
    case "kasym":
      return searchKAsym(plan, w, G, p);
    case "ksym":
      return searchKSym(plan, w, G, p);
  }
}

/** [min(0, min x), max(0, max x)] of the group x[o .. o + n): the range with zero, as AutoRound's RTN takes it. */
function rangeWithZero(x: Float32Array, o: number, n: number): [number, number] {
  let lo = 0, hi = 0;
  for (let i = o; i < o + n; i++) {
    lo = Math.min(lo, x[i]);
    hi = Math.max(hi, x[i]);
  }
  return [lo, hi];
}

/** search_gguf_scale_min_asym (Q2_K, Q4_K, Q5_K) on G groups. */
function searchKAsym(
  plan: SearchPlan,
  w: Float32Array,
  G: number,
  p: Extract<GgufParams, { kind: "kasym" }>,
): void {
  const { bits, group: gs, superGroup: sgs } = TYPE_QUANT[plan.type], im = plan.imatrix, k = plan.k;
  const superBits = bits === 2 ? 4 : 6;
  const { scale, wmin } = p;
  if (superWeights.length < G) superWeights = new Float64Array(G);
  const sw = superWeights;
  for (let g = 0, o = 0; g < G; g++, o += gs) {
    if (im) {
      const q = loadImportance(im, o % k, gs);
      // _imatrix_handle_zero's default group size: 16 for 2 bits, 32 otherwise.
      if (plan.imatrixHasZero) handleZeroImportance(q, w, o, gs, (bits === 2 ? 16 : 32) >> 1, bits);
      for (let i = 0; i < gs; i++) W[i] = q[i];
    } else if (bits === 2) {
      for (let i = 0; i < gs; i++) W[i] = Math.abs(w[o + i]);
    } else {
      absPlusRms(w, o, gs, W);
    }
    iterativeWlsSearch(w, o, gs, W, plan.grid!);
    const s = wlsResult.scale;
    scale[g] = Math.abs(s) < 1e-30 ? 0 : s;
    wmin[g] = wlsResult.wmin;
    sw[g] = wlsResult.sumW; // torch.sum(weights): the same float32 sum the search formed
  }
  const nmax = 2 ** superBits - 1;
  if (superData.length < sgs) superData = new Float32Array(sgs);
  for (let s = 0, o = 0; o < G; s++, o += sgs) {
    let ds: number, dm: number;
    if (im) {
      const qws = sw.subarray(o, o + sgs);
      ds = makeQpQuants(nmax, scale, o, sgs, qws, L);
      for (let j = 0; j < sgs; j++) scale[o + j] = fr(ds * L[j]);
      dm = makeQpQuants(nmax, wmin, o, sgs, qws, L);
      for (let j = 0; j < sgs; j++) wmin[o + j] = fr(dm * L[j]);
    } else {
      ds = doubleQuant(scale, o, sgs, superBits, L);
      for (let j = 0; j < sgs; j++) scale[o + j] = fr(ds * L[j]);
      // The mins are flushed to 0 below 1e-30 on the no-imatrix branch only (as AutoRound has it).
      for (let j = 0; j < sgs; j++) superData[j] = Math.abs(wmin[o + j]) < 1e-30 ? 0 : wmin[o + j];
      dm = doubleQuant(superData, 0, sgs, superBits, L);
      for (let j = 0; j < sgs; j++) wmin[o + j] = fr(dm * L[j]);
    }
    p.dScale[s] = ds;
    p.dWmin[s] = dm;
  }
}

/** search_gguf_scale_min_sym + double_quant_tensor_sym_rtn (Q3_K, Q6_K) on G groups. */
function searchKSym(
  plan: SearchPlan,
  w: Float32Array,
  G: number,
  p: Extract<GgufParams, { kind: "ksym" }>,
): void {
  const { bits, group: gs, superGroup: sgs } = TYPE_QUANT[plan.type], im = plan.imatrix, k = plan.k;
  const { scale } = p;
  for (let g = 0, o = 0; g < G; g++, o += gs) {
    let s: number;
    if (im) {
      const q = loadImportance(im, o % k, gs);
      // _imatrix_handle_zero with its default group size 32 on rows of 16: never the fallback.
      if (plan.imatrixHasZero) handleZeroImportance(q, w, o, gs, 16, bits);
      s = makeQxQuants(w, o, gs, bits, q);
    } else {
      s = bits === 3 ? makeQ3Quants(w, o, gs, bits) : makeQxQuants(w, o, gs, bits);
    }
    scale[g] = Math.abs(s) < 1e-30 ? 0 : s;
  }
  const superBits = bits === 3 ? 6 : 8;
  for (let s = 0, o = 0; o < G; s++, o += sgs) {
    const d = doubleQuantSym(scale, o, sgs, superBits, L);
    p.dScale[s] = d;
    for (let j = 0; j < sgs; j++) scale[o + j] = fr(d * L[j]);
  }
}
