/**
 * Quantize one tensor to a GGML type the way AutoRound's GGUF path does, in three steps that
 * SignRound will later reuse with its own tuned values:
 *
 * 1. {@link searchParams}: per-group scales (and mins), double-quantized for the K-quants — the RTN
 *    quantizers of auto_round/data_type (`opt_rtn_int_sym`, `rtn_int_sym`,
 *    `opt_rtn_int_asym_float_zp`, `rtn_int_asym_dq`, `rtn_int_sym_dq`), with the importance matrix
 *    when given;
 * 2. {@link fakeQuant}: the quantize-dequantize result W̃ those parameters give (with an optional
 *    rounding offset V, AutoRound's `v`);
 * 3. {@link packParams} (pack.ts): the ggml blocks, derived from W̃ and the parameters as
 *    export_to_gguf/packing.py does when a layer carries its scales ("scale is not None" branches):
 *    codes are re-derived from W̃, d/dmin are stored as fp16.
 *
 * Tensors that AutoRound quantizes only at export (token_embd) use {@link quantizeAtExport}: the
 * packing.py branches without stored scales — llama.cpp's reference quantizers for the 32-wide types,
 * AutoRound's K-quant searches for the others.
 */
import { type GgmlBlocks, subBlocks } from "../../src/qmath/gguf/blocks.ts";
import { type GgmlTypeName, QK_K } from "../../src/qmath/gguf/types.ts";
import { roundHalfEven as rnd } from "../../src/tensor/dtype.ts";
import {
  absPlusRms,
  doubleQuant,
  doubleQuantSym,
  handleZeroImportance,
  iterativeWlsSearch,
  makeQpQuants,
  type WlsParams,
} from "./search.ts";
import { makeQ3Quants, makeQxQuants, searchScaleSym } from "./search_sym.ts";
import { packParams, packWithoutScales } from "./pack.ts";
import { fr, recip, scratch, torchSum } from "./torch_f32.ts";

export { packParams };

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

/** Iterate the groups of a `[n, k]` tensor: calls `fn(g, start)` with the flat start of each group. */
function forGroups(n: number, k: number, gs: number, fn: (g: number, start: number) => void): void {
  const perRow = k / gs;
  for (let r = 0; r < n; r++) for (let j = 0; j < perRow; j++) fn(r * perRow + j, r * k + j * gs);
}

/** The importance weights of the group starting at column `col`, or undefined. */
function groupImportance(
  imatrix: SearchOptions["imatrix"],
  col: number,
  gs: number,
): Float64Array | undefined {
  return imatrix ? Float64Array.from(imatrix.subarray(col, col + gs)) : undefined;
}

/**
 * Step 1: search the parameters of `type` for weight `w` `[n, k]` (k a multiple of the block size).
 *
 * @example
 * ```ts
 * const p = searchParams("Q4_K", w, n, k, { optRtn: true, imatrix });
 * const wq = fakeQuant("Q4_K", w, n, k, p);
 * const blocks = packParams("Q4_K", wq, n, k, p);
 * ```
 */
export function searchParams(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  opts: SearchOptions,
): GgufParams {
  const { bits, group: gs } = TYPE_QUANT[type];
  const G = (n * k) / gs;
  const x = new Float64Array(gs);
  const load = (start: number) => {
    for (let i = 0; i < gs; i++) x[i] = w[start + i];
    return x;
  };
  let imatrix = opts.optRtn ? opts.imatrix : undefined;
  if (imatrix && !imatrix.some((v) => v !== 0)) imatrix = undefined; // torch.sum(imatrix) == 0
  const imatrixHasZero = imatrix?.some((v) => v === 0) ?? false;
  switch (type) {
    case "Q4_0":
    case "Q5_0":
    case "Q8_0": {
      // "int" sym, group 32 (schemes.py GGUF_SCHEME_FACTS): opt_rtn_int_sym (search_scales with the
      // imatrix) or, without opt-RTN, rtn_int_sym (±absmax/2^(b−1)); scale dtype float32 for GGUF,
      // magnitudes clamped to 1e-8 (wrapper.py q_scale_thresh for float32 scales).
      const scale = new Float32Array(G);
      const nmax = 2 ** (bits - 1);
      forGroups(n, k, gs, (g, start) => {
        const xs = load(start);
        let s: number;
        if (opts.optRtn) {
          let qw = groupImportance(imatrix, start % k, gs);
          if (qw && imatrixHasZero) qw = handleZeroImportance(qw, xs, gs, gs >> 1, bits);
          s = searchScaleSym(xs, bits, qw);
        } else {
          const [lo, hi] = rangeWithZero(xs);
          const a = -lo, b = hi;
          s = fr(((b < a ? 1 : -1) * Math.max(a, b)) / nmax);
        }
        scale[g] = s < 0 ? Math.min(s, -1e-8) : Math.max(s, 1e-8);
      });
      return { kind: "sym", scale };
    }
    case "Q4_1":
    case "Q5_1": {
      // int_asym_float_zp: scale = (max − min)/maxq ≥ 1e-8, zp = −min/scale (not rounded).
      const maxq = 2 ** bits - 1;
      const scale = new Float32Array(G), zp = new Float32Array(G);
      forGroups(n, k, gs, (g, start) => {
        const xs = load(start);
        const [lo, hi] = rangeWithZero(xs);
        const s = Math.max(fr(fr(hi - lo) / maxq), 1e-8);
        scale[g] = s;
        zp[g] = fr(-lo / s);
      });
      return { kind: "asym", scale, zp };
    }
    case "Q2_K":
    case "Q4_K":
    case "Q5_K":
      return searchKAsym(type, w, n, k, imatrix, imatrixHasZero);
    case "Q3_K":
    case "Q6_K":
      return searchKSym(type, w, n, k, imatrix, imatrixHasZero);
  }
  throw new Error("unreachable");
}

