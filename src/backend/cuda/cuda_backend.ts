/**
 * The CUDA backend: the Backend ops as kernels from ffi/cuda (PTX loaded through the driver API)
 * and cuBLASLt products, all enqueued on one stream. Only read/readInt/quantizeWeights/sync wait
 * for the device; nothing inside an op synchronizes or allocates from the driver once the caching
 * allocator is warm, so a SignRound iteration can be captured as a CUDA graph (`captureGraph`).
 *
 * Precision: tensors keep the dtype they are created with, as on the CPU backend; kernels compute
 * in f32 (f64 where the reference's rounding must be reproduced: fake-quant, the sign-SGD step and
 * the MSE loss). `computeDType` is bf16 by default (AutoRound's autocast), f32 on request.
 *
 * @example
 * ```ts
 * using be = createCudaBackend({ computeDType: "f32" });
 * using x = be.upload(new Float32Array([1, 2, 3, 4]), [2, 2]);
 * console.log(await be.read(be.matmul(x, x)));
 * ```
 */
import { cudaMoeOps } from "./moe_ops.ts";
import type {
  AttentionShape,
  Backend,
  CapturedWork,
  DType,
  FakeQuantGrads,
  GgufBlockType,
  GgufQuantizeOptions,
  IntQuantParams,
  QuantState,
  Tensor,
} from "../backend.ts";
import type { QuantizedWeights } from "../../qmath/quantized.ts";
import { BackendError } from "../../errors.ts";
import { attentionBackward, attentionForward } from "./attention.ts";
import type { MemoryStats } from "./allocator.ts";
import { CudaGraph } from "./graph.ts";
import { matmul, type OpContext } from "./matmul.ts";
import * as mem from "./memory.ts";
import * as ops from "./ops.ts";
import * as quant from "./quant.ts";
import * as gguf from "./gguf.ts";
import { asBackendError, type CudaOptions, CudaRuntime } from "./runtime.ts";
import { aligned16, CudaTensor, DTYPE_BYTES, DTYPE_CODE, sizeOf } from "./tensor.ts";

export type { CudaOptions };

/** The backend; create it with createCudaBackend(). */
export class CudaBackend implements Backend, OpContext {
  readonly name = "cuda" as const;
  readonly device: string;
  readonly computeDType: "f32" | "bf16" | "f16";
  readonly allowTf32: boolean;
  /** @internal The device-side state (context, stream, allocator, modules, cuBLASLt). */
  readonly rt: CudaRuntime;
  private disposed = false;

  constructor(opts: CudaOptions = {}) {
    this.rt = CudaRuntime.create(opts);
    this.computeDType = opts.computeDType ?? "bf16";
    this.allowTf32 = opts.allowTf32 ?? false;
    const i = this.rt.ctx.info;
    const v = this.rt.driver.version(), det = opts.deterministic ? ", deterministic" : "";
    this.device = `${i.name} (sm_${i.computeCapability.join("")}, ${i.multiprocessors} SMs, ` +
      `${(i.totalBytes / 2 ** 30).toFixed(0)} GiB, driver CUDA ${Math.floor(v / 1000)}.${(v % 1000) / 10}, ` +
      `cuBLASLt ${this.rt.blas.version}, compute ${this.computeDType}${det})`;
    Object.assign(this, cudaMoeOps(this, (x) => this.t(x))); // optional FamilyOps (moe_ops.ts)
  }

  /** @internal A tensor of this backend (or of a view of it sharing its runtime, e.g. an instrumented one). */
  t(x: Tensor): CudaTensor {
    if (!(x instanceof CudaTensor) || (x.backend !== this && (x.backend as CudaBackend).rt !== this.rt)) {
      throw new BackendError(`tensor belongs to another backend`);
    }
    return x;
  }

  /** @internal A new uninitialized tensor from the caching allocator. */
  newTensor(shape: readonly number[], dtype: DType): CudaTensor {
    const bytes = sizeOf(shape) * DTYPE_BYTES[dtype];
    try {
      return new CudaTensor(this, [...shape], dtype, this.rt.memory.alloc(bytes), 0, this.rt.memory);
    } catch (e) {
      asBackendError(e, "device allocation");
    }
  }

