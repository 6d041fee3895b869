/**
 * The WebGPU backend: every Backend op as WGSL kernels (wgsl/), on any GPU Deno's WebGPU reaches
 * (Vulkan, Metal, DX12; Mesa's llvmpipe in CI).
 *
 * Storage (storage.ts): f32; f16 natively with `shader-f16`, else as f16-rounded f32; bf16 as
 * bf16-rounded f32 (WGSL has no bf16); i32; u8 as one u32 per element. `computeDType` is f16 when
 * the device has `shader-f16` and an f16 matmul self-check passes at startup, else f32; pass
 * `computeDType` to force one (options.ts).
 */
import type {
  ActQuantArgs,
  AttentionShape,
  Backend,
  CapturedWork,
  DType,
  FakeQuantGrads,
  FloatQuantParams,
  GgufBlockType,
  GgufQuantizeOptions,
  IntQuantParams,
  QuantState,
  Tensor,
} from "../backend.ts";
import type { QuantizedWeights } from "../../qmath/quantized.ts";
import { BackendError, DeviceError } from "../../errors.ts";
import { type GpuContext, numel } from "./context.ts";
import { GpuRuntime } from "./runtime.ts";
import { dtypeFromEnv, f16Accurate, limitsFromEnv, type WebGpuOptions } from "./options.ts";
import { decodeFloat, decodeInt, encodeHost, isFloat, storageKind } from "./storage.ts";
import { gpu, GpuStorage, GpuTensor } from "./tensor.ts";
import { runMatmul } from "./matmul.ts";
import * as mem from "./memory_ops.ts";
import * as math from "./math_ops.ts";
import * as attn from "./attention.ts";
import * as fq from "./fake_quant.ts";
import * as aq from "./act_quant.ts";
import * as fl from "./int8_weights.ts";
import * as loss from "./loss_ops.ts";
import * as gguf from "./gguf.ts";
import * as search from "./int_search.ts";

export type { WebGpuOptions };

/** Backend methods that record device work: each names itself in the runtime's error messages. */
// (A word list: one name per line would push this file past the 400-line limit.)
const TAGGED_OPS = `
  upload uploadInt full read readInt copy gatherSamples matmul add addRowVector rmsNorm
  rmsNormBackward rope attention attentionBackward siluMul siluMulBackward embedding crossEntropy
  argmaxRows fakeQuant fakeQuantBackward quantizeWeights mseLoss signSgdStep accumulate
  accumulateColumnSquares keepBest ggufQuantize groupMinMax optRtnScales floatFakeQuant
  floatFakeQuantBackward floatQuantizeWeights actFakeQuant actFakeQuantBackward geluTanhMul
  geluTanhMulBackward tanhSoftcap
`.trim().split(/\s+/);

/** The WebGPU implementation of Backend. Create with `await WebGpuBackend.create()`. */
export class WebGpuBackend implements Backend, GpuContext {
  readonly name = "webgpu" as const;
  readonly device: string;

  private poison = false;
  private f16Partials = false;

