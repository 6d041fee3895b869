/**
 * A Linear's starting quantizer state for the pipeline and SignRound: V = 0, α = β = 1, the group
 * min/max of the unquantized weight, and auto-round's optimized-RTN initial scales when they apply;
 * on the device when the backend has the kernels, else from the host math (qmath/int_quant.ts).
 */
import type { Backend, IntQuantParams, QuantState, Tensor } from "../backend/backend.ts";
import { isFloatParams, type LayerQuantParams } from "./weight_quant.ts";
import {
  groupMinMax,
  groupsPerRow,
  importanceForWeight,
  resolveGroupSize,
  searchScalesSym,
} from "../qmath/int_quant.ts";
import { isIntWeightOnly, type QuantScheme } from "../qmath/quantized.ts";

/** Whether AutoRound would use optimized RTN for this layer (rtn/config.py, get_quant_func). */
export function usesOptRtn(s: QuantScheme, iters: number, disableOptRtn: boolean | undefined): boolean {
  if (iters > 0) return false;
  // Float schemes: NVFP4 RTN is opt_rtn_fast_nvfp4 unless disabled; MX and FP8 use plain RTN inside
  // blocks, INT8_W8A8 has opt-RTN off (SCHEMES.md § 1.4, § 9.5).
  if (s.dataType === "nv_fp") return disableOptRtn !== true;
  if (!isIntWeightOnly(s)) return false;
  // W8A16 turns it off by default; an explicit --enable_opt_rtn keeps it on.
  const disabled = disableOptRtn ?? s.bits >= 8;
  // Only symmetric int has an opt-RTN quantizer ("opt_rtn_int_sym"); asym falls back to int_asym.
  return !disabled && s.sym;
}

/**
 * Whether SignRoundV2 (`--enable_alg_ext`) changes this layer's quantizer: tuning, symmetric, no
 * super-groups (sign_roundv2/quantizer.py prepare_run): int, mx_fp, nv_fp (MXINT4 is refused in
 * quantize.ts: auto-round's V2 quantizes it with the mx_fp4 grid, § 12.1); asymmetric layers keep
 * plain SignRound, as auto-round's do.
 */
export function usesSignRoundV2(s: QuantScheme, t: { iters: number; enableAlgExt?: boolean }): boolean {
  const v2Types = ["int", "mx_fp", "nv_fp"];
  return t.enableAlgExt === true && t.iters > 0 && s.sym && v2Types.includes(s.dataType);
}

/** SignRoundV2's outlier-suppressed loss applies when bits < 4 or act_bits ≤ 4 (same prepare_run). */
export function outlierLossFor(s: QuantScheme, t: { iters: number; enableAlgExt?: boolean }): boolean {
  const v2 = t.enableAlgExt === true && t.iters > 0 && s.sym && s.dataType !== "fp";
  return v2 && (s.bits < 4 || (s.act?.bits ?? 16) <= 4);
}

/**
 * Quantizer parameters of a layer: integer (scales stored as fp16, auto-round's default scale_dtype;
 * INT8_W8A8's weights too, § 7) or float (with NVFP4's weight global scale).
 */
export function quantParams(s: QuantScheme, k: number, globalScale?: number): LayerQuantParams {
  if (s.dataType !== "int") return { kind: "float", scheme: s, globalScale };
  return { bits: s.bits, groupSize: resolveGroupSize(s.groupSize, k), sym: s.sym, scaleDType: "f16" };
}

/** The integer parameters of an integer-weight layer (a QuantizeError-free narrowing for int paths). */
export function intParams(s: QuantScheme, k: number): IntQuantParams {
  const p = quantParams(s, k);
  if (isFloatParams(p)) throw new Error(`intParams: ${s.dataType} is not an integer data type`);
  return p;
}

/**
 * The group size a state is laid out with: the int rule (−1 or > K: one group per row), and for
 * float schemes 0 = the whole tensor one group.
 */
function stateGroup(s: QuantScheme, k: number): { g: number; perTensor: boolean } {
  return s.groupSize === 0 && s.dataType !== "int"
    ? { g: k, perTensor: true }
    : { g: resolveGroupSize(s.groupSize, k), perTensor: false };
}

