/**
 * Per-group kernels of auto-round's float quantizers with their autograd (issue 17), shared by the
 * weight quantizers with SignRound's tuning parameters (float_tune.ts) and the activation quantizers
 * (act_quant.ts). A group is a contiguous run `[at, at + len)` of one row. Each format has three
 * pieces: a scale context from the (already multiplied) group maximum `vec = fl32(max|x|·coeff)`,
 * the element fake quant, and the element backward, which writes ∂L/∂t (t = the value after the
 * division by the scale, so ∂L/∂t = ∂L/∂v) and returns ∂L/∂scale (∂L/∂os for NV); `*ScaleGrad` turns
 * that into ∂L/∂vec. Values use float_quant.ts (quantElement, roundE4M3, castToFp4) and torch's float32
 * rounding; gradients are evaluated in float64 on those float32 intermediates.
 *
 * Straight-through rules (SCHEMES.md § 3.2, § 9.4): round/floor/ceil/fp8/fp4 casts have gradient 1;
 * clamp passes gradient inside [lo, hi] inclusive; abs and sign follow torch (∂|s|/∂s = sign(s), so
 * an element whose scaled value is exactly 0 gets no gradient: sign(0)·1·sign(0) = 0).
 */
import { castToFp4, E4M3_MAX, type MxElementFormat, quantElement, roundE4M3 } from "./float_quant.ts";

const f32 = Math.fround;

/** Optional array entry (0 when the array is absent): SignRound's v is 0 outside tuning. */
function at0(a: Float32Array | undefined, i: number): number {
  return a ? a[i] : 0;
}

// ---- MX (mxfp.py quant_mx / quant_mx_rceil, SCHEMES.md § 4.1, § 4.2, § 3.3) ---------------------

/** Scale of one MX group. */
export interface MxCtx {
  fmt: MxElementFormat;
  /** Shared exponent in [−127, 127]; scale = 2^e. */
  e: number;
  scale: number;
  vec: number;
  /** vec > 0 and the ±127 clamp inactive: the exponent depends on vec (floor/ceil STE). */
  pass: boolean;
}

/**
 * quant_mx's shared exponent: floor(log2 vec) − emax (`rceil`: ceil(log2(vec/max_norm))), where(vec ==
 * 0, 1, ·) for a zero group, clamped to ±127 (mxfp.py:276-283, 331-336).
 */
export function mxScale(vec: number, fmt: MxElementFormat, rceil: boolean): MxCtx {
  let e0: number;
  if (vec === 0) e0 = rceil ? 1 : 1 - fmt.emax;
  else if (rceil) e0 = Math.ceil(f32(Math.log2(f32(vec / fmt.maxNorm))));
  else e0 = Math.floor(f32(Math.log2(vec))) - fmt.emax;
  const e = Math.min(Math.max(e0, -127), 127);
  return { fmt, e, scale: 2 ** e, vec, pass: vec !== 0 && e0 >= -127 && e0 <= 127 };
}

/** t = clamp(x/2^e + v, ±max_norm), q = quant_element(t), out = q·2^e (all exact in float32). */
export function mxElems(
  c: MxCtx,
  x: Float32Array,
  v: Float32Array | undefined,
  at: number,
  len: number,
  out: Float32Array,
  elements?: Float32Array,
): void {
  const mn = c.fmt.maxNorm;
  for (let i = at; i < at + len; i++) {
    // `+ v` always (v = 0 too): torch's x/scale + 0 turns −0 into +0 before quant_element.
    const t = Math.min(Math.max(f32(f32(x[i] / c.scale) + at0(v, i)), -mn), mn);
    const q = quantElement(t, c.fmt);
    out[i] = f32(q * c.scale);
    if (elements) elements[i] = q;
  }
}

/**
 * ∂q/∂t of quant_element at t (SCHEMES.md § 3.3, § 9.4): the mantissa rounding passes 1 (0 at s = 0);
 * the private exponent pe = floor_ste(log2|t|) adds ∂out/∂pe·∂pe/∂t = ln2·2^(pe−m)(r − s)·sign(t)/(|t| ln2)
 * = (q − t)/t, cut where pe is clipped at min_exp. The final ±max_norm clamp never cuts: max_norm lies
 * on the grid and t ≤ max_norm, so |q| ≤ max_norm (the inclusive clamp passes at equality).
 */
