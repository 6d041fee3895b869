/**
 * auto-round's float weight quantizers with SignRound's tuning parameters and their straight-through
 * gradients (issue 17; spec/SCHEMES.md § 3–7, § 9.1, § 9.4), as functions over row ranges `[r0, r1)`
 * of a weight `[n, k]` so the CPU backend can run slices on its worker pool (like int_quant.ts):
 * `mx_fp` (E2M1/E2M3/E4M3 by bits, floor exponent), `mx_int` (E0M4), `nv_fp` (NVFP4 with a global
 * scale), `fp` (FP8 E4M3 per tensor / row / group) and `int` (INT8_W8A8, quant_tensor_sym, delegated
 * to int_quant.ts with fp16 scales). Plus NVFP4's default RTN, opt_rtn_fast_nvfp4 (§ 5.3).
 *
 * `maxScale` must already be clamped into [0, 1] by the caller (wrapper.py:257-259, § 9.1): it is
 * used as given here, and its gradient is the gradient w.r.t. the clamped value. min_scale has no
 * effect on MX/NV/FP8 (only `int` reads `minScale`).
 */
import { E4M3_MAX, type MxElementFormat, mxFormat } from "./float_quant.ts";
import { fakeQuantize, fakeQuantizeBackward, type QuantMath, resolveGroupSize } from "./int_quant.ts";
import type { FloatScheme } from "./quantized.ts";
import {
  fp8Elems,
  fp8ElemsBackward,
  fp8Scale,
  fp8ScaleGrad,
  mxElems,
  mxElemsBackward,
  mxScale,
  mxScaleGrad,
  nvElems,
  nvElemsBackward,
  nvScale,
  nvScaleGrad,
} from "./float_groups.ts";

const f32 = Math.fround;

/** Inputs of the weight quantizers (one layer). */
export interface FloatWeightArgs {
  /** Weight `[n, k]` row-major. */
  w: Float32Array;
  k: number;
  scheme: FloatScheme;
  /** Rounding offsets `[n, k]` (SignRound's V; 0 for RTN). */
  v: Float32Array;
  /** Per group `[n·G]` (one value for groupSize 0), already clamped into [0, 1]. */
  maxScale: Float32Array;
  /** Per group min(·, 0) and max(·, 0) of w (one value each for groupSize 0). */
  wMin: Float32Array;
  wMax: Float32Array;
  /** nv_fp: gs = 2688/amax (fused minimum, § 5.1); absent: the tensor's own, from wMin/wMax. */
  globalScale?: number;
  /** `int` only: α per group, clamped into [0, 1] (quant_tensor_sym's min_scale). */
  minScale?: Float32Array;
  /**
   * Per-group initial coefficient (mx/nv): opt_rtn_fast_nvfp4's searched scale, or SignRoundV2's
   * init_scale. The group maximum is multiplied by fl32(initScale·maxScale) (mxfp.py:277
   * `max_val *= init_scale * max_scale`, nvfp.py:71 scale_coeff = max_scale·init_scale).
   */
  initScale?: Float32Array;
}

type Kind = "mx" | "nv" | "fp8";

/** How one layer's groups are laid out and which kernel quantizes them. */
interface Plan {
  kind: Kind;
  /** Elements per group within a row (k for per-row and per-tensor). */
  g: number;
  /** Groups per row; 0 for one group per tensor. */
  perRow: number;
  fmt?: MxElementFormat;
  gs: number;
}

function plan(a: FloatWeightArgs): Plan {
  const { scheme: s, k } = a;
  const fixed = (g: number) => {
    if (s.groupSize !== g || k % g !== 0) {
      throw new RangeError(`${s.dataType} needs group size ${g} dividing k (got ${s.groupSize}, k ${k})`);
    }
  };
  if (s.dataType === "mx_fp" || s.dataType === "mx_int") {
    fixed(32);
    // SignRound v1 resolves the key `mx_int4` (§ 1.4), so mx_int gets E0M4, not the § 12.1 fallback.
    return { kind: "mx", g: 32, perRow: k / 32, fmt: mxFormat(`${s.dataType}${s.bits}`, s.bits), gs: 0 };
  }
  if (s.dataType === "nv_fp") {
    fixed(16);
    return { kind: "nv", g: 16, perRow: k / 16, gs: a.globalScale ?? ownGlobalScale(a.wMin, a.wMax) };
  }
  if (s.dataType === "fp") {
    if (s.groupSize === 0) return { kind: "fp8", g: k, perRow: 0, gs: 0 };
    const g = resolveGroupSize(s.groupSize, k);
    return { kind: "fp8", g, perRow: Math.ceil(k / g), gs: 0 };
  }
  throw new RangeError(`no float kernel for data type ${s.dataType}`);
}

