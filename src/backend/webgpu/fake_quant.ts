/**
 * Dispatchers of wgsl/fake_quant.wgsl: fakeQuant, fakeQuantBackward and quantizeWeights. The work is
 * split over weight rows; group scales go to an 8-word-per-group scratch first (fq_groups), which the
 * element kernels then read.
 */
import type { DType, IntQuantParams, QuantState } from "../backend.ts";
import type { QuantizedWeights } from "../../qmath/quantized.ts";
import { BackendError } from "../../errors.ts";
import { roundBf16 } from "../../tensor/dtype.ts";
import type { GpuContext } from "./context.ts";
import type { KernelSpec } from "./kernels.ts";
import { Params } from "./params.ts";
import { bind, type Bound, chunks, gpu, type GpuTensor } from "./tensor.ts";

const WG = 256;
const INFO_WORDS = 8;

interface Layout {
  n: number;
  k: number;
  g: number;
  G: number;
}

interface StateTensors {
  v: GpuTensor;
  minScale: GpuTensor;
  maxScale: GpuTensor;
  wMin: GpuTensor;
  wMax: GpuTensor;
  initScale?: GpuTensor;
}

function layoutOf(w: GpuTensor, s: StateTensors, p: IntQuantParams): Layout {
  if (p.signRoundV2) {
    throw new BackendError(
      "--enable_alg_ext (SignRoundV2) runs on the CPU backend only so far: use --device cpu",
    );
  }
  const n = w.rows, k = w.cols;
  const g = p.groupSize <= 0 || p.groupSize > k ? k : p.groupSize;
  const G = Math.ceil(k / g);
  if (
    s.wMin.size !== n * G || s.v.size !== w.size || s.minScale.size !== n * G || s.maxScale.size !== n * G
  ) {
    throw new BackendError(`quant state does not match a [${n}, ${k}] weight with group ${p.groupSize}`);
  }
  return { n, k, g, G };
}

function stateOf(st: QuantState): StateTensors {
  return {
    v: gpu(st.v),
    minScale: gpu(st.minScale),
    maxScale: gpu(st.maxScale),
    wMin: gpu(st.wMin),
    wMax: gpu(st.wMax),
    initScale: st.initScale ? gpu(st.initScale) : undefined,
  };
}

/** Uniform fields shared by all fake-quant kernels (QuantParams in the WGSL). */
function quantParams(
  p: IntQuantParams,
  l: Layout,
  rows: number,
  b: {
    w?: Bound;
    v?: Bound;
    min?: Bound;
    max?: Bound;
    wmin?: Bound;
    wmax?: Bound;
    init?: Bound;
    info: Bound;
  },
  outBase: number,
  dBase: number,
): Params {
  const sym = p.sym;
  const maxq = sym ? 2 ** (p.bits - 1) : 2 ** p.bits - 1;
  const [qlo, qhi] = sym ? [-(2 ** (p.bits - 1)), 2 ** (p.bits - 1) - 1] : [0, 2 ** p.bits - 1];
  // Threshold rounded to the scale dtype (AutoRound q_scale_thresh; int_quant.ts groupScale).
  const thr = p.scaleDType === "f32"
    ? Math.fround(1e-8)
    : p.scaleDType === "f16"
    ? Math.f16round(1e-5)
    : 1e-5;
  const thrRounded = p.scaleDType === "bf16" ? roundBf16(thr) : thr;
  return new Params().u(rows).u(l.k).u(l.g).u(l.G)
    .u(p.bits).u(sym ? 1 : 0).u(p.scaleDType === "f32" ? 0 : p.scaleDType === "f16" ? 1 : 2).u(b.init ? 1 : 0)
    .u(b.w?.base ?? 0).u(b.v?.base ?? 0).u(b.min?.base ?? 0).u(b.max?.base ?? 0)
    .u(b.wmin?.base ?? 0).u(b.wmax?.base ?? 0).u(b.init?.base ?? 0).u(b.info.base)
    .u(outBase).f(thrRounded).f(maxq).f(qlo)
    .f(qhi).u(dBase).u(0).u(0);
}

/** Row chunks whose element windows (w, v and up to two more [n, k] tensors) and group windows fit. */
function rowChunks(ctx: GpuContext, l: Layout, elemTensors: GpuTensor[], groupTensors: GpuTensor[]) {
  const bytes = [
    ...elemTensors.map((t) => l.k * t.kind.bytes),
    ...groupTensors.map((t) => l.G * t.kind.bytes),
    l.G * INFO_WORDS * 4,
  ];
  return chunks(ctx.rt, l.n, bytes, 1);
}

