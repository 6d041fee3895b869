/**
 * The CPU backend's kernels as pool tasks (src/parallel/pool.ts). Each task handles a range of
 * independent units — rows, elements, sequences, attention units, weight rows — by calling the plain
 * kernel of kernels.ts, attention.ts or qmath/int_quant.ts on that slice, so a unit's arithmetic is
 * the same however the range is cut: any thread count gives the single-threaded bits.
 */
import { defineTask } from "../../parallel/pool.ts";
import {
  fakeQuantize,
  fakeQuantizeBackward,
  groupMinMax,
  groupsPerRow,
  importanceForWeight,
  type QuantMath,
  type QuantTunables,
  searchScalesSym,
} from "../../qmath/int_quant.ts";
import { roundBf16 } from "../../tensor/dtype.ts";
import { Cblas } from "../../../ffi/blas/cblas.ts";
import * as at from "./attention.ts";
import { attentionBackwardTiled, attentionTiled } from "./attention_blas.ts";
import * as k from "./kernels.ts";

type FArr = k.FArr;
const url = import.meta.url;

/** Elements per range worth a hand-off to another thread (~50 µs of dispatch). */
export const MIN_RANGE_ELEMS = 1 << 15;

/** Units per range so that a range holds at least MIN_RANGE_ELEMS elements of `perUnit` each. */
export function grain(perUnit: number): number {
  return Math.ceil(MIN_RANGE_ELEMS / Math.max(1, perUnit));
}

/**
 * The CBLAS library at `path`, opened once per thread that asks (kept open for the process: a pool
 * task cannot carry the main thread's handle).
 */
const libraries = new Map<string, Cblas>();
function blasAt(path: string): Cblas {
  let lib = libraries.get(path);
  if (!lib) libraries.set(path, lib = Cblas.open(path));
  return lib;
}

/** Rows `[s, e)` of a row-major array with `cols` columns. */
function rows<X extends FArr | Int32Array | Uint8Array>(x: X, cols: number, s: number, e: number): X {
  return x.subarray(s * cols, e * cols) as X;
}

// ---- dense math -------------------------------------------------------------------------------

/** c = alpha·x·yTᵀ + beta·c over rows of x and c (x `[M, K]`, yT `[N, K]`). */
export const matmulRowsTask = defineTask(
  url,
  "matmulRows",
  (a: { x: FArr; yT: FArr; c: FArr; N: number; K: number; alpha: number; beta: number }, s, e) =>
    k.matmulABt(rows(a.x, a.K, s, e), a.yT, rows(a.c, a.N, s, e), e - s, a.N, a.K, a.alpha, a.beta),
);

/** out `[cols, rows]` = xᵀ for output rows (input columns) `[s, e)` of x `[rows, cols]`. */
export const transposeTask = defineTask(
  url,
  "transpose",
  (a: { x: FArr; out: FArr; rows: number; cols: number }, s, e) => {
    const { x, out, rows: R, cols: C } = a;
    for (let c = s; c < e; c++) for (let r = 0; r < R; r++) out[c * R + r] = x[r * C + c];
  },
);

export const rmsNormTask = defineTask(
  url,
  "rmsNorm",
  (a: { x: FArr; w: FArr; y: FArr; n: number; eps: number }, s, e) =>
    k.rmsNorm(rows(a.x, a.n, s, e), a.w, rows(a.y, a.n, s, e), e - s, a.n, a.eps),
);

export const rmsNormBackwardTask = defineTask(
  url,
  "rmsNormBackward",
  (a: { x: FArr; w: FArr; dy: FArr; dx: FArr; n: number; eps: number }, s, e) =>
    k.rmsNormBackward(
      rows(a.x, a.n, s, e),
      a.w,
      rows(a.dy, a.n, s, e),
      rows(a.dx, a.n, s, e),
      e - s,
      a.n,
      a.eps,
    ),
);

/** RoPE over sequences `[s, e)` of the batch. */
export const ropeTask = defineTask(
  url,
  "rope",
  (
    a: {
      x: FArr;
      cos: FArr;
      sin: FArr;
      seqLen: number;
      nHeads: number;
      headDim: number;
      posOffset: number;
      inverse: boolean;
      rotaryDim?: number;
    },
    s,
    e,
  ) =>
    k.rope(
      rows(a.x, a.seqLen * a.nHeads * a.headDim, s, e),
      a.cos,
      a.sin,
      e - s,
      a.seqLen,
      a.nHeads,
      a.headDim,
      a.posOffset,
      a.inverse,
      a.rotaryDim,
    ),
);