/** calculate_gparam (§ 5.1): fl32(2688·fl32(1/amax)), 0 for an all-zero tensor. */
export function ownGlobalScale(wMin: Float32Array, wMax: Float32Array): number {
  let amax = 0;
  for (let i = 0; i < wMax.length; i++) amax = Math.max(amax, wMax[i], -wMin[i]);
  return amax === 0 ? 0 : f32(E4M3_MAX * 6 * f32(1 / amax));
}

/** QuantMath of INT8_W8A8's quant_tensor_sym: float16 scales, threshold 1e-5, float32 codes (§ 7). */
export function int8Math(bits: number): QuantMath {
  return { bits, sym: true, roundScale: Math.f16round, roundCompute: f32, scaleThresh: 1e-5 };
}

/** Rows `[r0, r1)` of an `int` (INT8_W8A8) layer as int_quant.ts takes them: weight, layout, tunables. */
function int8Rows(a: FloatWeightArgs, r0: number, r1: number) {
  const k = a.k, g = resolveGroupSize(a.scheme.groupSize, k), G = Math.ceil(k / g);
  const sub = (x: Float32Array | undefined, per: number) => x?.subarray(r0 * per, r1 * per);
  const tunables = {
    v: sub(a.v, k),
    maxScale: sub(a.maxScale, G),
    minScale: sub(a.minScale, G),
    wMin: sub(a.wMin, G)!,
    wMax: sub(a.wMax, G)!,
  };
  return { w: a.w.subarray(r0 * k, r1 * k), layout: { n: r1 - r0, k, g }, G, tunables };
}

/** Per-group context of any kernel: the scale and, for the backward, the gradient map to vec. */
type Ctx =
  | { kind: "mx"; c: ReturnType<typeof mxScale> }
  | { kind: "nv"; c: ReturnType<typeof nvScale> }
  | { kind: "fp8"; c: ReturnType<typeof fp8Scale> };

/** |max| of a group times its coefficient, as torch forms it: fl32(max(|wmax|, |wmin|)·β). */
function groupCtx(p: Plan, a: FloatWeightArgs, idx: number): { ctx: Ctx; m: number } {
  const m = Math.max(a.wMax[idx], -a.wMin[idx]);
  const coeff = a.initScale ? f32(a.initScale[idx] * a.maxScale[idx]) : a.maxScale[idx];
  const vec = f32(m * coeff);
  if (p.kind === "mx") return { ctx: { kind: "mx", c: mxScale(vec, p.fmt!, false) }, m };
  if (p.kind === "nv") return { ctx: { kind: "nv", c: nvScale(vec, p.gs) }, m };
  return { ctx: { kind: "fp8", c: fp8Scale(vec) }, m };
}

function stored(ctx: Ctx): number {
  return ctx.kind === "mx" ? ctx.c.e : ctx.kind === "nv" ? ctx.c.s8 : ctx.c.scale;
}

/**
 * Fake quant of rows `[r0, r1)`: out (and the element values on the format's grid) `[n, k]`; scales
 * `[n·G]`: MX the shared exponent, NV the E4M3 group scale s8, FP8 / INT8 the scale (SCHEMES.md
 * § 4.1 quant_mx, § 5.2 nv_fp4, § 6.1 quant_fp8_sym, § 7 quant_tensor_sym), each with v added after
 * the division by the scale and maxScale multiplying the group maximum.
 */
export function floatFakeQuantRows(
  a: FloatWeightArgs,
  r0: number,
  r1: number,
  out: Float32Array,
  elements?: Float32Array,
  scales?: Float32Array,
): void {
  const k = a.k;
  if (a.scheme.dataType === "int") {
    const { w, layout, G, tunables } = int8Rows(a, r0, r1);
    const codes = new Uint8Array((r1 - r0) * k), sc = new Float32Array((r1 - r0) * G);
    fakeQuantize(w, layout, int8Math(a.scheme.bits), tunables, out.subarray(r0 * k, r1 * k), {
      codes,
      scales: sc,
      zeros: new Int32Array(sc.length),
    });
    const zp = 2 ** (a.scheme.bits - 1);
    if (elements) { for (let i = 0; i < codes.length; i++) elements[r0 * k + i] = codes[i] - zp; }
    scales?.set(sc, r0 * G);
    return;
  }
  const p = plan(a);
  const whole = p.perRow === 0 ? groupCtx(p, a, 0).ctx : undefined;
  for (let r = r0; r < r1; r++) {
    for (let gi = 0; gi < Math.max(p.perRow, 1); gi++) {
      const idx = p.perRow === 0 ? 0 : r * p.perRow + gi;
      const ctx = whole ?? groupCtx(p, a, idx).ctx;
      const at = r * k + gi * p.g, len = Math.min(p.g, k - gi * p.g);
      if (ctx.kind === "mx") mxElems(ctx.c, a.w, a.v, at, len, out, elements);
      else if (ctx.kind === "nv") nvElems(ctx.c, a.w, a.v, at, len, out, elements);
      else fp8Elems(ctx.c, a.w, a.v, at, len, out, elements);
      if (scales) scales[idx] = stored(ctx);
    }
  }
}

