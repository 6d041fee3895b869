/**
 * auto-round's activation quantizers (issue 17; spec/SCHEMES.md § 8) on x `[t, k]` (rows = tokens),
 * forward and straight-through backward over row ranges `[r0, r1)`: MX dynamic per 32 (`mx_fp`
 * floor, `mx_fp_rceil`, `mx_int`), NVFP4 `nv_fp` (nv_fp4_with_static_gs: gs from the calibrated
 * actMax, E4M3 scales per 16 from the input), FP8 (`fp`: static per tensor from actMax·actMaxScale,
 * or dynamic per row / group) and INT8 (`int`: dynamic per token, quant_tensor_sym with fp16 scales).
 *
 * Gradients flow into x directly and through each dynamic group's max: torch.max(dim) sends the
 * gradient to the single index it returns, the FIRST maximal one (we do the same; SCHEMES.md § 13).
 * actMaxScale must be clamped into [0, 1] by the caller (wrapper.py:306-307); its gradient is
 * returned only where it is tunable (static FP8, § 8.3), 0 otherwise. All-zero MX/NV groups: torch
 * would give NaN gradients through the max (§ 9.4); we route 0 there.
 */
import { mxFormat } from "./float_quant.ts";
import { groupScale, resolveGroupSize } from "./int_quant.ts";
import type { ActQuant } from "./quantized.ts";
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
import { int8Math } from "./float_tune.ts";

const f32 = Math.fround;

/** Static activation parameters of a layer. */
export interface ActArgs {
  act: ActQuant;
  /** Calibrated max|x| (§ 8.2): FP8 static scale and NVFP4 global scale. */
  actMax?: number;
  /** Tunable coefficient of actMax (FP8 static), clamped into [0, 1] by the caller; default 1. */
  actMaxScale?: number;
  /**
   * A checkpoint's stored parameter used as is (inference; no gradient): static FP8 `input_scale`
   * instead of max(actMax·actMaxScale/448, 1/229376), NVFP4 `input_global_scale` instead of
   * 2688/actMax.
   */
  scale?: number;
  globalScale?: number;
}

/** Group length along k (the whole row for −1, and for 0 = one static scale per tensor). */
function groupLen(a: ActArgs, k: number): number {
  const { dataType: dt, groupSize: g } = a.act;
  if ((dt === "mx_fp" || dt === "mx_fp_rceil" || dt === "mx_int") && g !== 32) {
    throw new RangeError("MX acts: g 32");
  }
  if (dt === "nv_fp" && g !== 16) throw new RangeError("NVFP4 acts: group 16");
  if (g === 0 && (dt !== "fp" || (a.actMax === undefined && a.scale === undefined))) {
    throw new RangeError("per-tensor acts: static FP8 only");
  }
  return g === 0 ? k : resolveGroupSize(g, k);
}

/** NVFP4 act global scale fl32(2688·get_reciprocal(actMax)) (nvfp.py:119). */
function nvGs(a: ActArgs): number {
  if (a.globalScale !== undefined) return a.globalScale;
  if (a.actMax === undefined) throw new RangeError("nv_fp activations need the calibrated actMax");
  return a.actMax === 0 ? 0 : f32(2688 * f32(1 / a.actMax));
}

/** First index of max|x| in the group (torch.max(dim)), and the value. */
function absArgMax(x: Float32Array, at: number, len: number): [number, number] {
  let j = at, m = Math.abs(x[at]);
  for (let i = at + 1; i < at + len; i++) if (Math.abs(x[i]) > m) [j, m] = [i, Math.abs(x[i])];
  return [j, m];
}

type Grp = { kind: "mx"; c: ReturnType<typeof mxScale> } | { kind: "nv"; c: ReturnType<typeof nvScale> } | {
  kind: "fp8";
  c: ReturnType<typeof fp8Scale>;
};

/** The scale context of one group: from its own max, or (static FP8) from actMax·actMaxScale. */
function ctxOf(a: ActArgs, m: number): Grp {
  const dt = a.act.dataType, beta = a.actMaxScale ?? 1;
  if (dt === "nv_fp") return { kind: "nv", c: nvScale(m, nvGs(a)) }; // scale_coeff 1.0 (§ 5.2)
  const vec = f32(m * beta);
  if (dt === "fp" && a.scale !== undefined && !a.act.dynamic) {
    return { kind: "fp8", c: { scale: a.scale, vec: f32(a.scale * 448), pass: true } };
  }
  if (dt === "fp") return { kind: "fp8", c: fp8Scale(vec) };
  const fmt = mxFormat(`${dt === "mx_int" ? "mx_int" : "mx_fp"}${a.act.bits}`, a.act.bits);
  return { kind: "mx", c: mxScale(vec, fmt, dt === "mx_fp_rceil") };
}

/** Activation fake quant of rows `[r0, r1)` of x `[t, k]` into out (§ 8.1: v = 0). */
export function actFakeQuantRows(
  x: Float32Array,
  k: number,
  a: ActArgs,
  r0: number,
  r1: number,
  out: Float32Array,
): void {
  const g = groupLen(a, k), stat = a.act.groupSize === 0;
  for (let r = r0; r < r1; r++) {
    for (let at = r * k; at < (r + 1) * k; at += g) {
      const len = Math.min(g, (r + 1) * k - at);
      if (a.act.dataType === "int") {
        int8Row(x, a, at, len, out);
        continue;
      }
      const c = ctxOf(a, stat ? a.actMax ?? 0 : absArgMax(x, at, len)[1]);
      if (c.kind === "mx") mxElems(c.c, x, undefined, at, len, out);
      else if (c.kind === "nv") nvElems(c.c, x, undefined, at, len, out);
      else fp8Elems(c.c, x, undefined, at, len, out);
    }
  }
}