function mxElemGrad(t: number, q: number, fmt: MxElementFormat): number {
  if (t === 0) return 0;
  if (fmt.ebits === 0) return 1;
  const pe0 = Math.floor(f32(Math.log2(Math.abs(t))));
  const minExp = -(2 ** (fmt.ebits - 1)) + 2;
  return pe0 >= minExp ? 1 + (q - t) / t : 1;
}

/** Backward of {@link mxElems}: writes ∂L/∂t into `dt`, returns ∂L/∂scale (both uses of the scale). */
export function mxElemsBackward(
  c: MxCtx,
  x: Float32Array,
  v: Float32Array | undefined,
  at: number,
  len: number,
  dOut: Float32Array,
  dt: Float32Array | Float64Array,
): number {
  const mn = c.fmt.maxNorm;
  let dScale = 0;
  for (let i = at; i < at + len; i++) {
    const t1 = f32(f32(x[i] / c.scale) + at0(v, i));
    const pass = t1 >= -mn && t1 <= mn;
    const t = Math.min(Math.max(t1, -mn), mn);
    const q = quantElement(t, c.fmt);
    const g = pass ? dOut[i] * c.scale * mxElemGrad(t, q, c.fmt) : 0;
    dt[i] = g;
    // out = q·scale and t = x/scale + v: ∂out/∂scale = q − (∂L/∂t)·x/scale².
    dScale += dOut[i] * q - (g * x[i]) / (c.scale * c.scale);
  }
  return dScale;
}

/** ∂L/∂vec from ∂L/∂scale: scale = 2^clamp(floor_ste(log2 vec) − emax) → scale·ln2/(vec·ln2). */
export function mxScaleGrad(c: MxCtx, dScale: number): number {
  return c.pass ? (dScale * c.scale) / c.vec : 0;
}

// ---- NVFP4 (nvfp.py ref_nvfp4_quant, SCHEMES.md § 5.2, § 3.4) -------------------------------------

const recip = (x: number) => (x === 0 ? 0 : f32(1 / x));
const SIXTH = f32(1 / 6);

/** Scale of one NVFP4 group of 16. */
export interface NvCtx {
  gs: number;
  vec: number;
  /** The E4M3 group scale (clamped to ±448 first). */
  s8: number;
  /** |gs·vec/6| ≤ 448 (the clamp passes). */
  sPass: boolean;
  /** P = fl32(s8·(1/gs)); output scale os = 1/P; ro = fl32(1/os) multiplies the elements back. */
  p: number;
  os: number;
  ro: number;
}

/** s = fl32(gs·fl32(vec·fl32(1/6))), s8 = E4M3(clamp(s, ±448)), os = get_reciprocal(s8·get_reciprocal(gs)). */
export function nvScale(vec: number, gs: number): NvCtx {
  const s = f32(gs * f32(vec * SIXTH));
  const s8 = roundE4M3(Math.min(Math.max(s, -E4M3_MAX), E4M3_MAX));
  const p = f32(s8 * recip(gs));
  const os = recip(p);
  return { gs, vec, s8, sPass: s >= -E4M3_MAX && s <= E4M3_MAX, p, os, ro: recip(os) };
}

/** y = clamp(fl32(x·os) + v, ±6), out = cast_to_fp4(y)·get_reciprocal(os). */
export function nvElems(
  c: NvCtx,
  x: Float32Array,
  v: Float32Array | undefined,
  at: number,
  len: number,
  out: Float32Array,
  elements?: Float32Array,
): void {
  for (let i = at; i < at + len; i++) {
    const y = Math.min(Math.max(f32(f32(x[i] * c.os) + at0(v, i)), -6), 6);
    const q = castToFp4(y);
    out[i] = f32(q * c.ro);
    if (elements) elements[i] = q;
  }
}

/**
 * Backward of {@link nvElems}: ∂L/∂y into `dt` (cast_to_fp4 passes 1, 0 at y = 0 through abs/sign),
 * returns ∂L/∂os: −q/os² through get_reciprocal(os) (when os ≠ 0) plus (∂L/∂y)·x through x·os.
 */