/** fq_groups over all rows into `info` (8 words per group). */
function groupScales(ctx: GpuContext, p: IntQuantParams, l: Layout, s: StateTensors, info: GpuTensor): void {
  const { rt } = ctx;
  const groupTs = [s.minScale, s.maxScale, s.wMin, s.wMax, ...(s.initScale ? [s.initScale] : [])];
  const k = rt.kernel({
    family: "fakeQuant",
    entry: "fq_groups",
    bindings: ["r", "r", "r", "r", "r", "rw"],
    types: {
      mn: s.minScale.kind,
      mx: s.maxScale.kind,
      wmn: s.wMin.kind,
      wmx: s.wMax.kind,
      init: (s.initScale ?? s.wMin).kind,
    },
  });
  for (const [r0, rows] of rowChunks(ctx, l, [], groupTs)) {
    const g0 = r0 * l.G, ng = rows * l.G;
    const [min, max, wmin, wmax] = [s.minScale, s.maxScale, s.wMin, s.wMax].map((t) => bind(rt, t, g0, ng));
    const init = s.initScale ? bind(rt, s.initScale, g0, ng) : undefined;
    const inf = bind(rt, info, g0 * INFO_WORDS, ng * INFO_WORDS);
    const prm = quantParams(p, l, rows, { min, max, wmin, wmax, init, info: inf }, 0, 0);
    const windows = [min, max, wmin, wmax, init ?? wmin, inf].map((b) => b.window);
    rt.dispatch(k, prm, windows, Math.ceil(ng / WG));
  }
}

/**
 * Ŵ = fakeQuant(w) into a new tensor of `outDType`.
 *
 * @example
 * ```ts
 * using wq = fakeQuant(ctx, w, state, { bits: 4, groupSize: 128, sym: true, scaleDType: "f16" }, "f16");
 * ```
 */
export function fakeQuant(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: IntQuantParams,
  outDType: DType,
): GpuTensor {
  const { rt } = ctx;
  const s = stateOf(st), l = layoutOf(w, s, p);
  using info = ctx.alloc([l.n * l.G * INFO_WORDS], "i32");
  groupScales(ctx, p, l, s, info);
  const out = ctx.alloc(w.shape, outDType);
  const k = rt.kernel({
    family: "fakeQuant",
    entry: "fq_apply",
    bindings: ["r", "r", "rw", "rw"],
    types: { w: w.kind, v: s.v.kind, out: out.kind },
  });
  for (const [r0, rows] of rowChunks(ctx, l, [w, s.v, out], [])) {
    const e0 = r0 * l.k, ne = rows * l.k;
    const W = bind(rt, w, e0, ne), V = bind(rt, s.v, e0, ne), O = bind(rt, out, e0, ne);
    const I = bind(rt, info, r0 * l.G * INFO_WORDS, rows * l.G * INFO_WORDS);
    const prm = quantParams(p, l, rows, { w: W, v: V, info: I }, O.base, 0);
    rt.dispatch(k, prm, [W.window, V.window, I.window, O.window], Math.ceil(ne / WG));
  }
  return out;
}