/** Attention units `[s, e)`; with `blas` (a library path) the tiled kernel of attention_blas.ts. */
export const attentionTask = defineTask(
  url,
  "attention",
  (a: { q: FArr; k: FArr; v: FArr; out: FArr; lse: FArr; g: at.AttnGeo; blas?: string }, s, e) =>
    a.blas
      ? attentionTiled(blasAt(a.blas), a.q, a.k, a.v, a.out, a.lse, a.g, s, e)
      : at.attention(a.q, a.k, a.v, a.out, a.lse, a.g, s, e),
);

export const attentionBackwardTask = defineTask(
  url,
  "attentionBackward",
  (
    a: {
      q: FArr;
      k: FArr;
      v: FArr;
      out: FArr;
      lse: FArr;
      dOut: FArr;
      dq: FArr;
      dk: FArr;
      dv: FArr;
      g: at.AttnGeo;
      blas?: string;
    },
    s,
    e,
  ) =>
    a.blas
      ? attentionBackwardTiled(
        blasAt(a.blas),
        a.q,
        a.k,
        a.v,
        a.out,
        a.lse,
        a.dOut,
        a.dq,
        a.dk,
        a.dv,
        a.g,
        s,
        e,
      )
      : at.attentionBackward(a.q, a.k, a.v, a.out, a.lse, a.dOut, a.dq, a.dk, a.dv, a.g, s, e),
);

// ---- elementwise and per-row -------------------------------------------------------------------

export const siluMulTask = defineTask(
  url,
  "siluMul",
  (a: { g: FArr; u: FArr; h: FArr }, s, e) =>
    k.siluMul(a.g.subarray(s, e), a.u.subarray(s, e), a.h.subarray(s, e)),
);

export const siluMulBackwardTask = defineTask(
  url,
  "siluMulBackward",
  (a: { g: FArr; u: FArr; dh: FArr; dg: FArr; du: FArr }, s, e) =>
    k.siluMulBackward(
      a.g.subarray(s, e),
      a.u.subarray(s, e),
      a.dh.subarray(s, e),
      a.dg.subarray(s, e),
      a.du.subarray(s, e),
    ),
);

export const addTask = defineTask(
  url,
  "add",
  (a: { x: FArr; y: FArr; z: FArr }, s, e) =>
    k.add(a.x.subarray(s, e), a.y.subarray(s, e), a.z.subarray(s, e)),
);

export const axpyTask = defineTask(
  url,
  "axpy",
  (a: { acc: FArr; x: FArr; alpha: number }, s, e) =>
    k.axpy(a.acc.subarray(s, e), a.x.subarray(s, e), a.alpha),
);

export const signSgdTask = defineTask(
  url,
  "signSgd",
  (a: { p: FArr; g: FArr; lr: number; lo: number; hi: number }, s, e) =>
    k.signSgd(a.p.subarray(s, e), a.g.subarray(s, e), a.lr, a.lo, a.hi),
);

export const addRowVectorTask = defineTask(
  url,
  "addRowVector",
  (a: { x: FArr; bias: FArr }, s, e) => k.addRowVector(rows(a.x, a.bias.length, s, e), a.bias),
);

/** Columns `[s, e)` of acc += Σ_r x[r, :]². */
export const columnSquaresTask = defineTask(
  url,
  "columnSquares",
  (a: { acc: FArr; x: FArr }, s, e) => k.columnSquares(a.acc, a.x, s, e),
);

export const crossEntropyTask = defineTask(
  url,
  "crossEntropy",
  (a: { logits: FArr; targets: Int32Array; out: FArr; V: number }, s, e) =>
    k.crossEntropyRows(rows(a.logits, a.V, s, e), a.targets.subarray(s, e), a.out.subarray(s, e), a.V),
);

export const crossEntropyBackwardTask = defineTask(
  url,
  "crossEntropyBackward",
  (a: { logits: FArr; targets: Int32Array; d: FArr; V: number; scale: number }, s, e) =>
    k.crossEntropyBackwardRows(
      rows(a.logits, a.V, s, e),
      a.targets.subarray(s, e),
      rows(a.d, a.V, s, e),
      a.V,
      a.scale,
    ),
);

export const argmaxTask = defineTask(
  url,
  "argmax",
  (a: { x: FArr; out: Int32Array; V: number }, s, e) =>
    k.argmaxRows(rows(a.x, a.V, s, e), a.out.subarray(s, e), a.V),
);

export const mseTask = defineTask(
  url,
  "mse",
  (
    a: {
      y: FArr;
      t: FArr;
      mask?: FArr;
      dy: FArr;
      rowSums: Float64Array;
      cols: number;
      scale: number;
      denom: number;
    },
    s,
    e,
  ) =>
    k.mseRows(
      rows(a.y, a.cols, s, e),
      rows(a.t, a.cols, s, e),
      a.mask?.subarray(s, e),
      rows(a.dy, a.cols, s, e),
      a.rowSums.subarray(s, e),
      a.cols,
      a.scale,
      a.denom,
    ),
);

// ---- quantization (units: weight rows) ---------------------------------------------------------