/**
 * Backward of {@link actFakeQuantRows}: dx for rows `[r0, r1)` (written), returns this slice's
 * ∂L/∂actMaxScale (static FP8; 0 for every other quantizer). The caller sums slices in order.
 */
export function actFakeQuantBackwardRows(
  x: Float32Array,
  k: number,
  a: ActArgs,
  r0: number,
  r1: number,
  dOut: Float32Array,
  dx: Float32Array,
): number {
  const g = groupLen(a, k), stat = a.act.groupSize === 0;
  let dStat = 0;
  for (let r = r0; r < r1; r++) {
    for (let at = r * k; at < (r + 1) * k; at += g) {
      const len = Math.min(g, (r + 1) * k - at);
      if (a.act.dataType === "int") {
        int8RowBackward(x, a, at, len, dOut, dx);
        continue;
      }
      const [j, m] = stat ? [-1, a.actMax!] : absArgMax(x, at, len);
      const c = ctxOf(a, m);
      let d: number, inv: number;
      if (c.kind === "mx") {
        [d, inv] = [mxScaleGrad(c.c, mxElemsBackward(c.c, x, undefined, at, len, dOut, dx)), 1 / c.c.scale];
      } else if (c.kind === "nv") {
        [d, inv] = [nvScaleGrad(c.c, nvElemsBackward(c.c, x, undefined, at, len, dOut, dx)), c.c.os];
      } else {[d, inv] = [
          fp8ScaleGrad(c.c, fp8ElemsBackward(c.c, x, undefined, at, len, dOut, dx)),
          1 / c.c.scale,
        ];}
      // Direct path: t = x/scale (x·os for NV), so ∂L/∂x = ∂L/∂t·(1/scale).
      for (let i = at; i < at + len; i++) dx[i] *= inv;
      if (stat) {
        if (!a.act.dynamic) dStat += d * a.actMax!; // vec = actMax·β
      } else if (m > 0) {
        // vec = max|x|·β (β = 1 for NV): ∂vec/∂x_j = β·sign(x_j) at the first maximal index.
        dx[j] += d * (c.kind === "nv" ? 1 : a.actMaxScale ?? 1) * Math.sign(x[j]);
      }
    }
  }
  return dStat;
}

// ---- INT8 per token (int.py quant_tensor_sym, § 7) -----------------------------------------------

/** min(min x, 0) and max(max x, 0) of a group with the first index of each (tensor.min/max(-1)). */
function minMax(x: Float32Array, at: number, len: number) {
  let jn = at, jx = at;
  for (let i = at + 1; i < at + len; i++) {
    if (x[i] < x[jn]) jn = i;
    if (x[i] > x[jx]) jx = i;
  }
  return { jn, jx, lo: Math.min(x[jn], 0), hi: Math.max(x[jx], 0) };
}

function int8Scale(x: Float32Array, a: ActArgs, at: number, len: number) {
  const mm = minMax(x, at, len), m = int8Math(a.act.bits);
  const gs = groupScale(m, {
    wMin: Float32Array.of(mm.lo),
    wMax: Float32Array.of(mm.hi),
    maxScale: Float32Array.of(a.actMaxScale ?? 1),
  }, 0);
  return { mm, gs, maxq: 2 ** (a.act.bits - 1) };
}

function int8Row(x: Float32Array, a: ActArgs, at: number, len: number, out: Float32Array): void {
  const { gs, maxq } = int8Scale(x, a, at, len);
  for (let i = at; i < at + len; i++) {
    const z = f32(x[i] / gs.scale);
    out[i] = f32(gs.scale * Math.min(Math.max(rne(z), -maxq), maxq - 1));
  }
}

function rne(z: number): number {
  const r = Math.round(z);
  return Math.abs(z - Math.trunc(z)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * INT8 backward: dx = dOut·[code in range] directly, plus the scale's gradient, summed in float16
 * per use as torch's fp16 scale tensor does (int_quant.ts fakeQuantizeBackward), through max_v =
 * ±maximum(wmax·β, −wmin) (a tie splits evenly, torch.maximum) to the first argmax / argmin, cut by
 * clamp(max, min=0) / clamp(min, max=0) outside (inclusive) and by the ±1e-5 threshold.
 */
function int8RowBackward(
  x: Float32Array,
  a: ActArgs,
  at: number,
  len: number,
  dOut: Float32Array,
  dx: Float32Array,
): void {
  const { mm, gs, maxq } = int8Scale(x, a, at, len), s = gs.scale, h = Math.f16round;
  let gP = 0, gQ = 0;
  for (let i = at; i < at + len; i++) {
    const z = rne(f32(x[i] / s)), inR = z >= -maxq && z <= maxq - 1 ? 1 : 0;
    dx[i] = dOut[i] * inR;
    gP += dOut[i] * Math.min(Math.max(z, -maxq), maxq - 1);
    gQ -= (dOut[i] * inR * x[i]) / s;
  }
  if (!gs.scalePasses) return;
  const gMaxV = (gs.sign * h(h(gP) + h(gQ))) / maxq;
  const share = gs.side === "max" ? 1 : gs.side === "tie" ? 0.5 : 0;
  if (mm.hi === x[mm.jx]) dx[mm.jx] += gMaxV * share * (a.actMaxScale ?? 1);
  if (mm.lo === x[mm.jn]) dx[mm.jn] -= gMaxV * (1 - share);
}