/**
 * Straight-through backward of {@link floatFakeQuantRows} for rows `[r0, r1)` (SCHEMES.md § 9.4):
 * dv `[n, k]` written for those rows; dMaxScale written per group of those rows, except for
 * groupSize 0 (one scale per tensor), where this slice's partial sum is ADDED into dMaxScale[0]: the
 * caller zeroes it, or gives each worker slice its own zeroed 1-element array and sums them in slice
 * order (deterministic for any thread count). dMinScale (`int` only) is written like dMaxScale.
 *
 * All-zero group (or β = 0, or an NVFP4 group whose E4M3 scale underflows to 0): auto-round's graph
 * gives NaN for dMaxScale there (log2(0) / 1/0 behind a torch.where, § 9.4); we return 0 (differs).
 */
export function floatFakeQuantBackwardRows(
  a: FloatWeightArgs,
  r0: number,
  r1: number,
  dOut: Float32Array,
  dv: Float32Array,
  dMaxScale: Float32Array,
  dMinScale?: Float32Array,
): void {
  const k = a.k;
  if (a.scheme.dataType === "int") {
    const { w, layout, G, tunables } = int8Rows(a, r0, r1);
    fakeQuantizeBackward(
      w,
      layout,
      int8Math(a.scheme.bits),
      tunables,
      dOut.subarray(r0 * k, r1 * k),
      dv.subarray(r0 * k, r1 * k),
      dMinScale?.subarray(r0 * G, r1 * G) ?? new Float32Array((r1 - r0) * G),
      dMaxScale.subarray(r0 * G, r1 * G),
    );
    return;
  }
  const p = plan(a);
  const whole = p.perRow === 0 ? groupCtx(p, a, 0) : undefined;
  let acc = 0; // groupSize 0: ∂L/∂scale (∂L/∂os) summed over the slice, mapped to β once at the end
  for (let r = r0; r < r1; r++) {
    for (let gi = 0; gi < Math.max(p.perRow, 1); gi++) {
      const idx = p.perRow === 0 ? 0 : r * p.perRow + gi;
      const { ctx, m } = whole ?? groupCtx(p, a, idx);
      const at = r * k + gi * p.g, len = Math.min(p.g, k - gi * p.g);
      let d: number;
      if (ctx.kind === "mx") d = mxElemsBackward(ctx.c, a.w, a.v, at, len, dOut, dv);
      else if (ctx.kind === "nv") d = nvElemsBackward(ctx.c, a.w, a.v, at, len, dOut, dv);
      else d = fp8ElemsBackward(ctx.c, a.w, a.v, at, len, dOut, dv);
      if (whole) acc += d;
      else dMaxScale[idx] = vecGrad(ctx, d) * m * (a.initScale ? a.initScale[idx] : 1);
    }
  }
  if (whole) dMaxScale[0] += vecGrad(whole.ctx, acc) * whole.m;
}

/** ∂L/∂vec of a group from its scale gradient (vec = max·β, so ∂L/∂β = ∂L/∂vec·max). */
function vecGrad(ctx: Ctx, d: number): number {
  return ctx.kind === "mx"
    ? mxScaleGrad(ctx.c, d)
    : ctx.kind === "nv"
    ? nvScaleGrad(ctx.c, d)
    : fp8ScaleGrad(ctx.c, d);
}

/**
 * search_nvfp4_scale (nvfp.py:329-386, SCHEMES.md § 5.3) for the groups of rows `[r0, r1)` of w
 * `[n, k]`: per group of 16 the coefficient c ∈ {1} ∪ {k/100 : 50 ≤ k ≤ 151, k ≠ 100} minimizing
 * Σ qw·(qdq(c) − w)² (strict <, so earlier candidates win ties), where qdq(c) is NVFP4 with vec =
 * fl32(max|w|·c) and the layer's OWN global scale `ownGs` (auto-round passes global_scale=None
 * there, § 12.6). `importance` `[n, k]` is qw per element (e.g. int_quant's importanceForWeight of the
 * imatrix with g = 16, which is _imatrix_handle_zero); absent = 1. Returns `[(r1 − r0)·k/16]`.
 * The loss is summed in float64 over float32 squared errors (torch sums in float32, so a candidate
 * within ~1e-7 relative of the best may be picked differently).
 */
