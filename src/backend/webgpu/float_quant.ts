/**
 * Dispatchers of wgsl/float_quant.wgsl: the float weight quantizers (MX, NVFP4, FP8 E4M3; issue 17)
 * with SignRound's v and β, their straight-through backward and the export of element values and
 * scales. The math is src/qmath/float_tune.ts's (the CPU backend's reference), which the kernels
 * match bit for bit in the forward. Work is split into row chunks that fit one binding.
 */
import type { DType, FakeQuantGrads, FloatQuantParams, QuantState } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { mxFormat } from "../../qmath/float_quant.ts";
import { FP8_MIN_SCALE } from "../../qmath/float_groups.ts";
import type { GpuContext } from "./context.ts";
import { fill } from "./memory_ops.ts";
import { Params } from "./params.ts";
import { type Bound, forChunks, gpu, type GpuTensor } from "./tensor.ts";

const WG = 256;

/** Format fields of the WGSL uniform shared by the weight and activation kernels. */
export interface FloatFormat {
  /** 0 MX, 1 NVFP4, 2 FP8 E4M3. */
  kind: number;
  ebits: number;
  mbits: number;
  emax: number;
  maxNorm: number;
  rceil: boolean;
  /** NVFP4 global scale and fl32(1/gs) (get_reciprocal: 0 for 0). */
  gs: number;
  rgs: number;
  /** A stored FP8 scale used as is (0 = derive from the maximum). */
  fixed: number;
}

/** The format of an MX element type name (`mx_fp`, `mx_int`) and bit width. */
export function mxFloatFormat(dataType: string, bits: number, rceil: boolean): FloatFormat {
  const f = mxFormat(`${dataType}${bits}`, bits);
  return {
    kind: 0,
    ebits: f.ebits,
    mbits: f.mbits,
    emax: f.emax,
    maxNorm: f.maxNorm,
    rceil,
    gs: 0,
    rgs: 0,
    fixed: 0,
  };
}

/** NVFP4 with global scale gs, or FP8 E4M3 (optionally with a fixed scale). */
export function nvOrFp8Format(kind: 1 | 2, gs = 0, fixed = 0): FloatFormat {
  const rgs = gs === 0 ? 0 : Math.fround(1 / gs);
  return { kind, ebits: 0, mbits: 0, emax: 0, maxNorm: 0, rceil: false, gs, rgs, fixed };
}

/** The uniform (FlParams / ActParams: the same first 28 words). */
export function floatParams(
  f: FloatFormat,
  l: { rows: number; k: number; g: number; perRow: number },
  bases: readonly number[],
  extra: {
    segLen?: number;
    finish?: boolean;
    stat?: boolean;
    flags?: number;
    actMax?: number;
    words?: number[];
  } = {},
): Params {
  const b = [...bases, 0, 0, 0, 0, 0, 0, 0, 0].slice(0, 8);
  const p = new Params().u(l.rows).u(l.k).u(l.g).u(l.perRow)
    .u(f.kind).u(f.ebits).u(f.mbits).u(f.emax)
    .f(f.maxNorm).f(f.gs).f(f.rgs).f(FP8_MIN_SCALE);
  for (const x of b) p.u(x);
  p.u(0).u(f.rceil ? 1 : 0).f(f.fixed).u(extra.segLen ?? 0).u(extra.finish ? 1 : 0);
  // Words 25–27: the activation kernels' stat / flags / actMax, or INT8 weights' α and dα bases and use_alpha.
  if (extra.words) return p.u(extra.words[0]).u(extra.words[1]).u(extra.words[2] ?? 0);
  return p.u(extra.stat ? 1 : 0).u(extra.flags ?? 0).f(extra.actMax ?? 0);
}

/** Geometry of one float-quantized weight (also the INT8 kernels', int8_weights.ts). */
export interface Plan {
  fmt: FloatFormat;
  n: number;
  k: number;
  g: number;
  /** Groups per row; 0 = one group for the whole tensor (FP8 per tensor). */
  perRow: number;
}

