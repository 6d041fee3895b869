/**
 * Fake-quant dispatch (ffi/cuda/fake_quant.cu): forward, straight-through backward with the per-group
 * α/β gradients, and the export codes. The kernels mirror src/qmath/int_quant.ts; this file checks
 * the state against the weight, passes the scale rounding mode and threshold exactly as the CPU
 * backend derives them, and picks the threads-per-group.
 */
import type { DType, FakeQuantGrads, IntQuantParams, QuantState, Tensor } from "../backend.ts";
import type { QuantizedWeights } from "../../qmath/quantized.ts";
import { BackendError } from "../../errors.ts";
import { roundBf16 } from "../../tensor/dtype.ts";
import type { OpContext } from "./matmul.ts";
import { aligned16, CudaTensor, DTYPE_CODE } from "./tensor.ts";

const SCALE_MODE = { f16: 0, bf16: 1, f32: 2 } as const;

interface Prepared {
  n: number;
  k: number;
  g: number;
  G: number;
  tensors: {
    v: CudaTensor;
    minS: CudaTensor;
    maxS: CudaTensor;
    wMin: CudaTensor;
    wMax: CudaTensor;
    init?: CudaTensor;
  };
  /** f32 copies made for state tensors of another dtype; disposed after the launch. */
  temps: CudaTensor[];
  tpg: number;
  thr: number;
}

/**
 * Threads per group: a power of two ≤ 32 giving each thread about 32 elements. Fewer threads per
 * group puts several groups in a warp, so the f64 group-scale math (the same instructions for all
 * lanes) is shared by several groups instead of repeated for one: at g = 128 one group per warp
 * made that math, not memory, the limit (1.1 TB/s).
 */
function threadsPerGroup(g: number): number {
  let t = 1;
  while (t < 32 && t * 32 < g) t *= 2;
  return t;
}

function prepare(
  op: OpContext,
  w: CudaTensor,
  state: QuantState,
  p: IntQuantParams,
  as: (x: Tensor) => CudaTensor,
): Prepared {
  const n = w.rows, k = w.cols, g = p.groupSize;
  if (!(g > 0) || !Number.isInteger(g)) throw new BackendError(`group size ${g} is not a positive integer`);
  const G = Math.ceil(k / g);
  const temps: CudaTensor[] = [];
  const f32 = (x: Tensor, expect: number, what: string): CudaTensor => {
    const t = as(x);
    if (t.size !== expect) {
      throw new BackendError(
        `quant state ${what} has ${t.size} elements; a [${n}, ${k}] weight with group ${g} needs ${expect}`,
      );
    }
    const c = op.castTo(t, "f32");
    if (c !== t) temps.push(c);
    return c;
  };
  const tensors = {
    v: f32(state.v, n * k, "v"),
    minS: f32(state.minScale, n * G, "minScale"),
    maxS: f32(state.maxScale, n * G, "maxScale"),
    wMin: f32(state.wMin, n * G, "wMin"),
    wMax: f32(state.wMax, n * G, "wMax"),
    init: state.initScale ? f32(state.initScale, n * G, "initScale") : undefined,
  };
  // roundScale(scaleThresh) of the CPU backend (f32 precision): 1e-8 for f32 scales, else 1e-5.
  const thr = p.scaleDType === "f16"
    ? Math.f16round(1e-5)
    : p.scaleDType === "bf16"
    ? roundBf16(1e-5)
    : Math.fround(1e-8);
  return { n, k, g, G, tensors, temps, tpg: threadsPerGroup(g), thr };
}

function pushCommon(op: OpContext, w: CudaTensor, pr: Prepared, p: IntQuantParams, extra: bigint[]): void {
  const t = pr.tensors;
  const vec = pr.k % 4 === 0 && pr.g % 4 === 0 &&
    aligned16(w.addr, t.v.addr, ...extra);
  op.rt.args
    .ptr(w.addr).i32(DTYPE_CODE[w.dtype]).ptr(t.v.addr).ptr(t.minS.addr).ptr(t.maxS.addr).ptr(t.wMin.addr)
    .ptr(t.wMax.addr).ptr(t.init?.addr ?? 0n).i64(pr.n).i64(pr.k).i32(pr.g).i32(pr.G).i32(p.bits)
    .i32(p.sym ? 1 : 0).i32(SCALE_MODE[p.scaleDType]).f64(pr.thr).i32(pr.tpg).i32(vec ? 1 : 0);
}