export function searchNvfp4ScaleRows(
  w: Float32Array,
  k: number,
  r0: number,
  r1: number,
  ownGs: number,
  importance?: Float32Array,
): Float32Array {
  if (k % 16 !== 0) throw new RangeError(`k ${k} is not a multiple of 16`);
  const perRow = k / 16, best = new Float32Array((r1 - r0) * perRow), q = new Float32Array(w.length);
  for (let r = r0; r < r1; r++) {
    for (let gi = 0; gi < perRow; gi++) {
      const at = r * k + gi * 16;
      let m = 0;
      for (let i = at; i < at + 16; i++) m = Math.max(m, Math.abs(w[i]));
      const loss = (c: number) => {
        nvElems(nvScale(f32(m * c), ownGs), w, undefined, at, 16, q);
        let l = 0;
        for (let i = at; i < at + 16; i++) {
          l += f32(f32(f32(q[i] - w[i]) ** 2) * (importance ? importance[i] : 1));
        }
        return l;
      };
      let bestC = 1, bestLoss = loss(1);
      for (let s = 50; s < 152; s++) {
        if (s === 100) continue;
        const c = f32(s / 100), l = loss(c);
        if (l < bestLoss) [bestLoss, bestC] = [l, c];
      }
      best[(r - r0) * perRow + gi] = bestC;
    }
  }
  return best;
}

/**
 * opt_rtn_fast_nvfp4 (nvfp.py:389-413, § 5.3), the RTN NVFP4 uses by default: the searched
 * coefficients (with the layer's own gs `ownGs`), then NVFP4 with vec = fl32(max|w|·c) and the
 * fused global scale `a.globalScale`, v = 0 (a.v and a.maxScale are not read: RTN's max_scale is 1).
 * Writes rows `[r0, r1)` of out / elements / scales (E4M3 s8) and returns the coefficients.
 */
export function nvfp4OptRtnRows(
  a: FloatWeightArgs,
  r0: number,
  r1: number,
  ownGs: number,
  out: Float32Array,
  elements?: Float32Array,
  scales?: Float32Array,
  importance?: Float32Array,
): Float32Array {
  const k = a.k, perRow = k / 16, gs = a.globalScale ?? ownGs;
  const coeff = searchNvfp4ScaleRows(a.w, k, r0, r1, ownGs, importance);
  for (let r = r0; r < r1; r++) {
    for (let gi = 0; gi < perRow; gi++) {
      const at = r * k + gi * 16, idx = r * perRow + gi;
      let m = 0;
      for (let i = at; i < at + 16; i++) m = Math.max(m, Math.abs(a.w[i]));
      const c = nvScale(f32(m * coeff[(r - r0) * perRow + gi]), gs);
      nvElems(c, a.w, undefined, at, 16, out, elements);
      if (scales) scales[idx] = c.s8;
    }
  }
  return coeff;
}

/**
 * search_mx_scale (mxfp.py:102-169, SCHEMES.md § 4.3): per group of 32 of rows `[r0, r1)` the
 * coefficient c ∈ (1, 0.5, 2) of the group maximum minimizing Σ qw·(qdq(c) − w)², strict <, in that
 * order (ties keep the earlier); qdq is quant_mx with v = 0. `importance` `[n, k]` is qw per element
 * (absent = 1). Returns `[(r1 − r0)·k/32]`. Summed in float64 over float32 terms (torch sums in
 * float32: a candidate within ~1e-7 relative of the best may be picked differently).
 */
export function searchMxScaleRows(
  w: Float32Array,
  k: number,
  r0: number,
  r1: number,
  fmt: MxElementFormat,
  importance?: Float32Array,
): Float32Array {
  if (k % 32 !== 0) throw new RangeError(`k ${k} is not a multiple of 32`);
  const perRow = k / 32, best = new Float32Array((r1 - r0) * perRow), q = new Float32Array(w.length);
  for (let r = r0; r < r1; r++) {
    for (let gi = 0; gi < perRow; gi++) {
      const at = r * k + gi * 32;
      let m = 0;
      for (let i = at; i < at + 32; i++) m = Math.max(m, Math.abs(w[i]));
      const loss = (c: number) => {
        mxElems(mxScale(f32(m * c), fmt, false), w, undefined, at, 32, q);
        let l = 0;
        for (let i = at; i < at + 32; i++) {
          l += f32(f32(f32(q[i] - w[i]) ** 2) * (importance ? importance[i] : 1));
        }
        return l;
      };
      let bestC = 1, bestLoss = loss(1);
      for (const c of [0.5, 2]) {
        const l = loss(c);
        if (l < bestLoss) [bestLoss, bestC] = [l, c];
      }
      best[(r - r0) * perRow + gi] = bestC;
    }
  }
  return best;
}