  /** @internal dst ← src with dtype conversion (same size). */
  castInto(dst: CudaTensor, src: CudaTensor): void {
    if (dst.size !== src.size) throw new BackendError(`copy of ${src.size} elements into ${dst.size}`);
    if (dst.size === 0) return;
    if (dst.dtype === src.dtype) {
      if (dst.addr !== src.addr) this.rt.stream.copyDevice(dst.addr, src.addr, dst.bytes);
      return;
    }
    const vec = aligned16(dst.addr, src.addr);
    this.rt.begin().ptr(dst.addr).i32(DTYPE_CODE[dst.dtype]).ptr(src.addr).i32(DTYPE_CODE[src.dtype]).i64(
      dst.size,
    )
      .i32(vec ? 1 : 0);
    this.rt.launch(this.rt.fn("ew_cast"), [this.rt.gridFor(dst.size, 8)], [256]);
  }

  /** @internal x itself when it has `dtype`, else a converted copy (the caller disposes it). */
  castTo(x: CudaTensor, dtype: DType): CudaTensor {
    if (x.dtype === dtype) return x;
    const y = this.newTensor(x.shape, dtype);
    this.castInto(y, x);
    return y;
  }

  // ---- memory ---------------------------------------------------------------------------------
  upload(data: Float32Array | Float64Array, shape: readonly number[], dtype: DType = "f32"): Tensor {
    return mem.upload(this, data, shape, dtype);
  }
  uploadBytes(
    bytes: Uint8Array,
    src: "f32" | "f16" | "bf16",
    shape: readonly number[],
    dtype?: DType,
  ): Tensor {
    return mem.uploadBytes(this, bytes, src, shape, dtype);
  }
  readBytes(t: Tensor): Promise<Uint8Array> {
    return mem.readBytes(this, this.t(t));
  }
  writeBytes(dst: Tensor, bytes: Uint8Array): void {
    mem.writeBytes(this, this.t(dst), bytes);
  }
  groupMinMax(w: Tensor, groupSize: number): { wMin: Tensor; wMax: Tensor } {
    const W = this.t(w);
    const rows = W.shape[0], k = W.size / rows;
    const g = groupSize <= 0 || groupSize > k ? k : groupSize;
    const groups = rows * Math.ceil(k / g);
    const wMin = this.newTensor([groups], "f32"), wMax = this.newTensor([groups], "f32");
    ops.groupMinMax(this, W, g, wMin, wMax);
    return { wMin, wMax };
  }
  optRtnScales(w: Tensor, imatrix: Tensor | undefined, groupSize: number, bits: number): Tensor {
    const W = this.t(w);
    const rows = W.shape[0], k = W.size / rows;
    const g = groupSize <= 0 || groupSize > k ? k : groupSize;
    const out = this.newTensor([rows * Math.ceil(k / g)], "f32");
    ops.optRtnScales(this, W, imatrix ? this.t(imatrix) : undefined, g, bits, out);
    return out;
  }
  uploadInt(data: Int32Array, shape: readonly number[]): Tensor {
    return mem.uploadInt(this, data, shape);
  }
  full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
    return mem.full(this, shape, value, dtype);
  }
  async read(x: Tensor): Promise<Float32Array> {
    return await mem.read(this, this.t(x));
  }
  async readInt(x: Tensor): Promise<Int32Array> {
    return await mem.readInt(this, this.t(x));
  }
  view(x: Tensor, shape: readonly number[]): Tensor {
    const t = this.t(x);
    if (sizeOf(shape) !== t.size) throw new BackendError(`view [${shape}] of a tensor of shape [${t.shape}]`);
    return new CudaTensor(this, [...shape], t.dtype, t.block, t.byteOffset, null);
  }
  rows(x: Tensor, start: number, count: number): Tensor {
    const t = this.t(x);
    if (start < 0 || count < 0 || start + count > t.rows) {
      throw new BackendError(`rows ${start}+${count} of ${t.rows}`);
    }
    const off = t.byteOffset + start * t.cols * DTYPE_BYTES[t.dtype];
    return new CudaTensor(this, [count, ...t.shape.slice(1)], t.dtype, t.block, off, null);
  }
  copy(dst: Tensor, src: Tensor): void {
    this.castInto(this.t(dst), this.t(src));
  }
  gatherSamples(
    dst: Tensor,
    src: Tensor,
    indices: readonly number[] | Tensor,
    rowsPerSample: number,
    firstSample?: number,
  ): void {
    const d = this.t(dst), s = this.t(src);
    if (Array.isArray(indices)) mem.gatherSamples(this, d, s, indices, rowsPerSample, firstSample);
    else ops.gatherSamplesByTensor(this, d, s, this.t(indices as Tensor), rowsPerSample, firstSample);
  }

  // ---- dense math -----------------------------------------------------------------------------
  matmul(
    a: Tensor,
    b: Tensor,
    opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; out?: Tensor } = {},
  ): Tensor {
    return matmul(this, this.t(a), this.t(b), { ...opts, out: opts.out ? this.t(opts.out) : undefined });
  }
  add(a: Tensor, b: Tensor, out?: Tensor): Tensor {
    return ops.add(this, this.t(a), this.t(b), out ? this.t(out) : undefined);
  }
  addRowVector(x: Tensor, bias: Tensor): void {
    ops.addRowVector(this, this.t(x), this.t(bias));
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    return ops.rmsNorm(this, this.t(x), this.t(w), eps);
  }
  rmsNormBackward(x: Tensor, w: Tensor, dy: Tensor, eps: number): Tensor {
    return ops.rmsNormBackward(this, this.t(x), this.t(w), this.t(dy), eps);
  }
  rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    geo: Parameters<Backend["rope"]>[3],
    inverse = false,
  ): void {
    ops.rope(this, this.t(x), this.t(cos), this.t(sin), geo, inverse);
  }
  attention(q: Tensor, k: Tensor, v: Tensor, shape: AttentionShape): { out: Tensor; lse: Tensor } {
    return attentionForward(this, this.t(q), this.t(k), this.t(v), shape);
  }
  attentionBackward(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    dOut: Tensor,
    shape: AttentionShape,
  ): { dq: Tensor; dk: Tensor; dv: Tensor } {
    return attentionBackward(
      this,
      this.t(q),
      this.t(k),
      this.t(v),
      this.t(out),
      this.t(lse),
      this.t(dOut),
      shape,
    );
  }
  siluMul(g: Tensor, u: Tensor): Tensor {
    return ops.siluMul(this, this.t(g), this.t(u));
  }
  siluMulBackward(
    g: Tensor,
    u: Tensor,
    dh: Tensor,
    opts?: { overwrite?: boolean },
  ): { dg: Tensor; du: Tensor } {
    return ops.siluMulBackward(this, this.t(g), this.t(u), this.t(dh), opts?.overwrite ?? false);
  }
  embedding(table: Tensor, ids: Tensor): Tensor {
    return ops.embedding(this, this.t(table), this.t(ids));
  }
  crossEntropy(logits: Tensor, targets: Tensor): Tensor {
    return ops.crossEntropy(this, this.t(logits), this.t(targets));
  }
  argmaxRows(x: Tensor): Tensor {
    return ops.argmaxRows(this, this.t(x));
  }

  // ---- quantization ---------------------------------------------------------------------------
  fakeQuant(w: Tensor, state: QuantState, p: IntQuantParams, outDType?: DType): Tensor {
    return quant.fakeQuant(this, this.t(w), state, p, (x) => this.t(x), outDType);
  }
  fakeQuantBackward(w: Tensor, state: QuantState, p: IntQuantParams, dWq: Tensor): FakeQuantGrads {
    return quant.fakeQuantBackward(this, this.t(w), state, p, this.t(dWq), (x) => this.t(x));
  }
  async ggufQuantize(w: Tensor, type: GgufBlockType, opts: GgufQuantizeOptions): Promise<Uint8Array> {
    mem.noCapture(this.rt, "ggufQuantize");
    try {
      const r = await gguf.ggufQuantize(this, this.t(w), type, opts, (x) => this.t(x));
      this.rt.checkDeviceErrors();
      return r;
    } catch (e) {
      asBackendError(e, "CUDA");
    }
  }
  async quantizeWeights(w: Tensor, state: QuantState, p: IntQuantParams): Promise<QuantizedWeights> {
    mem.noCapture(this.rt, "quantizeWeights");
    try {
      const r = await quant.quantizeWeights(this, this.t(w), state, p, (x) => this.t(x));
      this.rt.checkDeviceErrors();
      return r;
    } catch (e) {
      asBackendError(e, "CUDA");
    }
  }

  // ---- training -------------------------------------------------------------------------------
  mseLoss(y: Tensor, target: Tensor, mask: Tensor | undefined, scale: number): { loss: Tensor; dy: Tensor } {
    return ops.mseLoss(this, this.t(y), this.t(target), mask ? this.t(mask) : undefined, scale);
  }
  signSgdStep(p: Tensor, g: Tensor, lr: number | Tensor, clamp?: { lo: number; hi: number }): void {
    ops.signSgdStep(this, this.t(p), this.t(g), typeof lr === "number" ? lr : this.t(lr), clamp);
  }
  accumulate(acc: Tensor, x: Tensor, alpha = 1): void {
    ops.accumulate(this, this.t(acc), this.t(x), alpha);
  }
  accumulateColumnSquares(acc: Tensor, x: Tensor): void {
    ops.accumulateColumnSquares(this, this.t(acc), this.t(x));
  }
  keepBest(loss: Tensor, best: Tensor, pairs: readonly (readonly [src: Tensor, dst: Tensor])[]): void {
    ops.keepBest(this, this.t(loss), this.t(best), pairs.map(([s, d]) => [this.t(s), this.t(d)] as const));
  }

  async sync(): Promise<void> {
    mem.noCapture(this.rt, "sync");
    try {
      await this.rt.stream.synchronize();
    } catch (e) {
      asBackendError(e, "CUDA");
    }
    this.rt.checkDeviceErrors();
  }

  /** Free device memory plus what the caching allocator holds for reuse. */
  freeMemory(): number {
    return this.rt.ctx.memInfo().free + this.rt.memory.cachedBytes;
  }

  /**
   * Backend.capture: the work `fn` enqueues becomes a CUDA graph (see captureGraph); `replay()`
   * re-issues it with one launch, `[Symbol.dispose]()` waits for the device and frees its memory.
   */
  capture(fn: () => void): CapturedWork {
    return this.captureGraph(fn);
  }

  // ---- CUDA only ------------------------------------------------------------------------------
  /**
   * Capture the work `fn` enqueues into a CUDA graph instead of running it; `replay()` then runs
   * it again with one launch. Tensors `fn` allocates come from a pool the graph keeps (blocks the
   * allocator had cached are taken over first); tensors freed during the capture stay reserved
   * until the graph is disposed. Values passed as numbers (learning rate, sample indices) are
   * frozen into the graph; pass tensors (signSgdStep's lr, gatherSamples' indices) for values that
   * change between replays.
   */
  captureGraph(fn: () => void): CudaGraph {
    return CudaGraph.capture(this.rt, fn);
  }

  /** Fill `x` with uniform random values in [lo, hi) generated on the device (benchmarks). */
  fillRandom(x: Tensor, lo: number, hi: number, seed = 1): void {
    const t = this.t(x);
    if (t.size === 0) return;
    this.rt.begin().ptr(t.addr).i32(DTYPE_CODE[t.dtype]).i64(t.size).ptr(BigInt(seed >>> 0) * 0x100000001n)
      .f32(lo).f32(hi);
    this.rt.launch(this.rt.fn("ew_fill_random"), [this.rt.gridFor(t.size)], [256]);
  }

  /**
   * Median device milliseconds of one call of `fn` (events around `reps` calls, `trials` times,
   * after one warm-up call). For benchmarks; waits for the device.
   */
  timeMs(fn: () => void, reps = 10, trials = 5): number {
    mem.noCapture(this.rt, "timeMs");
    const s = this.rt.stream;
    fn();
    s.synchronizeBlocking();
    using a = this.rt.ctx.createEvent(true);
    using b = this.rt.ctx.createEvent(true);
    const times: number[] = [];
    for (let t = 0; t < trials; t++) {
      a.record(s);
      for (let i = 0; i < reps; i++) fn();
      b.record(s);
      times.push(b.elapsedSince(a) / reps);
    }
    times.sort((x, y) => x - y);
    return times[Math.floor(times.length / 2)];
  }

  /** Bytes the allocator holds (DeviceMemory.stats). */
  memoryStats(): MemoryStats {
    return this.rt.memory.stats();
  }

  /** The most memory obtained from the driver at once (tensors, caches, graph pools). */
  peakMemoryBytes(): number {
    return this.rt.memory.peakDriverBytes;
  }

  /** Return cached device memory to the driver (waits for the device). */
  releaseCachedMemory(): void {
    this.rt.stream.synchronizeBlocking();
    this.rt.memory.trim();
  }

  [Symbol.dispose](): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt[Symbol.dispose]();
  }
}

/** Create the CUDA backend or throw a BackendError saying in one line why it cannot run here. */
export function createCudaBackend(opts: CudaOptions = {}): CudaBackend {
  return new CudaBackend(opts);
}