/**
 * Whether the streaming kernels take this layout: groups of 8…256 columns that tile K exactly
 * and span a power-of-two number of 8-element chunks (so a group's threads sit in one warp).
 */
function streams(pr: Prepared, ...addrs: bigint[]): boolean {
  const lanes = pr.g / 8;
  return pr.g % 8 === 0 && pr.g <= 256 && 32 % lanes === 0 && pr.k % pr.g === 0 && aligned16(...addrs);
}

/** Per-group (scale, zero point, f64 divisor) 16-byte records for the streaming kernels. */
function groupParams(op: OpContext, pr: Prepared, p: IntQuantParams): CudaTensor {
  const t = pr.tensors;
  const params = op.newTensor([pr.n * pr.G * 4], "f32");
  op.rt.begin().ptr(params.addr).ptr(t.minS.addr).ptr(t.maxS.addr).ptr(t.wMin.addr).ptr(t.wMax.addr)
    .ptr(t.init?.addr ?? 0n).i64(pr.n * pr.G).i32(p.bits).i32(p.sym ? 1 : 0).i32(SCALE_MODE[p.scaleDType])
    .f64(pr.thr);
  op.rt.launch(op.rt.fn("fq_group_params"), [op.rt.gridFor(pr.n * pr.G)], [256]);
  return params;
}

function streamArgs(op: OpContext, w: CudaTensor, pr: Prepared, p: IntQuantParams, params: CudaTensor): void {
  op.rt.args.ptr(w.addr).i32(DTYPE_CODE[w.dtype]).ptr(pr.tensors.v.addr).ptr(params.addr).i64(pr.n).i32(pr.k)
    .i32(pr.g).i32(p.bits).i32(p.sym ? 1 : 0);
}

function streamGrid(pr: Prepared): [number, number] {
  return [Math.ceil(pr.k / 8 / 256), Math.min(pr.n, 65535)];
}

function launchGrid(pr: Prepared): [number] {
  return [Math.max(1, Math.ceil((pr.n * pr.G * pr.tpg) / 256))];
}

function checkBits(p: IntQuantParams): void {
  if (!(p.bits >= 1 && p.bits <= 8)) {
    throw new BackendError(`${p.bits}-bit integer quantization is not supported`);
  }
  if (p.signRoundV2) {
    throw new BackendError(
      "--enable_alg_ext (SignRoundV2) runs on the CPU backend only so far: use --device cpu",
    );
  }
}

/** Ŵ in `outDType` (default: w's dtype). */
export function fakeQuant(
  op: OpContext,
  w: CudaTensor,
  state: QuantState,
  p: IntQuantParams,
  as: (x: Tensor) => CudaTensor,
  outDType?: DType,
): CudaTensor {
  checkBits(p);
  const pr = prepare(op, w, state, p, as);
  const out = op.newTensor(w.shape, outDType ?? w.dtype);
  if (w.size > 0 && streams(pr, w.addr, pr.tensors.v.addr, out.addr)) {
    using params = groupParams(op, pr, p);
    op.rt.begin().ptr(out.addr).i32(DTYPE_CODE[out.dtype]).ptr(0n);
    streamArgs(op, w, pr, p, params);
    op.rt.launch(op.rt.fn("fq_forward_stream"), streamGrid(pr), [256]);
  } else if (w.size > 0) {
    op.rt.begin().ptr(out.addr).i32(DTYPE_CODE[out.dtype]).ptr(0n).ptr(0n).ptr(0n);
    pushCommon(op, w, pr, p, [out.addr]);
    op.rt.launch(op.rt.fn("fq_forward"), launchGrid(pr), [256]);
  }
  for (const t of pr.temps) t[Symbol.dispose]();
  return out;
}

