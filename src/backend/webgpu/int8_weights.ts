/**
 * Dispatchers of the INT8_W8A8 weight kernels in wgsl/float_quant.wgsl (flw_i8_*): quant_tensor_sym
 * per row / group with float16 scales and SignRound's v, α and β (float_tune.ts int8Math on the
 * CPU: int_quant.ts fakeQuantize / fakeQuantizeBackward with f32 codes). A pass per group first
 * writes the scale, its sign, the max side's gradient share and whether the threshold clamp is off
 * (4 words per group); the element kernels read that.
 *
 * α (minScale): the CPU reference (cpu/float_ops.ts weightArgs) does not hand it to the INT8 path, so
 * it is 1 there and dα is 0; the kernels take α only with `use_alpha`, which stays off (USE_ALPHA) to
 * give the CPU's results.
 */
import type { DType, FakeQuantGrads, FloatQuantParams, QuantState } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import {
  floatFakeQuant as floatFq,
  floatFakeQuantBackward as floatFqBackward,
  floatParams,
  floatQuantizeWeights as floatQw,
  nvOrFp8Format,
  type Plan,
} from "./float_quant.ts";
import type { StorageKind } from "./storage.ts";
import { forChunks, gpu, type GpuTensor } from "./tensor.ts";

const WG = 256;
/** Whether α enters the scale (see above); the CPU reference leaves it out. */
const USE_ALPHA = 0;

function plan(w: GpuTensor, st: QuantState, p: FloatQuantParams): Plan {
  const s = p.scheme, n = w.rows, k = w.cols;
  if (!s.sym) throw new BackendError("INT8 weights: symmetric only (quant_tensor_sym)");
  const g = s.groupSize <= 0 || s.groupSize > k ? k : s.groupSize, perRow = Math.ceil(k / g);
  if (st.maxScale.size !== n * perRow || st.minScale.size !== n * perRow || st.v.size !== n * k) {
    throw new BackendError(`int quant state does not match a [${n}, ${k}] weight with group ${s.groupSize}`);
  }
  return { fmt: { ...nvOrFp8Format(2), kind: 3, mbits: s.bits }, n, k, g, perRow };
}

/** The four per-group state tensors (β, wMin, wMax, α) as chunk parts. */
function stateParts(st: QuantState, per: number) {
  return [st.maxScale, st.wMin, st.wMax, st.minScale].map((t) => ({ t: gpu(t), per }));
}

function stateTypes(st: QuantState) {
  return {
    ms: gpu(st.maxScale).kind,
    wmn: gpu(st.wMin).kind,
    wmx: gpu(st.wMax).kind,
    mn: gpu(st.minScale).kind,
  };
}

/** flw_i8_info into a new [groups·4] tensor. */
function info(ctx: GpuContext, pl: Plan, st: QuantState): GpuTensor {
  const { rt } = ctx, inf = ctx.alloc([pl.n * pl.perRow * 4], "f32");
  const k = rt.kernel({
    family: "floatQuant",
    entry: "flw_i8_info",
    bindings: ["r", "r", "r", "r", "rw"],
    types: stateTypes(st),
  });
  forChunks(rt, pl.n, [...stateParts(st, pl.perRow), { t: inf, per: pl.perRow * 4 }], (_r0, rows, b) => {
    const prm = floatParams(pl.fmt, { ...pl, rows }, [0, 0, b[0].base, b[1].base, b[2].base, 0, b[4].base], {
      words: [b[3].base, 0, USE_ALPHA],
    });
    rt.dispatch(k, prm, b.map((x) => x.window), Math.ceil((rows * pl.perRow) / WG));
  }, 1);
  return inf;
}

/**
 * One element kernel (`entry`: Ŵ or the codes, into `out` [n, k]) over row chunks, with info, w, v and
 * out bound in that order.
 */
function elementKernel(
  ctx: GpuContext,
  entry: string,
  types: Record<string, StorageKind>,
  pl: Plan,
  inf: GpuTensor,
  w: GpuTensor,
  v: GpuTensor,
  out: GpuTensor,
): void {
  const { rt } = ctx;
  const k = rt.kernel({ family: "floatQuant", entry, bindings: ["r", "r", "r", "rw"], types });
  const parts = [{ t: inf, per: pl.perRow * 4 }, { t: w, per: pl.k }, { t: v, per: pl.k }, {
    t: out,
    per: pl.k,
  }];
  forChunks(rt, pl.n, parts, (_r0, rows, b) => {
    const prm = floatParams(pl.fmt, { ...pl, rows }, [b[1].base, b[2].base, 0, 0, 0, b[3].base, b[0].base]);
    rt.dispatch(k, prm, b.map((x) => x.window), Math.ceil((rows * pl.k) / WG));
  }, 1);
}