  private constructor(readonly rt: GpuRuntime, public computeDType: "f32" | "f16") {
    this.device = `WebGPU ${rt.description}${rt.nativeF16 ? " (shader-f16)" : ""}`;
    // Wrap each op so the runtime knows which one a dispatch, upload or buffer belongs to.
    const self = this as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of TAGGED_OPS) {
      const f = self[name];
      self[name] = (...a: unknown[]) => {
        const outer = rt.op;
        rt.op = outer || name;
        try {
          return f.apply(this, a);
        } finally {
          rt.op = outer;
        }
      };
    }
  }

  /** The device's maxBufferSize (or the lowered test limit): the largest one tensor can be. */
  get maxTensorBytes(): number {
    return this.rt.maxBufferSize;
  }

  /**
   * Open the default adapter. Throws BackendError when no adapter exists.
   *
   * @example
   * ```ts
   * using be = await WebGpuBackend.create({ computeDType: "f32" });
   * using x = be.upload(new Float32Array([1, 2, 3, 4]), [2, 2]);
   * console.log(await be.read(be.matmul(x, x)));
   * ```
   */
  static async create(opts: WebGpuOptions = {}): Promise<WebGpuBackend> {
    const rt = await GpuRuntime.open({ ...limitsFromEnv(), ...opts });
    const be = new WebGpuBackend(rt, "f32");
    be.poison = opts.poison ?? false;
    be.f16Partials = opts.matmulF16Partials ?? false;
    if (opts.computeDType === "f16" && !rt.nativeF16) {
      rt[Symbol.dispose]();
      throw new BackendError("computeDType f16 needs the adapter feature shader-f16, which this GPU lacks");
    }
    const forced = opts.computeDType ?? dtypeFromEnv();
    be.computeDType = forced ?? (rt.nativeF16 && await f16Accurate(be) ? "f16" : "f32");
    return be;
  }

  /** A new tensor with undefined contents. */
  alloc(shape: readonly number[], dtype: DType): GpuTensor {
    const kind = storageKind(dtype, this.rt.nativeF16);
    const bytes = Math.max(4, numel(shape) * kind.bytes);
    if (bytes > this.rt.maxBufferSize) {
      throw new DeviceError(
        `${
          this.rt.op || "an op"
        } needs a ${dtype} tensor of shape [${shape}] (${bytes} bytes), over this GPU's maxBufferSize (${this.rt.limitsText()})`,
      );
    }
    const t = new GpuTensor(
      this,
      shape,
      dtype,
      new GpuStorage(this.rt.pool.acquire(bytes), kind, this.rt.pool),
    );
    if (this.poison) mem.fill(this, t, isFloat(dtype) ? NaN : -1);
    return t;
  }

  // ---- memory ---------------------------------------------------------------------------------
  upload(data: Float32Array | Float64Array, shape: readonly number[], dtype: DType = "f32"): Tensor {
    if (!isFloat(dtype)) throw new BackendError(`upload() takes float data; use uploadInt`);
    if (data.length !== numel(shape)) {
      throw new BackendError(`upload: ${data.length} values for shape [${shape}]`);
    }
    const t = this.alloc(shape, dtype);
    this.rt.write(t.storage.buffer, 0, encodeHost(data, t.kind));
    return t;
  }
  uploadInt(data: Int32Array, shape: readonly number[]): Tensor {
    if (data.length !== numel(shape)) {
      throw new BackendError(`uploadInt: ${data.length} values for shape [${shape}]`);
    }
    const t = this.alloc(shape, "i32");
    this.rt.write(t.storage.buffer, 0, encodeHost(data, t.kind));
    return new GpuTensor(this, shape, "i32", t.storage, 0, false, Int32Array.from(data));
  }
  full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
    const t = this.alloc(shape, dtype);
    mem.fill(this, t, value);
    return t;
  }
  async read(x: Tensor): Promise<Float32Array> {
    const t = gpu(x);
    if (!isFloat(t.dtype)) throw new BackendError(`read() of a ${t.dtype} tensor; use readInt`);
    const es = t.kind.bytes;
    const bytes = await this.rt.read(t.storage.buffer, t.offset * es, t.size * es);
    return decodeFloat(bytes, 0, t.kind, t.size);
  }
  async readInt(x: Tensor): Promise<Int32Array> {
    const t = gpu(x);
    if (t.dtype !== "i32" && t.dtype !== "u8") throw new BackendError(`readInt of a ${t.dtype} tensor`);
    const bytes = await this.rt.read(t.storage.buffer, t.offset * 4, t.size * 4);
    return decodeInt(bytes, 0, t.kind, t.size);
  }
  view(x: Tensor, shape: readonly number[]): Tensor {
    const t = gpu(x);
    if (numel(shape) !== t.size) throw new BackendError(`view [${shape}] of a tensor of shape [${t.shape}]`);
    return new GpuTensor(this, shape, t.dtype, t.storage, t.offset, true, t.hostInts);
  }
  rows(x: Tensor, start: number, count: number): Tensor {
    const t = gpu(x);
    if (start < 0 || count < 0 || start + count > t.rows) {
      throw new BackendError(`rows ${start}+${count} of ${t.rows}`);
    }
    const host = t.hostInts?.subarray(start * t.cols, (start + count) * t.cols);
    return new GpuTensor(
      this,
      [count, ...t.shape.slice(1)],
      t.dtype,
      t.storage,
      t.offset + start * t.cols,
      true,
      host,
    );
  }
  copy(dst: Tensor, src: Tensor): void {
    const d = gpu(dst), s = gpu(src);
    if (d.size !== s.size) throw new BackendError(`copy of ${s.size} elements into ${d.size}`);
    mem.copyRange(this, d, s, s.size);
  }
  gatherSamples(
    dst: Tensor,
    src: Tensor,
    indices: readonly number[] | Tensor,
    rowsPerSample: number,
    firstSample?: number,
  ): void {
    if (Array.isArray(indices)) {
      using idx = this.uploadInt(Int32Array.from(indices as readonly number[]), [indices.length]);
      mem.gatherSamples(this, gpu(dst), gpu(src), gpu(idx), rowsPerSample, firstSample);
    } else mem.gatherSamples(this, gpu(dst), gpu(src), gpu(indices as Tensor), rowsPerSample, firstSample);
  }

  // ---- dense math -----------------------------------------------------------------------------
  matmul(
    a: Tensor,
    b: Tensor,
    opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; out?: Tensor } = {},
  ): Tensor {
    const A = gpu(a), B = gpu(b);
    const M = opts.transA ? A.cols : A.rows, N = opts.transB ? B.rows : B.cols;
    opts = { ...opts, f16Partials: this.f16Partials } as typeof opts;
    if (!opts.out) {
      const C = this.alloc([M, N], A.dtype === "f32" ? "f32" : A.dtype);
      runMatmul(this.rt, A, B, C, { ...opts, beta: 0 });
      return C;
    }
    const C = gpu(opts.out);
    const aliased = C.storage === A.storage || C.storage === B.storage;
    if (!aliased) {
      runMatmul(this.rt, A, B, C, opts);
      return C;
    }
    // out shares a buffer with an operand: a buffer cannot be read-only and writable in one dispatch.
    using tmp = this.alloc(C.shape, C.dtype);
    if ((opts.beta ?? 0) !== 0) mem.copyRange(this, tmp, C, C.size);
    runMatmul(this.rt, A, B, tmp, opts);
    mem.copyRange(this, C, tmp, C.size);
    return C;
  }
  add(a: Tensor, b: Tensor, out?: Tensor): Tensor {
    const A = gpu(a);
    const O = out ? gpu(out) : this.alloc(A.shape, A.dtype);
    math.add(this, A, gpu(b), O);
    return O;
  }
  addRowVector(x: Tensor, bias: Tensor): void {
    math.addRowVector(this, gpu(x), gpu(bias));
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const X = gpu(x), Y = this.alloc(X.shape, X.dtype);
    math.rmsNorm(this, X, gpu(w), Y, eps);
    return Y;
  }
  rmsNormBackward(x: Tensor, w: Tensor, dy: Tensor, eps: number): Tensor {
    const X = gpu(x), DY = gpu(dy), DX = this.alloc(X.shape, DY.dtype);
    math.rmsNormBackward(this, X, gpu(w), DY, DX, eps);
    return DX;
  }
  rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    geo: Parameters<Backend["rope"]>[3],
    inverse = false,
  ): void {
    math.rope(this, gpu(x), gpu(cos), gpu(sin), geo, inverse);
  }
  attention(q: Tensor, k: Tensor, v: Tensor, shape: AttentionShape): { out: Tensor; lse: Tensor } {
    const Q = gpu(q);
    const out = this.alloc(Q.shape, Q.dtype);
    const lse = this.alloc([shape.batch * shape.nHeads * shape.seqLen], "f32");
    attn.attention(this, Q, gpu(k), gpu(v), out, lse, shape);
    return { out, lse };
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
    const t = { q: gpu(q), k: gpu(k), v: gpu(v), out: gpu(out), lse: gpu(lse), dOut: gpu(dOut) };
    const dt = t.dOut.dtype;
    const g = { dq: this.alloc(t.q.shape, dt), dk: this.alloc(t.k.shape, dt), dv: this.alloc(t.v.shape, dt) };
    attn.attentionBackward(this, t, g, shape);
    return g;
  }
  siluMul(g: Tensor, u: Tensor): Tensor {
    const G = gpu(g), H = this.alloc(G.shape, G.dtype);
    math.siluMul(this, G, gpu(u), H);
    return H;
  }
  siluMulBackward(g: Tensor, u: Tensor, dh: Tensor): { dg: Tensor; du: Tensor } {
    const G = gpu(g), U = gpu(u), DH = gpu(dh);
    const dg = this.alloc(G.shape, DH.dtype), du = this.alloc(U.shape, DH.dtype);
    math.siluMulBackward(this, G, U, DH, dg, du);
    return { dg, du };
  }
  readonly geluTanhMul = (g: Tensor, u: Tensor): Tensor => math.geluTanhMul(this, gpu(g), gpu(u));
  readonly geluTanhMulBackward = (g: Tensor, u: Tensor, dh: Tensor) =>
    math.geluTanhMulBackward(this, gpu(g), gpu(u), gpu(dh));
  readonly tanhSoftcap = (x: Tensor, cap: number): void => math.tanhSoftcap(this, gpu(x), cap);
  embedding(table: Tensor, ids: Tensor): Tensor {
    const T = gpu(table), I = gpu(ids);
    const out = this.alloc([I.size, T.cols], T.dtype);
    mem.embedding(this, T, I, out);
    return out;
  }
  crossEntropy(logits: Tensor, targets: Tensor): Tensor {
    const T = gpu(targets), out = this.alloc([T.size], "f32");
    loss.crossEntropy(this, gpu(logits), T, out);
    return out;
  }
  argmaxRows(x: Tensor): Tensor {
    const X = gpu(x), out = this.alloc([X.rows], "i32");
    loss.argmaxRows(this, X, out);
    return out;
  }

  // ---- quantization ---------------------------------------------------------------------------
  fakeQuant(w: Tensor, state: QuantState, p: IntQuantParams, outDType?: DType): Tensor {
    const W = gpu(w);
    return fq.fakeQuant(this, W, state, p, outDType ?? W.dtype);
  }
  fakeQuantBackward(w: Tensor, state: QuantState, p: IntQuantParams, dWq: Tensor): FakeQuantGrads {
    return fq.fakeQuantBackward(this, gpu(w), state, p, gpu(dWq));
  }
  quantizeWeights(w: Tensor, state: QuantState, p: IntQuantParams): Promise<QuantizedWeights> {
    return fq.quantizeWeights(this, gpu(w), state, p);
  }
  // Float schemes (issue 17): float_quant.ts / int8_weights.ts (routed there) and act_quant.ts.
  floatFakeQuant(w: Tensor, state: QuantState, p: FloatQuantParams, outDType?: DType): Tensor {
    return fl.floatFakeQuant(this, gpu(w), state, p, outDType ?? w.dtype);
  }
  floatFakeQuantBackward(w: Tensor, state: QuantState, p: FloatQuantParams, dWq: Tensor): FakeQuantGrads {
    return fl.floatFakeQuantBackward(this, gpu(w), state, p, gpu(dWq));
  }
  floatQuantizeWeights(w: Tensor, state: QuantState, p: FloatQuantParams) {
    return fl.floatQuantizeWeights(this, gpu(w), state, p);
  }
  actFakeQuant(x: Tensor, a: ActQuantArgs): Tensor {
    return aq.actFakeQuant(this, gpu(x), a);
  }
  actFakeQuantBackward(x: Tensor, a: ActQuantArgs, dOut: Tensor): { dx: Tensor; dActMaxScale?: Tensor } {
    return aq.actFakeQuantBackward(this, gpu(x), a, gpu(dOut));
  }

  // ---- training -------------------------------------------------------------------------------
  mseLoss(y: Tensor, target: Tensor, mask: Tensor | undefined, scale: number): { loss: Tensor; dy: Tensor } {
    return loss.mseLoss(this, gpu(y), gpu(target), mask ? gpu(mask) : undefined, scale);
  }
  signSgdStep(p: Tensor, g: Tensor, lr: number | Tensor, clamp?: { lo: number; hi: number }): void {
    math.signSgdStep(this, gpu(p), gpu(g), typeof lr === "number" ? lr : gpu(lr), clamp);
  }
  accumulate(acc: Tensor, x: Tensor, alpha = 1): void {
    const A = gpu(acc);
    math.add(this, A, gpu(x), A, alpha);
  }
  accumulateColumnSquares(acc: Tensor, x: Tensor): void {
    math.accumulateColumnSquares(this, gpu(acc), gpu(x));
  }
  groupMinMax(w: Tensor, groupSize: number): { wMin: Tensor; wMax: Tensor } {
    return search.groupMinMax(this, gpu(w), groupSize);
  }
  optRtnScales(w: Tensor, imatrix: Tensor | undefined, groupSize: number, bits: number): Tensor {
    return search.optRtnScales(this, gpu(w), imatrix ? gpu(imatrix) : undefined, groupSize, bits);
  }
  ggufQuantize(w: Tensor, type: GgufBlockType, opts: GgufQuantizeOptions): Promise<Uint8Array> {
    return gguf.ggufQuantize(this, gpu(w), type, opts);
  }
  keepBest(lossT: Tensor, best: Tensor, pairs: readonly (readonly [src: Tensor, dst: Tensor])[]): void {
    mem.keepBest(this, gpu(lossT), gpu(best), pairs.map(([s, d]) => [gpu(s), gpu(d)] as const));
  }
  sync(): Promise<void> {
    return this.rt.sync();
  }
  /** Record `fn`'s dispatches once; `replay()` re-encodes them (see GpuRuntime.capture). */
  capture(fn: () => void): CapturedWork {
    return this.rt.capture(fn);
  }
  /**
   * GPU memory of the pooled storage buffers (every tensor): bytes handed out, bytes that exist on
   * the device (idle pooled buffers included), and the high-water mark of the latter since the last
   * {@link resetPeakMemory}. WebGPU has no query for the device's own figure; the runtime's uniform
   * and staging buffers (a few MiB) are not counted.
   */
  memoryStats(): { liveBytes: number; deviceBytes: number; peakDeviceBytes: number } {
    const p = this.rt.pool;
    return { liveBytes: p.liveBytes, deviceBytes: p.deviceBytes, peakDeviceBytes: p.peakDeviceBytes };
  }
  /** The pool's high-water mark of GPU buffer bytes (see memoryStats). */
  peakMemoryBytes(): number {
    return this.rt.pool.peakDeviceBytes;
  }
  /** Start a new high-water mark at the current device bytes. */
  resetPeakMemory(): void {
    this.rt.pool.peakDeviceBytes = this.rt.pool.deviceBytes;
  }
  [Symbol.dispose](): void {
    this.rt[Symbol.dispose]();
  }
}