function plan(w: GpuTensor, st: QuantState, p: FloatQuantParams): Plan {
  const s = p.scheme, n = w.rows, k = w.cols;
  // The kernels take β clamped into [0, 1] and no initial coefficient: NVFP4's default opt-RTN and
  // SignRoundV2 (β in [0, 2] times a searched init scale) are CPU-only so far.
  if (st.initScale || p.signRoundV2) {
    throw new BackendError(
      "NVFP4's optimized RTN and --enable_alg_ext run on the CPU backend only so far: use --device cpu " +
        "(or --disable_opt_rtn for plain NVFP4 RTN)",
    );
  }
  const fixed = (g: number) => {
    if (s.groupSize !== g || k % g !== 0) {
      throw new BackendError(`${s.dataType} needs group size ${g} dividing k (got ${s.groupSize}, k ${k})`);
    }
  };
  let pl: Plan;
  if (s.dataType === "mx_fp" || s.dataType === "mx_int") {
    fixed(32);
    pl = { fmt: mxFloatFormat(s.dataType, s.bits, false), n, k, g: 32, perRow: k / 32 };
  } else if (s.dataType === "nv_fp") {
    fixed(16);
    if (p.globalScale === undefined) {
      throw new BackendError(
        "WebGPU NVFP4 weights need the global scale in FloatQuantParams (use --device cpu)",
      );
    }
    pl = { fmt: nvOrFp8Format(1, p.globalScale), n, k, g: 16, perRow: k / 16 };
  } else if (s.dataType === "fp") {
    const g = s.groupSize <= 0 || s.groupSize > k ? k : s.groupSize;
    if (s.groupSize > 0 && k % g !== 0) throw new BackendError(`fp group ${g} must divide k ${k}`);
    pl = { fmt: nvOrFp8Format(2), n, k, g, perRow: s.groupSize === 0 ? 0 : k / g };
  } else {
    throw new BackendError(`no WebGPU float kernel for data type ${s.dataType} (use --device cpu)`);
  }
  const groups = pl.perRow === 0 ? 1 : n * pl.perRow;
  if (st.maxScale.size !== groups || st.wMin.size !== groups || st.v.size !== n * k) {
    throw new BackendError(
      `float quant state does not match a [${n}, ${k}] weight with group ${s.groupSize}`,
    );
  }
  return pl;
}

/** Row chunks of an element kernel: the state tensors per group (whole for per tensor) plus [rows, K] parts. */
function elementChunks(
  ctx: GpuContext,
  pl: Plan,
  st: QuantState,
  elems: readonly GpuTensor[],
  emit: (r0: number, rows: number, b: Bound[]) => void,
): void {
  const per = pl.perRow;
  const state = [st.maxScale, st.wMin, st.wMax].map((t) => ({ t: gpu(t), per }));
  forChunks(ctx.rt, pl.n, [...state, ...elems.map((t) => ({ t, per: pl.k }))], emit, 1);
}

function kernelTypes(st: QuantState, extra: Record<string, GpuTensor>) {
  const types: Record<string, GpuTensor["kind"]> = {
    ms: gpu(st.maxScale).kind,
    wmn: gpu(st.wMin).kind,
    wmx: gpu(st.wMax).kind,
  };
  for (const [k, t] of Object.entries(extra)) types[k] = t.kind;
  return types;
}

/** Ŵ of a float scheme in `outDType` (SCHEMES.md § 4–6; float_tune.ts floatFakeQuantRows). */
export function floatFakeQuant(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
  outDType: DType,
): GpuTensor {
  const { rt } = ctx, pl = plan(w, st, p), v = gpu(st.v);
  const out = ctx.alloc(w.shape, outDType);
  const k = rt.kernel({
    family: "floatQuant",
    entry: "flw_apply",
    bindings: ["r", "r", "r", "r", "r", "rw"],
    types: kernelTypes(st, { w, v, out }),
  });
  elementChunks(ctx, pl, st, [w, v, out], (_r0, rows, b) => {
    const prm = floatParams(pl.fmt, { ...pl, rows }, [
      b[3].base,
      b[4].base,
      b[0].base,
      b[1].base,
      b[2].base,
      b[5].base,
    ]);
    rt.dispatch(k, prm, b.map((x) => x.window), Math.ceil((rows * pl.k) / WG));
  });
  return out;
}