/** Ŵ = s·q in `outDType`. */
export function int8FakeQuant(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
  outDType: DType,
): GpuTensor {
  const pl = plan(w, st, p), v = gpu(st.v);
  using inf = info(ctx, pl, st);
  const out = ctx.alloc(w.shape, outDType);
  elementKernel(ctx, "flw_i8_apply", { w: w.kind, v: v.kind, out: out.kind }, pl, inf, w, v, out);
  return out;
}

/** Codes (q, before the zero point) and scales on the host. */
export async function int8QuantizeWeights(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
): Promise<{ elements: Float32Array; scales: Float32Array }> {
  const { rt } = ctx, pl = plan(w, st, p), v = gpu(st.v);
  using inf = info(ctx, pl, st);
  using el = ctx.alloc(w.shape, "f32");
  elementKernel(ctx, "flw_i8_elems", { w: w.kind, v: v.kind }, pl, inf, w, v, el);
  const read = async (t: GpuTensor) =>
    new Float32Array(await rt.read(t.storage.buffer, t.offset * 4, t.size * 4));
  const words = await read(inf);
  return {
    elements: await read(el),
    scales: Float32Array.from({ length: words.length / 4 }, (_, i) => words[4 * i]),
  };
}

/** dV, dα, dβ (int_quant.ts fakeQuantizeBackward, sym, f16 scale pieces). */
export function int8FakeQuantBackward(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
  dWq: GpuTensor,
): FakeQuantGrads {
  const { rt } = ctx, pl = plan(w, st, p), v = gpu(st.v), groups = pl.n * pl.perRow;
  if (dWq.size !== w.size) {
    throw new BackendError(`floatFakeQuantBackward: dŴ has ${dWq.size} elements, W ${w.size}`);
  }
  using inf = info(ctx, pl, st);
  using sums = ctx.alloc([groups * 2], "f32");
  const dv = ctx.alloc(w.shape, "f32"), dMax = ctx.alloc([groups], "f32"), dMin = ctx.alloc([groups], "f32");
  const kb = rt.kernel({
    family: "floatQuant",
    entry: "flw_i8_bwd",
    bindings: ["r", "r", "r", "r", "rw", "rw"],
    types: { w: w.kind, v: v.kind, dwq: dWq.kind },
  });
  const parts = [{ t: inf, per: pl.perRow * 4 }, { t: w, per: pl.k }, { t: v, per: pl.k }];
  const more = [{ t: dWq, per: pl.k }, { t: dv, per: pl.k }, { t: sums, per: pl.perRow * 2 }];
  forChunks(rt, pl.n, [...parts, ...more], (_r0, rows, b) => {
    // seg_len carries the base of the sums window (the uniform has no other free word).
    const prm = floatParams(pl.fmt, { ...pl, rows }, [
      b[1].base,
      b[2].base,
      0,
      0,
      0,
      b[3].base,
      b[0].base,
      b[4].base,
    ], {
      segLen: b[5].base,
    });
    rt.dispatch(kb, prm, b.map((x) => x.window), rows * pl.perRow);
  }, 1);
  const kf = rt.kernel({
    family: "floatQuant",
    entry: "flw_i8_finish",
    bindings: ["r", "r", "r", "r", "r", "r", "rw", "rw"],
    types: stateTypes(st),
  });
  const fparts = [...stateParts(st, pl.perRow), { t: inf, per: pl.perRow * 4 }, {
    t: sums,
    per: pl.perRow * 2,
  }];
  forChunks(
    rt,
    pl.n,
    [...fparts, { t: dMax, per: pl.perRow }, { t: dMin, per: pl.perRow }],
    (_r0, rows, b) => {
      const bases = [0, 0, b[0].base, b[1].base, b[2].base, 0, b[4].base, b[6].base];
      const prm = floatParams(pl.fmt, { ...pl, rows }, bases, {
        segLen: b[5].base,
        words: [b[3].base, b[7].base, USE_ALPHA],
      });
      rt.dispatch(kf, prm, b.map((x) => x.window), Math.ceil((rows * pl.perRow) / WG));
    },
    1,
  );
  return { dv, dMinScale: dMin, dMaxScale: dMax };
}

const isInt = (p: FloatQuantParams) => p.scheme.dataType === "int";

/** Backend.floatFakeQuant: INT8 weights here, the float formats in float_quant.ts. */
export function floatFakeQuant(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
  o: DType,
): GpuTensor {
  return (isInt(p) ? int8FakeQuant : floatFq)(ctx, w, st, p, o);
}

/** Backend.floatFakeQuantBackward, routed like {@link floatFakeQuant}. */
export function floatFakeQuantBackward(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
  dWq: GpuTensor,
): FakeQuantGrads {
  return (isInt(p) ? int8FakeQuantBackward : floatFqBackward)(ctx, w, st, p, dWq);
}

/** Backend.floatQuantizeWeights, routed like {@link floatFakeQuant}. */
export function floatQuantizeWeights(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
): Promise<{ elements: Float32Array; scales: Float32Array }> {
  return (isInt(p) ? int8QuantizeWeights : floatQw)(ctx, w, st, p);
}