/** [min(0, min x), max(0, max x)]: the group range with zero included, as AutoRound's RTN takes it. */
function rangeWithZero(xs: Float64Array): [number, number] {
  let lo = 0, hi = 0;
  for (const v of xs) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return [lo, hi];
}

/** search_gguf_scale_min_asym (Q2_K, Q4_K, Q5_K). */
function searchKAsym(
  type: "Q2_K" | "Q4_K" | "Q5_K",
  w: Float32Array,
  n: number,
  k: number,
  imatrix: SearchOptions["imatrix"],
  imatrixHasZero: boolean,
): GgufParams {
  const { bits, group: gs, superGroup: sgs } = TYPE_QUANT[type];
  const G = (n * k) / gs, S = G / sgs;
  const superBits = bits === 2 ? 4 : 6;
  const scale = new Float32Array(G), wmin = new Float32Array(G), sw = new Float64Array(G);
  const params: WlsParams = imatrix
    ? { rmin: -0.9, rdelta: 0.05, nstep: 36, useMad: false }
    : bits === 2
    ? { rmin: -0.5, rdelta: 0.1, nstep: 15, useMad: true }
    : bits === 4
    ? { rmin: -1, rdelta: 0.1, nstep: 20, useMad: false }
    : { rmin: -0.5, rdelta: 0.1, nstep: 15, useMad: false };
  forGroups(n, k, gs, (g, start) => {
    const xs = Float64Array.from(w.subarray(start, start + gs));
    let qw: Float64Array;
    if (imatrix) {
      qw = groupImportance(imatrix, start % k, gs)!;
      // _imatrix_handle_zero's default group size: 16 for 2 bits, 32 otherwise.
      if (imatrixHasZero) qw = handleZeroImportance(qw, xs, gs, (bits === 2 ? 16 : 32) >> 1, bits);
    } else {
      qw = bits === 2 ? xs.map(Math.abs) : absPlusRms(xs);
    }
    const [s, m] = iterativeWlsSearch(xs, qw, bits, params);
    scale[g] = Math.abs(s) < 1e-30 ? 0 : s;
    wmin[g] = m;
    const t = scratch(0, gs);
    t.set(qw);
    sw[g] = torchSum(t, gs);
  });
  const dScale = new Float32Array(S), dWmin = new Float32Array(S);
  for (let s = 0; s < S; s++) {
    const sc = Float64Array.from(scale.subarray(s * sgs, (s + 1) * sgs));
    // The mins are flushed to 0 below 1e-30 on the no-imatrix branch only (as AutoRound has it).
    const mn = Float64Array.from(
      wmin.subarray(s * sgs, (s + 1) * sgs),
      (v) => (!imatrix && Math.abs(v) < 1e-30 ? 0 : v),
    );
    let ls: Int16Array, lm: Int16Array;
    if (imatrix) {
      const qw = sw.subarray(s * sgs, (s + 1) * sgs);
      [dScale[s], ls] = makeQpQuants(2 ** superBits - 1, sc, qw);
      [dWmin[s], lm] = makeQpQuants(2 ** superBits - 1, mn, qw);
    } else {
      [dScale[s], ls] = doubleQuant(sc, superBits);
      [dWmin[s], lm] = doubleQuant(mn, superBits);
    }
    for (let j = 0; j < sgs; j++) {
      scale[s * sgs + j] = fr(dScale[s] * ls[j]);
      wmin[s * sgs + j] = fr(dWmin[s] * lm[j]);
    }
  }
  return { kind: "kasym", scale, wmin, dScale, dWmin };
}