export function nvElemsBackward(
  c: NvCtx,
  x: Float32Array,
  v: Float32Array | undefined,
  at: number,
  len: number,
  dOut: Float32Array,
  dt: Float32Array | Float64Array,
): number {
  let dOs = 0;
  for (let i = at; i < at + len; i++) {
    const y1 = f32(f32(x[i] * c.os) + at0(v, i));
    const y = Math.min(Math.max(y1, -6), 6);
    const q = castToFp4(y);
    const g = y1 >= -6 && y1 <= 6 && y !== 0 ? dOut[i] * c.ro : 0;
    dt[i] = g;
    dOs += (c.os === 0 ? 0 : -dOut[i] * q * c.ro * c.ro) + g * x[i];
  }
  return dOs;
}

/**
 * ∂L/∂vec from ∂L/∂os: os = 1/P, P = s8/gs, s8 = E4M3_ste(clamp(s)), s = gs·vec·(1/6). When s8 = 0
 * (zero group or E4M3 underflow) torch's where(P == 0, 0, 1/P) backward gives 0·∞ = NaN (§ 9.4);
 * we return 0 there instead.
 */
export function nvScaleGrad(c: NvCtx, dOs: number): number {
  if (c.p === 0 || !c.sPass) return 0;
  return -dOs * c.os * c.os * recip(c.gs) * c.gs * SIXTH;
}

// ---- FP8 E4M3 (fp8.py quant_fp8_sym, SCHEMES.md § 6.1) ---------------------------------------------

/** Smallest FP8 scale, 1/(448·512) as a float32 (fp8.py:123, "copied from vLLM"). */
export const FP8_MIN_SCALE = f32(1 / (448 * 512));

/** Scale of one FP8 group. */
export interface Fp8Ctx {
  scale: number;
  vec: number;
  /** vec/448 ≥ the minimum scale (the clip passes). */
  pass: boolean;
}

/** scale = clip(fl32(vec/448), min = 1/229376). */
export function fp8Scale(vec: number): Fp8Ctx {
  const raw = f32(vec / E4M3_MAX);
  return { scale: Math.max(raw, FP8_MIN_SCALE), vec, pass: raw >= FP8_MIN_SCALE };
}

/** y = E4M3(clip(fl32(x/scale) + v, ±448)), out = y·scale. */
export function fp8Elems(
  c: Fp8Ctx,
  x: Float32Array,
  v: Float32Array | undefined,
  at: number,
  len: number,
  out: Float32Array,
  elements?: Float32Array,
): void {
  for (let i = at; i < at + len; i++) {
    const y = roundE4M3(Math.min(Math.max(f32(f32(x[i] / c.scale) + at0(v, i)), -E4M3_MAX), E4M3_MAX));
    out[i] = f32(y * c.scale);
    if (elements) elements[i] = y;
  }
}

/** Backward of {@link fp8Elems}: ∂L/∂y into `dt` (fp8 STE, clip inclusive), returns ∂L/∂scale. */
export function fp8ElemsBackward(
  c: Fp8Ctx,
  x: Float32Array,
  v: Float32Array | undefined,
  at: number,
  len: number,
  dOut: Float32Array,
  dt: Float32Array | Float64Array,
): number {
  let dScale = 0;
  for (let i = at; i < at + len; i++) {
    const y1 = f32(f32(x[i] / c.scale) + at0(v, i));
    const y = roundE4M3(Math.min(Math.max(y1, -E4M3_MAX), E4M3_MAX));
    const g = y1 >= -E4M3_MAX && y1 <= E4M3_MAX ? dOut[i] * c.scale : 0;
    dt[i] = g;
    dScale += dOut[i] * y - (g * x[i]) / (c.scale * c.scale);
  }
  return dScale;
}

/** ∂L/∂vec from ∂L/∂scale: 1/448 inside the clip, 0 where the minimum scale holds. */
export function fp8ScaleGrad(c: Fp8Ctx, dScale: number): number {
  return c.pass ? dScale / E4M3_MAX : 0;
}