/** Build a Linear's initial tuning state from host weights: V = 0, α = β = 1, group min/max of W. */
export function initialState(
  be: Backend,
  w: Float32Array,
  n: number,
  k: number,
  s: QuantScheme,
  initScale?: Float64Array,
): QuantState & Disposable {
  const layout = { n, k, g: resolveGroupSize(s.groupSize, k) };
  const { wMin, wMax } = groupMinMax(w, layout);
  const G = groupsPerRow(layout);
  const wl = [wMin.length];
  return stateWith(
    be,
    n,
    k,
    n * G,
    be.upload(wMin, wl),
    be.upload(wMax, wl),
    initScale && be.upload(initScale, wl),
  );
}

/**
 * The same from a weight on the device: the group min/max come from the backend's groupMinMax when
 * it has one (no round trip of W through host memory), else from a host copy.
 */
export async function initialStateOf(
  be: Backend,
  weight: Tensor,
  s: QuantScheme,
  initScale?: Tensor,
): Promise<QuantState & Disposable> {
  const [n, k] = weight.shape;
  const { g, perTensor } = stateGroup(s, k);
  if (perTensor) return perTensorState(be, await be.read(weight), n, k, initScale);
  if (!be.groupMinMax) {
    const st = initialState(be, await be.read(weight), n, k, s);
    return initScale
      ? { ...st, initScale, [Symbol.dispose]: () => (st[Symbol.dispose](), initScale[Symbol.dispose]()) }
      : st;
  }
  const { wMin, wMax } = be.groupMinMax(weight, g);
  return stateWith(be, n, k, n * Math.ceil(k / g), wMin, wMax, initScale);
}

/**
 * auto-round's optimized-RTN initial scales for a weight, on the device when the backend can search
 * there, else on the host (int_quant.ts searchScalesSym).
 */
export async function optRtnScales(
  be: Backend,
  weight: Tensor,
  imatrix: Tensor | undefined,
  s: QuantScheme,
): Promise<Tensor> {
  const [n, k] = weight.shape;
  const g = resolveGroupSize(s.groupSize, k);
  if (be.optRtnScales) return be.optRtnScales(weight, imatrix, g, s.bits);
  const wf = await be.read(weight);
  const layout = { n, k, g };
  const importance = imatrix ? importanceForWeight(await be.read(imatrix), wf, layout, s.bits) : undefined;
  const scales = searchScalesSym(wf, layout, s.bits, importance, 1e-5, Math.fround);
  return be.upload(scales, [scales.length]);
}

/** A per-tensor state (FP8 group 0): one min/max over the whole weight, one β. */
function perTensorState(
  be: Backend,
  w: Float32Array,
  n: number,
  k: number,
  initScale?: Tensor,
): QuantState & Disposable {
  let lo = 0, hi = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] < lo) lo = w[i];
    if (w[i] > hi) hi = w[i];
  }
  return stateWith(
    be,
    n,
    k,
    1,
    be.upload(Float64Array.of(lo), [1]),
    be.upload(Float64Array.of(hi), [1]),
    initScale,
  );
}

/**
 * SignRoundV2's initial scales of a symmetric int Linear (search_optimized_init_scale,
 * data_type/utils.py:179-254): int.py search_scales on the weight with the importance matrix as
 * collected (Σx² per input column, broadcast over rows; unlike opt-RTN no zero handling), clamped to
 * ±1e-5. On the host.
 */
export async function signRoundV2InitScales(
  be: Backend,
  weight: Tensor,
  imatrix: Tensor | undefined,
  s: QuantScheme,
): Promise<Tensor> {
  const [n, k] = weight.shape;
  const layout = { n, k, g: resolveGroupSize(s.groupSize, k) };
  const wf = await be.read(weight);
  let importance: Float64Array | undefined;
  if (imatrix) {
    const im = await be.read(imatrix);
    importance = new Float64Array(n * k);
    for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) importance[r * k + c] = im[c];
  }
  const scales = searchScalesSym(wf, layout, s.bits, importance, 1e-5, Math.fround);
  return be.upload(scales, [scales.length]);
}

function stateWith(
  be: Backend,
  n: number,
  k: number,
  /** Groups in the whole weight (n · groups per row; 1 per tensor). */
  groups: number,
  wMin: Tensor,
  wMax: Tensor,
  initScale?: Tensor,
): QuantState & Disposable {
  const t = {
    v: be.full([n, k], 0),
    minScale: be.full([groups], 1),
    maxScale: be.full([groups], 1),
    wMin,
    wMax,
    initScale,
  };
  return {
    ...t,
    [Symbol.dispose]() {
      for (const x of Object.values(t)) x?.[Symbol.dispose]();
    },
  };
}