/** search_gguf_scale_min_sym + double_quant_tensor_sym_rtn (Q3_K, Q6_K). */
function searchKSym(
  type: "Q3_K" | "Q6_K",
  w: Float32Array,
  n: number,
  k: number,
  imatrix: SearchOptions["imatrix"],
  imatrixHasZero: boolean,
): GgufParams {
  const { bits, group: gs, superGroup: sgs } = TYPE_QUANT[type];
  const G = (n * k) / gs, S = G / sgs;
  const scale = new Float32Array(G);
  forGroups(n, k, gs, (g, start) => {
    const xs = Float64Array.from(w.subarray(start, start + gs));
    let s: number;
    if (imatrix) {
      let qw = groupImportance(imatrix, start % k, gs)!;
      // _imatrix_handle_zero with its default group size 32 on rows of 16: never the fallback.
      if (imatrixHasZero) qw = handleZeroImportance(qw, xs, gs, 16, bits);
      s = makeQxQuants(xs, bits, qw);
    } else {
      s = bits === 3 ? makeQ3Quants(xs, bits) : makeQxQuants(xs, bits);
    }
    scale[g] = Math.abs(s) < 1e-30 ? 0 : s;
  });
  const superBits = bits === 3 ? 6 : 8;
  const dScale = new Float32Array(S);
  for (let s = 0; s < S; s++) {
    const [d, L] = doubleQuantSym(Float64Array.from(scale.subarray(s * sgs, (s + 1) * sgs)), superBits);
    dScale[s] = d;
    for (let j = 0; j < sgs; j++) scale[s * sgs + j] = fr(d * L[j]);
  }
  return { kind: "ksym", scale, dScale };
}

/**
 * Step 2: W̃ of `w` under `p`, with an optional rounding offset `v` `[n·k]` (SignRound's V).
 * AutoRound's `qdq_result` of the quantizer that produced `p`.
 */
export function fakeQuant(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  p: GgufParams,
  v?: Float32Array,
): Float32Array {
  const { bits, group: gs } = TYPE_QUANT[type];
  const out = new Float32Array(n * k);
  const off = (i: number) => (v ? v[i] : 0);
  forGroups(n, k, gs, (g, start) => {
    for (let i = start; i < start + gs; i++) {
      switch (p.kind) {
        case "sym": {
          // int.py: round(w / scale + v)
          const nmax = 2 ** (bits - 1), s = p.scale[g];
          const q = Math.min(Math.max(rnd(fr(fr(w[i] / s) + off(i))), -nmax), nmax - 1);
          out[i] = fr(q * s);
          break;
        }
        case "ksym": {
          // gguf.py quant_tensor_gguf_sym_dq: round(w · get_reciprocal(scale) + v)
          const nmax = 2 ** (bits - 1), s = p.scale[g];
          const q = Math.min(Math.max(rnd(fr(fr(w[i] * recip(s)) + off(i))), -nmax), nmax - 1);
          out[i] = fr(q * s);
          break;
        }
        case "asym": {
          // quant_tensor_asym_float_zp_rtn: ((round(w · get_reciprocal(scale)) + zp).clamp − zp) · scale
          const maxq = 2 ** bits - 1, s = p.scale[g], z = p.zp[g];
          const q = Math.min(Math.max(fr(rnd(fr(fr(w[i] * recip(s)) + off(i))) + z), 0), maxq);
          out[i] = fr(fr(q - z) * s);
          break;
        }
        case "kasym": {
          const maxq = 2 ** bits - 1, s = p.scale[g], m = p.wmin[g];
          const q = Math.min(Math.max(rnd(fr(fr(fr(w[i] + m) * recip(s)) + off(i))), 0), maxq);
          out[i] = fr(fr(q * s) - m);
          break;
        }
      }
    }
  });
  return out;
}

/**
 * A tensor quantized the way AutoRound quantizes block Linears (and an untied lm_head) for GGUF:
 * search, W̃, pack.
 */
export function quantizeTensor(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  opts: SearchOptions,
): GgmlBlocks {
  const p = searchParams(type, w, n, k, opts);
  return packParams(type, fakeQuant(type, w, n, k, p), n, k, p);
}

/**
 * A tensor AutoRound quantizes only at export (token_embd): packing.py without stored scales.
 * Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 use llama.cpp's `quantize_row_*_ref` rules (ggml-quants.c) as packing.py
 * ports them ({@link packWithoutScales}); the K-quants run AutoRound's searches without an
 * importance matrix.
 */
export function quantizeAtExport(type: QuantGgmlType, w: Float32Array, n: number, k: number): GgmlBlocks {
  if (type.endsWith("_K")) return quantizeTensor(type, w, n, k, { optRtn: false });
  return packWithoutScales(type, w, n, k);
}

/** Sub-block count per super-block of a type (re-exported for tests). */
export { QK_K, subBlocks };