/** dV (f32 [N, K]) and dα, dβ (f32 [N·G]) for dŴ. */
export function fakeQuantBackward(
  op: OpContext,
  w: CudaTensor,
  state: QuantState,
  p: IntQuantParams,
  dWq: CudaTensor,
  as: (x: Tensor) => CudaTensor,
): FakeQuantGrads {
  checkBits(p);
  const pr = prepare(op, w, state, p, as);
  if (dWq.size !== w.size) {
    throw new BackendError(`fakeQuantBackward: dŴ has ${dWq.size} elements, W ${w.size}`);
  }
  const dv = op.newTensor(w.shape, "f32");
  const dMin = op.newTensor([pr.n * pr.G], "f32"), dMax = op.newTensor([pr.n * pr.G], "f32");
  if (w.size > 0 && streams(pr, w.addr, pr.tensors.v.addr, dv.addr, dWq.addr)) {
    const rt = op.rt, t = pr.tensors;
    using params = groupParams(op, pr, p);
    using partial = op.newTensor([pr.n * pr.G * 6], "f32"); // 3 f64 per group
    rt.begin().ptr(dv.addr).ptr(partial.addr).ptr(dWq.addr).i32(DTYPE_CODE[dWq.dtype]);
    streamArgs(op, w, pr, p, params);
    rt.launch(rt.fn("fq_backward_stream"), streamGrid(pr), [256]);
    rt.begin().ptr(dMin.addr).ptr(dMax.addr).ptr(partial.addr).ptr(t.minS.addr).ptr(t.maxS.addr).ptr(
      t.wMin.addr,
    )
      .ptr(t.wMax.addr).ptr(t.init?.addr ?? 0n).i64(pr.n * pr.G).i32(p.bits).i32(p.sym ? 1 : 0)
      .i32(SCALE_MODE[p.scaleDType]).f64(pr.thr);
    rt.launch(rt.fn("fq_finalize"), [rt.gridFor(pr.n * pr.G)], [256]);
  } else if (w.size > 0) {
    op.rt.begin().ptr(dv.addr).ptr(dMin.addr).ptr(dMax.addr).ptr(dWq.addr).i32(DTYPE_CODE[dWq.dtype]);
    pushCommon(op, w, pr, p, [dv.addr, dWq.addr]);
    op.rt.launch(op.rt.fn("fq_backward"), launchGrid(pr), [256]);
  }
  for (const t of pr.temps) t[Symbol.dispose]();
  return { dv, dMinScale: dMin, dMaxScale: dMax };
}

/** Integer codes, scales and zero points on the host (waits for the device). */
export async function quantizeWeights(
  op: OpContext,
  w: CudaTensor,
  state: QuantState,
  p: IntQuantParams,
  as: (x: Tensor) => CudaTensor,
): Promise<QuantizedWeights> {
  checkBits(p);
  const pr = prepare(op, w, state, p, as);
  const rt = op.rt;
  using out = op.newTensor(w.shape, "f32");
  using codes = op.newTensor([w.size], "u8");
  using scales = op.newTensor([pr.n * pr.G], "f32");
  using zeros = op.newTensor([pr.n * pr.G], "i32");
  if (w.size > 0) {
    rt.begin().ptr(out.addr).i32(DTYPE_CODE.f32).ptr(codes.addr).ptr(scales.addr).ptr(zeros.addr);
    pushCommon(op, w, pr, p, [out.addr]);
    rt.launch(rt.fn("fq_forward"), launchGrid(pr), [256]);
  }
  for (const t of pr.temps) t[Symbol.dispose]();
  const res: QuantizedWeights = {
    codes: new Uint8Array(w.size),
    scales: new Float32Array(pr.n * pr.G),
    zeros: new Int32Array(pr.n * pr.G),
  };
  await rt.stream.synchronize();
  rt.stream.copyToHost(res.codes, codes.addr);
  rt.stream.copyToHost(res.scales, scales.addr);
  rt.stream.copyToHost(res.zeros, zeros.addr);
  return res;
}