/** SignRoundV2's bound on α and β (sign_roundv2/quantizer.py:102: minmax_scale_bound = (0, 2)). */
export const SIGNROUND_V2_SCALE_BOUND = 2;

/** A weight `[n, k]` with groups of g columns and its quantizer, in cloneable form. */
export interface QuantArgs {
  w: FArr;
  k: number;
  g: number;
  bits: number;
  sym: boolean;
  scaleDType: "f16" | "bf16" | "f32";
  precision: "f32" | "f64";
  v?: FArr;
  minScale?: FArr;
  maxScale?: FArr;
  wMin: FArr;
  wMax: FArr;
  initScale?: FArr;
  /** SignRoundV2's tuned init scale (QuantMath.tunedInitScale; IntQuantParams.signRoundV2). */
  signRoundV2?: boolean;
}

/** The QuantMath of a scale dtype: f32 scales are rounded to f32 only on the f32 backend. */
export function quantMath(
  a: Pick<QuantArgs, "bits" | "sym" | "scaleDType" | "precision" | "signRoundV2">,
): QuantMath {
  const roundScale = a.scaleDType === "f16"
    ? Math.f16round
    : a.scaleDType === "bf16"
    ? roundBf16
    : a.precision === "f32"
    ? Math.fround
    : (x: number) => x;
  const scaleThresh = a.scaleDType === "f32" ? 1e-8 : 1e-5;
  const tunedInitScale = a.signRoundV2 ? { maxScaleBound: SIGNROUND_V2_SCALE_BOUND } : undefined;
  return { bits: a.bits, sym: a.sym, roundScale, scaleThresh, tunedInitScale };
}

/** Layout, math and tunables of weight rows `[s, e)`. */
function slice(a: QuantArgs, s: number, e: number) {
  const G = groupsPerRow({ n: 1, k: a.k, g: a.g });
  const grp = (x: FArr | undefined) => x?.subarray(s * G, e * G);
  const tun: QuantTunables = {
    v: a.v?.subarray(s * a.k, e * a.k),
    minScale: grp(a.minScale),
    maxScale: grp(a.maxScale),
    wMin: grp(a.wMin)!,
    wMax: grp(a.wMax)!,
    initScale: grp(a.initScale),
  };
  return { layout: { n: e - s, k: a.k, g: a.g }, math: quantMath(a), tun, G, w: rows(a.w, a.k, s, e) };
}

/** Ŵ rows; with codes/scales/zeros also the export integers. */
export const fakeQuantTask = defineTask(
  url,
  "fakeQuant",
  (a: QuantArgs & { out: FArr; codes?: Uint8Array; scales?: Float32Array; zeros?: Int32Array }, s, e) => {
    const { layout, math, tun, G, w } = slice(a, s, e);
    const exportTo = a.codes
      ? { codes: rows(a.codes, a.k, s, e), scales: rows(a.scales!, G, s, e), zeros: rows(a.zeros!, G, s, e) }
      : undefined;
    fakeQuantize(w, layout, math, tun, rows(a.out, a.k, s, e), exportTo);
  },
);

export const fakeQuantBackwardTask = defineTask(
  url,
  "fakeQuantBackward",
  (a: QuantArgs & { dWq: FArr; dv: FArr; dMin: FArr; dMax: FArr }, s, e) => {
    const { layout, math, tun, G, w } = slice(a, s, e);
    fakeQuantizeBackward(
      w,
      layout,
      math,
      tun,
      rows(a.dWq, a.k, s, e),
      rows(a.dv, a.k, s, e),
      rows(a.dMin, G, s, e),
      rows(a.dMax, G, s, e),
    );
  },
);

export const groupMinMaxTask = defineTask(
  url,
  "groupMinMax",
  (a: { w: FArr; k: number; g: number; wMin: FArr; wMax: FArr }, s, e) => {
    const G = groupsPerRow({ n: 1, k: a.k, g: a.g });
    const r = groupMinMax(rows(a.w, a.k, s, e), { n: e - s, k: a.k, g: a.g });
    a.wMin.set(r.wMin, s * G);
    a.wMax.set(r.wMax, s * G);
  },
);

/** Optimized-RTN scales of weight rows (searchScalesSym with f32 candidates). */
export const optRtnScalesTask = defineTask(
  url,
  "optRtnScales",
  (a: { w: FArr; k: number; g: number; bits: number; imatrix?: FArr; scales: FArr }, s, e) => {
    const layout = { n: e - s, k: a.k, g: a.g };
    const w = rows(a.w, a.k, s, e);
    const imp = a.imatrix ? importanceForWeight(a.imatrix, w, layout, a.bits) : undefined;
    a.scales.set(searchScalesSym(w, layout, a.bits, imp, 1e-5, Math.fround), s * groupsPerRow(layout));
  },
);