/** Straight-through gradients: dV [n, k], dα, dβ [n·G] (f32). */
export function fakeQuantBackward(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: IntQuantParams,
  dWq: GpuTensor,
): { dv: GpuTensor; dMinScale: GpuTensor; dMaxScale: GpuTensor } {
  const { rt } = ctx;
  const s = stateOf(st), l = layoutOf(w, s, p);
  if (dWq.size !== w.size) {
    throw new BackendError(`fakeQuantBackward: dŴ has ${dWq.size} elements, W ${w.size}`);
  }
  using info = ctx.alloc([l.n * l.G * INFO_WORDS], "i32");
  groupScales(ctx, p, l, s, info);
  const dv = ctx.alloc(w.shape, "f32");
  const dMin = ctx.alloc([l.n * l.G], "f32"), dMax = ctx.alloc([l.n * l.G], "f32");
  const kb = rt.kernel({
    family: "fakeQuant",
    entry: "fq_bwd",
    bindings: ["r", "r", "rw", "r", "rw"],
    types: { w: w.kind, v: s.v.kind, dwq: dWq.kind },
  });
  for (const [r0, rows] of rowChunks(ctx, l, [w, s.v, dWq, dv], [])) {
    const e0 = r0 * l.k, ne = rows * l.k;
    const W = bind(rt, w, e0, ne),
      V = bind(rt, s.v, e0, ne),
      DW = bind(rt, dWq, e0, ne),
      DV = bind(rt, dv, e0, ne);
    const I = bind(rt, info, r0 * l.G * INFO_WORDS, rows * l.G * INFO_WORDS);
    const prm = quantParams(p, l, rows, { w: W, v: V, info: I }, DV.base, DW.base);
    rt.dispatch(kb, prm, [W.window, V.window, I.window, DW.window, DV.window], rows * l.G);
  }
  const groupTs = [s.minScale, s.maxScale, s.wMin, s.wMax, ...(s.initScale ? [s.initScale] : [])];
  const kg = rt.kernel({
    family: "fakeQuant",
    entry: "fq_bwd_groups",
    bindings: ["r", "r", "r", "r", "r", "rw", "rw", "rw"],
    types: {
      mn: s.minScale.kind,
      mx: s.maxScale.kind,
      wmn: s.wMin.kind,
      wmx: s.wMax.kind,
      init: (s.initScale ?? s.wMin).kind,
    },
  });
  for (const [r0, rows] of rowChunks(ctx, l, [], [...groupTs, dMin, dMax])) {
    const g0 = r0 * l.G, ng = rows * l.G;
    const [min, max, wmin, wmax, dmn, dmx] = [s.minScale, s.maxScale, s.wMin, s.wMax, dMin, dMax].map((t) =>
      bind(rt, t, g0, ng)
    );
    const init = s.initScale ? bind(rt, s.initScale, g0, ng) : undefined;
    const inf = bind(rt, info, g0 * INFO_WORDS, ng * INFO_WORDS);
    const prm = quantParams(p, l, rows, { min, max, wmin, wmax, init, info: inf }, dmn.base, dmx.base);
    const windows = [min, max, wmin, wmax, init ?? wmin, inf, dmn, dmx].map((b) => b.window);
    rt.dispatch(kg, prm, windows, Math.ceil(ng / WG));
  }
  return { dv, dMinScale: dMin, dMaxScale: dMax };
}

/** Integer codes, scales and zero points on the host (same math as fakeQuant). */
export async function quantizeWeights(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: IntQuantParams,
): Promise<QuantizedWeights> {
  const { rt } = ctx;
  const s = stateOf(st), l = layoutOf(w, s, p);
  using info = ctx.alloc([l.n * l.G * INFO_WORDS], "i32");
  groupScales(ctx, p, l, s, info);
  const wpr = Math.ceil(l.k / 4);
  using packed = ctx.alloc([l.n * wpr], "i32");
  const spec: KernelSpec = {
    family: "fakeQuant",
    entry: "fq_codes",
    bindings: ["r", "r", "rw", "rw"],
    types: { w: w.kind, v: s.v.kind },
  };
  const k = rt.kernel(spec);
  for (const [r0, rows] of rowChunks(ctx, l, [w, s.v, packed], [])) {
    const e0 = r0 * l.k, ne = rows * l.k;
    const W = bind(rt, w, e0, ne), V = bind(rt, s.v, e0, ne), C = bind(rt, packed, r0 * wpr, rows * wpr);
    const I = bind(rt, info, r0 * l.G * INFO_WORDS, rows * l.G * INFO_WORDS);
    const prm = quantParams(p, l, rows, { w: W, v: V, info: I }, C.base, 0);
    rt.dispatch(k, prm, [W.window, V.window, I.window, C.window], Math.ceil((rows * wpr) / WG));
  }
  const words = new Uint32Array(await rt.read(packed.storage.buffer, packed.offset * 4, packed.size * 4));
  const infoWords = new Uint32Array(await rt.read(info.storage.buffer, info.offset * 4, info.size * 4));
  const infoF = new Float32Array(infoWords.buffer);
  const codes = new Uint8Array(w.size), bytes = new Uint8Array(words.buffer);
  for (let r = 0; r < l.n; r++) codes.set(bytes.subarray(r * wpr * 4, r * wpr * 4 + l.k), r * l.k);
  const scales = new Float32Array(l.n * l.G), zeros = new Int32Array(l.n * l.G);
  for (let i = 0; i < l.n * l.G; i++) {
    scales[i] = infoF[i * INFO_WORDS];
    zeros[i] = infoF[i * INFO_WORDS + 1];
  }
  return { codes, scales, zeros };
}
