/**
 * The CPU backend's float-scheme ops (issue 17): MX / NVFP4 / FP8 weight fake quantization with
 * SignRound's tuning state and its straight-through backward, and the activation quantizers, all
 * from the host math in qmath/float_tune.ts and qmath/act_quant.ts (spec/SCHEMES.md). They run on
 * the calling thread over all rows at once: the float schemes are new and stories-sized models are
 * what they are tested on; the worker-pool slicing of the integer ops (tasks.ts) is the model for
 * spreading them when larger models need it.
 */
import type {
  ActQuantArgs,
  DType,
  FakeQuantGrads,
  FloatQuantParams,
  QuantState,
  Tensor,
} from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { floatGroups, type FloatScheme } from "../../qmath/quantized.ts";
import {
  floatFakeQuantBackwardRows,
  floatFakeQuantRows,
  type FloatWeightArgs,
} from "../../qmath/float_tune.ts";
import { actFakeQuantBackwardRows, actFakeQuantRows } from "../../qmath/act_quant.ts";
import type { CpuTensor } from "./cpu_tensor.ts";

/** What the ops need of the backend: its tensors and new float tensors. */
export interface FloatOpsHost {
  tensor(x: Tensor): CpuTensor;
  newFloat(shape: readonly number[], dtype?: DType): CpuTensor;
}

/** The host from the backend's two accessors. */
export function opsHost(tensor: FloatOpsHost["tensor"], newFloat: FloatOpsHost["newFloat"]): FloatOpsHost {
  return { tensor, newFloat };
}

/** f32 view of a float tensor's values (a copy when the backend stores f64). */
function f32(t: CpuTensor): Float32Array {
  const f = t.f;
  return f instanceof Float32Array ? f : Float32Array.from(f);
}

function weightArgs(h: FloatOpsHost, w: Tensor, st: QuantState, p: FloatQuantParams): FloatWeightArgs {
  const W = h.tensor(w);
  const [n, k] = W.shape;
  const groups = floatGroups(p.scheme as FloatScheme, n, k).total;
  // β is clamped into [0, 1] ([0, 2] for SignRoundV2) before use (wrapper.py:76, 257-259); the
  // host math takes it clamped.
  const hi = p.signRoundV2 ? 2 : 1;
  const maxScale = Float32Array.from(h.tensor(st.maxScale).f, (x) => (x < 0 ? 0 : x > hi ? hi : x));
  if (maxScale.length !== groups || h.tensor(st.v).size !== n * k) {
    throw new BackendError(
      `float quant state does not match a [${n}, ${k}] weight with group ${p.scheme.groupSize}`,
    );
  }
  return {
    w: f32(W),
    k,
    scheme: p.scheme as FloatWeightArgs["scheme"],
    v: f32(h.tensor(st.v)),
    maxScale,
    wMin: f32(h.tensor(st.wMin)),
    wMax: f32(h.tensor(st.wMax)),
    globalScale: p.globalScale,
    initScale: st.initScale ? f32(h.tensor(st.initScale)) : undefined,
  };
}

/** Ŵ in `outDType` (rounded to it). */
export function floatFakeQuant(
  h: FloatOpsHost,
  w: Tensor,
  st: QuantState,
  p: FloatQuantParams,
  outDType?: DType,
): Tensor {
  const W = h.tensor(w);
  const a = weightArgs(h, w, st, p);
  const out = new Float32Array(W.size);
  floatFakeQuantRows(a, 0, W.shape[0], out);
  const t = h.newFloat(W.shape, outDType ?? W.dtype);
  t.f.set(out);
  return t.rounded();
}

/** Straight-through gradients for dŴ; α has none (SCHEMES.md § 9.1). */
export function floatFakeQuantBackward(
  h: FloatOpsHost,
  w: Tensor,
  st: QuantState,
  p: FloatQuantParams,
  dWq: Tensor,
): FakeQuantGrads {
  const W = h.tensor(w);
  const a = weightArgs(h, w, st, p);
  const dv = new Float32Array(W.size), dMax = new Float32Array(a.maxScale.length);
  floatFakeQuantBackwardRows(a, 0, W.shape[0], f32(h.tensor(dWq)), dv, dMax);
  const tv = h.newFloat(W.shape), tMin = h.newFloat([dMax.length]), tMax = h.newFloat([dMax.length]);
  tv.f.set(dv);
  tMax.f.set(dMax);
  return { dv: tv, dMinScale: tMin, dMaxScale: tMax };
}

/** Element values and per-group scales (FloatQuantizedLinear's fields). */
export function floatQuantizeWeights(
  h: FloatOpsHost,
  w: Tensor,
  st: QuantState,
  p: FloatQuantParams,
): Promise<{ elements: Float32Array; scales: Float32Array }> {
  const W = h.tensor(w);
  const a = weightArgs(h, w, st, p);
  const out = new Float32Array(W.size), elements = new Float32Array(W.size);
  const scales = new Float32Array(a.maxScale.length);
  floatFakeQuantRows(a, 0, W.shape[0], out, elements, scales);
  return Promise.resolve({ elements, scales });
}

function actArgs(h: FloatOpsHost, x: CpuTensor, a: ActQuantArgs) {
  let actMax = a.actMax;
  if (a.rangeFromInput) {
    actMax = 0;
    const f = x.f;
    for (let i = 0; i < f.length; i++) actMax = Math.max(actMax, Math.abs(f[i]));
  }
  // act_max_scale is clamped into [0, 1] before use (wrapper.py:306-307).
  const ams = a.actMaxScale ? h.tensor(a.actMaxScale).f[0] : undefined;
  const actMaxScale = ams === undefined ? undefined : Math.min(1, Math.max(0, ams));
  return { act: a.act, actMax, actMaxScale, scale: a.inputScale, globalScale: a.inputGlobalScale };
}

/** Fake-quantized activations, in x's dtype. */
export function actFakeQuant(h: FloatOpsHost, x: Tensor, a: ActQuantArgs): Tensor {
  const X = h.tensor(x);
  const k = X.shape[X.shape.length - 1], rows = X.size / k;
  const out = new Float32Array(X.size);
  actFakeQuantRows(f32(X), k, actArgs(h, X, a), 0, rows, out);
  const t = h.newFloat(X.shape, X.dtype);
  t.f.set(out);
  return t.rounded();
}

/** dL/dx (and dL/d act_max_scale when a static scale is tuned). */
export function actFakeQuantBackward(
  h: FloatOpsHost,
  x: Tensor,
  a: ActQuantArgs,
  dOut: Tensor,
): { dx: Tensor; dActMaxScale?: Tensor } {
  const X = h.tensor(x);
  const k = X.shape[X.shape.length - 1], rows = X.size / k;
  const dx = new Float32Array(X.size);
  const ds = actFakeQuantBackwardRows(f32(X), k, actArgs(h, X, a), 0, rows, f32(h.tensor(dOut)), dx);
  const t = h.newFloat(X.shape, h.tensor(dOut).dtype);
  t.f.set(dx);
  if (!a.actMaxScale) return { dx: t.rounded() };
  const g = h.newFloat([1]);
  g.f[0] = ds;
  return { dx: t.rounded(), dActMaxScale: g };
}