/** Straight-through gradients (float_tune.ts floatFakeQuantBackwardRows): dV, dβ; dα is all zero. */
export function floatFakeQuantBackward(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
  dWq: GpuTensor,
): FakeQuantGrads {
  const { rt } = ctx, pl = plan(w, st, p), v = gpu(st.v);
  if (dWq.size !== w.size) {
    throw new BackendError(`floatFakeQuantBackward: dŴ has ${dWq.size} elements, W ${w.size}`);
  }
  const groups = pl.perRow === 0 ? 1 : pl.n * pl.perRow;
  const dv = ctx.alloc(w.shape, "f32"), dMax = ctx.alloc([groups], "f32"), dMin = ctx.alloc([groups], "f32");
  using share = ctx.alloc(w.shape, "f32");
  const kb = rt.kernel({
    family: "floatQuant",
    entry: "flw_bwd",
    bindings: ["r", "r", "r", "r", "r", "r", "rw", "rw"],
    types: kernelTypes(st, { w, v, dwq: dWq }),
  });
  elementChunks(ctx, pl, st, [w, v, dWq, dv, share], (_r0, rows, b) => {
    const bases = [b[3].base, b[4].base, b[0].base, b[1].base, b[2].base, b[5].base, b[7].base, b[6].base];
    rt.dispatch(
      kb,
      floatParams(pl.fmt, { ...pl, rows }, bases),
      b.map((x) => x.window),
      Math.ceil((rows * pl.k) / WG),
    );
  });
  const ks = rt.kernel({
    family: "floatQuant",
    entry: "flw_sum",
    bindings: ["r", "r", "r", "r", "rw"],
    types: kernelTypes(st, {}),
  });
  // Segments: a group (MX, NV, FP8 per row) or, for FP8 per tensor, a row whose partials a second pass sums.
  const segPerRow = pl.perRow === 0 ? 1 : pl.perRow, segLen = pl.k / segPerRow;
  using partial = ctx.alloc([pl.perRow === 0 ? pl.n : 1], "f32");
  const dst = pl.perRow === 0 ? partial : dMax;
  const state = [st.maxScale, st.wMin, st.wMax].map((t) => ({ t: gpu(t), per: pl.perRow }));
  forChunks(rt, pl.n, [...state, { t: share, per: pl.k }, { t: dst, per: segPerRow }], (_r0, rows, b) => {
    const bases = [0, 0, b[0].base, b[1].base, b[2].base, 0, b[3].base, b[4].base];
    const prm = floatParams(pl.fmt, { ...pl, rows }, bases, { segLen, finish: pl.perRow !== 0 });
    rt.dispatch(ks, prm, b.map((x) => x.window), rows * segPerRow);
  }, 1);
  if (pl.perRow === 0) {
    forChunks(rt, 1, [...state, { t: partial, per: pl.n }, { t: dMax, per: 1 }], (_s, _c, b) => {
      const bases = [0, 0, b[0].base, b[1].base, b[2].base, 0, b[3].base, b[4].base];
      const prm = floatParams(pl.fmt, { ...pl, rows: 1 }, bases, { segLen: pl.n, finish: true });
      rt.dispatch(ks, prm, b.map((x) => x.window), 1);
    }, 1);
  }
  fill(ctx, dMin, 0);
  return { dv, dMinScale: dMin, dMaxScale: dMax };
}

/** Element values and per-group stored scales (MX exponent, NV E4M3 s8, FP8 scale) on the host. */
export async function floatQuantizeWeights(
  ctx: GpuContext,
  w: GpuTensor,
  st: QuantState,
  p: FloatQuantParams,
): Promise<{ elements: Float32Array; scales: Float32Array }> {
  const { rt } = ctx, pl = plan(w, st, p), v = gpu(st.v);
  const groups = pl.perRow === 0 ? 1 : pl.n * pl.perRow;
  using elems = ctx.alloc(w.shape, "f32");
  using scales = ctx.alloc([groups], "f32");
  const ke = rt.kernel({
    family: "floatQuant",
    entry: "flw_elems",
    bindings: ["r", "r", "r", "r", "r", "rw"],
    types: kernelTypes(st, { w, v }),
  });
  elementChunks(ctx, pl, st, [w, v, elems], (_r0, rows, b) => {
    const bases = [b[3].base, b[4].base, b[0].base, b[1].base, b[2].base, 0, b[5].base];
    rt.dispatch(
      ke,
      floatParams(pl.fmt, { ...pl, rows }, bases),
      b.map((x) => x.window),
      Math.ceil((rows * pl.k) / WG),
    );
  });
  const kg = rt.kernel({
    family: "floatQuant",
    entry: "flw_scales",
    bindings: ["r", "r", "r", "rw"],
    types: kernelTypes(st, {}),
  });
  const state = [st.maxScale, st.wMin, st.wMax].map((t) => ({ t: gpu(t), per: pl.perRow }));
  forChunks(
    rt,
    pl.perRow === 0 ? 1 : pl.n,
    [...state, { t: scales, per: Math.max(pl.perRow, 1) }],
    (_r0, rows, b) => {
      const bases = [0, 0, b[0].base, b[1].base, b[2].base, 0, 0, b[3].base];
      const prm = floatParams(pl.fmt, { ...pl, rows }, bases);
      rt.dispatch(kg, prm, b.map((x) => x.window), Math.ceil((rows * Math.max(pl.perRow, 1)) / WG));
    },
    1,
  );
  const read = async (t: GpuTensor) =>
    new Float32Array(await rt.read(t.storage.buffer, t.offset * 4, t.size * 4));
  return { elements: await read(elems), scales: await read(scales) };
}
