/**
 * The CPU backend's core (see cpu_backend.ts): the reference every other backend is tested against. Plain TypeScript on
 * typed arrays, computing in f32 (or f64, for gradient checks against finite differences).
 * Tensors of dtype bf16/f16 are stored as f32 values rounded to that dtype.
 *
 * `new CpuBackend()` is the single-threaded reference. `CpuBackend.create({ threads })` adds a worker
 * pool (src/parallel/pool.ts) that runs the kernels on ranges of rows, heads or elements over
 * SharedArrayBuffer storage (tasks.ts), and a CBLAS library (ffi/blas) for the products when one is
 * installed; with neither, every op runs the same kernels on the calling thread.
 */
import type {
  AttentionShape,
  Backend,
  DType,
  GgufBlockType,
  GgufQuantizeOptions,
  Tensor,
} from "../backend.ts";
import type { Cblas } from "../../../ffi/blas/cblas.ts";
import { BackendError } from "../../errors.ts";
import { WorkerPool } from "../../parallel/pool.ts";
import { decodeFloats } from "../../tensor/dtype.ts";
import * as attn from "./attention_ops.ts";
import { checkAttnOptions } from "./attention.ts";
import { blasName, type OpsContext } from "./resources.ts";
import { CpuTensor, HostBlock, HostMemory, type Storage } from "./cpu_tensor.ts";
import { ggufQuantizeValues } from "./gguf.ts";
import type { FArr } from "./kernels.ts";
import { gemm } from "./matmul.ts";
import * as loss from "./loss_ops.ts";
import * as mem from "./memory_ops.ts";
import * as q from "./quant_ops.ts";
import * as tk from "./tasks.ts";

/**
 * The memory and dense-math half of the CPU backend (the quantization and training ops are in
 * cpu_backend.ts, which extends it): abstract, only ever a CpuBackend.
 */
export abstract class CpuCore {
  readonly name = "cpu" as const;
  readonly computeDType = "f32" as const;
  readonly device: string;
  readonly precision: "f32" | "f64";
  /** Optional cap on one tensor's bytes: lets tests drive the splitting a GPU's buffer limit forces. */
  readonly maxTensorBytes?: number;
  readonly pool: WorkerPool;
  readonly blas?: Cblas;
  protected readonly mem: HostMemory;
  protected readonly ctx: OpsContext;
  protected readonly owned: Disposable[];

  /**
   * The single-threaded reference, or (with `pool`/`blas`, see create()) a threaded one; the backend
   * takes ownership of both and releases them on dispose.
   */
  constructor(
    opts: { precision?: "f32" | "f64"; pool?: WorkerPool; blas?: Cblas; maxTensorBytes?: number } = {},
  ) {
    this.precision = opts.precision ?? "f32";
    this.maxTensorBytes = opts.maxTensorBytes;
    this.pool = opts.pool ?? WorkerPool.serial();
    this.blas = opts.blas;
    this.owned = [this.pool, ...(this.blas ? [this.blas] : [])];
    this.mem = new HostMemory(this.pool.threads > 1, this.precision);
    this.ctx = { pool: this.pool, mem: this.mem, precision: this.precision, blas: this.blas };
    const n = this.pool.threads;
    const gemmBy = this.blas ? blasName(this.blas) : "TypeScript GEMM";
    this.device = `CPU (${this.precision}, ${n} thread${n > 1 ? "s" : ""}, ${gemmBy})`;
  }

  /** Threads the kernels (and the BLAS library) run on. */
  get threads(): number {
    return this.pool.threads;
  }

  /** Shared-memory accounting (zeros when single-threaded: ordinary memory is left to the GC). */
  memoryStats(): { liveBytes: number; freeBytes: number; peakLiveBytes: number } {
    return this.mem.stats();
  }

  protected t(x: Tensor): CpuTensor {
    return CpuTensor.of(x);
  }

  /** A tensor owning `array`, which goes back to this backend's memory when it is disposed. */
  protected own(shape: readonly number[], dtype: DType, array: Storage): CpuTensor {
    return new CpuTensor(this as unknown as Backend, shape, dtype, new HostBlock(array, this.mem));
  }

  protected newFloat(shape: readonly number[], dtype: DType = "f32"): CpuTensor {
    const n = shape.reduce((a, b) => a * b, 1);
    // Counted as 4 bytes an element (the f32 storage a GPU would use), also in f64 mode.
    if (this.maxTensorBytes !== undefined && n * 4 > this.maxTensorBytes) {
      throw new BackendError(
        `a tensor of ${n} elements (${
          n * 4
        } bytes) exceeds this backend's maxTensorBytes ${this.maxTensorBytes}`,
      );
    }
    return this.own(shape, dtype, this.mem.floats(n));
  }

  // ---- memory ---------------------------------------------------------------------------------
  upload(data: Float32Array | Float64Array, shape: readonly number[], dtype: DType = "f32"): Tensor {
    if (dtype === "i32" || dtype === "u8") throw new BackendError(`upload() takes float data; use uploadInt`);
    const t = this.newFloat(shape, dtype);
    if (data.length !== t.size) throw new BackendError(`upload: ${data.length} values for shape [${shape}]`);
    t.f.set(data);
    return t.rounded();
  }
  uploadBytes(
    bytes: Uint8Array,
    src: "f32" | "f16" | "bf16",
    shape: readonly number[],
    dtype?: DType,
  ): Tensor {
    const kind = src === "f32" ? "F32" : src === "f16" ? "F16" : "BF16";
    return this.upload(decodeFloats(bytes, kind), shape, dtype ?? src);
  }
  readBytes(x: Tensor): Promise<Uint8Array> {
    const t = this.t(x);
    return Promise.resolve(mem.floatBytes(t.data as FArr, t.dtype));
  }
  writeBytes(dst: Tensor, bytes: Uint8Array): void {
    const d = this.t(dst);
    mem.setFromBytes(d.data as FArr, d.dtype, bytes);
    d.rounded();
  }
  groupMinMax(w: Tensor, groupSize: number): { wMin: Tensor; wMax: Tensor } {
    const W = this.t(w);
    const { wMin, wMax } = q.groupMinMaxRows(this.ctx, W.f, W.shape[0], groupSize);
    const out = { wMin: this.upload(wMin, [wMin.length]), wMax: this.upload(wMax, [wMax.length]) };
    this.mem.release(wMin);
    this.mem.release(wMax);
    return out;
  }
  optRtnScales(w: Tensor, imatrix: Tensor | undefined, groupSize: number, bits: number): Tensor {
    const W = this.t(w);
    const imat = imatrix ? this.t(imatrix).f : undefined;
    const s = q.optRtnScaleRows(this.ctx, W.f, W.shape[0], imat, groupSize, bits);
    const out = this.upload(s, [s.length]);
    this.mem.release(s);
    return out;
  }
  /** The host reference itself (src/qmath/gguf/quantize.ts), on the f32 values of `w`. */
  ggufQuantize(w: Tensor, type: GgufBlockType, opts: GgufQuantizeOptions): Promise<Uint8Array> {
    const W = this.t(w);
    if (W.shape.length !== 2) throw new BackendError(`ggufQuantize: weight must be 2-D, got [${W.shape}]`);
    const imatrix = opts.imatrix ? Float32Array.from(this.t(opts.imatrix).f) : undefined;
    return Promise.resolve(ggufQuantizeValues(W.f, W.shape[0], W.shape[1], type, opts, imatrix));
  }
  uploadInt(data: Int32Array, shape: readonly number[]): Tensor {
    const t = this.own(shape, "i32", this.mem.i32(data.length));
    t.i.set(data);
    return t;
  }
  full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (dtype === "i32") return this.own(shape, dtype, this.mem.i32(n).fill(value));
    if (dtype === "u8") return this.own(shape, dtype, this.mem.u8(n).fill(value));
    const t = this.newFloat(shape, dtype);
    t.f.fill(value);
    return t.rounded();
  }
  read(x: Tensor): Promise<Float32Array> {
    return Promise.resolve(Float32Array.from(this.t(x).f));
  }
  readInt(x: Tensor): Promise<Int32Array> {
    const t = this.t(x);
    if (t.dtype !== "i32") throw new BackendError(`readInt of a ${t.dtype} tensor`);
    return Promise.resolve(Int32Array.from(t.i));
  }
  view(x: Tensor, shape: readonly number[]): Tensor {
    const t = this.t(x);
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== t.size) throw new BackendError(`view [${shape}] of a tensor of shape [${t.shape}]`);
    return new CpuTensor(this as unknown as Backend, shape, t.dtype, t.block, t.offset, true);
  }
  rows(x: Tensor, start: number, count: number): Tensor {
    const t = this.t(x);
    const cols = t.size / t.shape[0];
    if (start < 0 || start + count > t.shape[0]) {
      throw new BackendError(`rows ${start}+${count} of ${t.shape[0]}`);
    }
    return new CpuTensor(
      this as unknown as Backend,
      [count, ...t.shape.slice(1)],
      t.dtype,
      t.block,
      t.offset + start * cols,
      true,
    );
  }
  copy(dst: Tensor, src: Tensor): void {
    const d = this.t(dst), s = this.t(src);
    if (d.size !== s.size) throw new BackendError(`copy of ${s.size} elements into ${d.size}`);
    (d.data as FArr).set(s.data as FArr);
    d.rounded();
  }
  gatherSamples(
    dst: Tensor,
    src: Tensor,
    idx: readonly number[] | Tensor,
    rowsPerSample: number,
    firstSample?: number,
  ): void {
    const d = this.t(dst), s = this.t(src);
    const indices = Array.isArray(idx) ? idx as readonly number[] : Array.from(this.t(idx as Tensor).data);
    const per = rowsPerSample * (s.size / s.shape[0]);
    mem.gatherSamples(
      d.data as FArr,
      s.data as FArr,
      indices,
      per,
      firstSample ?? 0,
      firstSample !== undefined,
    );
    d.rounded();
  }

  // ---- dense math -----------------------------------------------------------------------------
  matmul(
    a: Tensor,
    b: Tensor,
    opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; out?: Tensor } = {},
  ): Tensor {
    const A = this.t(a), B = this.t(b);
    const [ar, ac] = [A.shape[0], A.size / A.shape[0]];
    const [br, bc] = [B.shape[0], B.size / B.shape[0]];
    const transA = opts.transA ?? false, transB = opts.transB ?? false;
    const M = transA ? ac : ar, K = transA ? ar : ac;
    const N = transB ? br : bc, K2 = transB ? bc : br;
    if (K !== K2) throw new BackendError(`matmul inner sizes differ: ${K} vs ${K2}`);
    const C = opts.out ? this.t(opts.out) : this.newFloat([M, N], A.dtype === "f32" ? "f32" : A.dtype);
    if (C.size !== M * N) throw new BackendError(`matmul out has ${C.size} elements, need ${M}×${N}`);
    const alpha = opts.alpha ?? 1, beta = opts.out ? opts.beta ?? 0 : 0;
    gemm({ a: A.f, b: B.f, c: C.f, M, N, K, transA, transB, alpha, beta }, this.pool, this.mem, this.blas);
    return C.rounded();
  }
  add(a: Tensor, b: Tensor, out?: Tensor): Tensor {
    const A = this.t(a), B = this.t(b);
    const C = out ? this.t(out) : this.newFloat(A.shape, A.dtype);
    this.pool.run(tk.addTask, C.size, { x: A.f, y: B.f, z: C.f }, tk.MIN_RANGE_ELEMS);
    return C.rounded();
  }
  addRowVector(x: Tensor, bias: Tensor): void {
    const X = this.t(x), b = this.t(bias).f;
    this.pool.run(tk.addRowVectorTask, X.size / b.length, { x: X.f, bias: b }, tk.grain(b.length));
    X.rounded();
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const X = this.t(x), W = this.t(w);
    const n = W.size, Y = this.newFloat(X.shape, X.dtype);
    this.pool.run(tk.rmsNormTask, X.size / n, { x: X.f, w: W.f, y: Y.f, n, eps }, tk.grain(n));
    return Y.rounded();
  }
  rmsNormBackward(x: Tensor, w: Tensor, dy: Tensor, eps: number): Tensor {
    const X = this.t(x), W = this.t(w), DY = this.t(dy);
    const n = W.size, DX = this.newFloat(X.shape, DY.dtype);
    const args = { x: X.f, w: W.f, dy: DY.f, dx: DX.f, n, eps };
    this.pool.run(tk.rmsNormBackwardTask, X.size / n, args, tk.grain(n));
    return DX.rounded();
  }
  rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    geo: Parameters<Backend["rope"]>[3],
    inverse = false,
  ): void {
    const rot = geo.rotaryDim ?? geo.headDim;
    if (!(Number.isInteger(rot) && rot > 0 && rot % 2 === 0 && rot <= geo.headDim)) {
      throw new BackendError(
        `rope rotaryDim must be even, positive and ≤ headDim ${geo.headDim}, got ${rot}`,
      );
    }
    const X = this.t(x);
    const [c, s] = [this.t(cos).f, this.t(sin).f];
    const args = { x: X.f, cos: c, sin: s, ...geo, posOffset: geo.posOffset ?? 0, inverse };
    this.pool.run(tk.ropeTask, geo.batch, args, tk.grain(X.size / geo.batch));
    X.rounded();
  }
  attention(q: Tensor, kk: Tensor, v: Tensor, shape: AttentionShape): { out: Tensor; lse: Tensor } {
    checkAttention(shape);
    const Q = this.t(q);
    const out = this.newFloat(Q.shape, Q.dtype);
    const lse = this.newFloat([shape.batch * shape.nHeads * shape.seqLen]);
    attn.forward(this.ctx, [Q.f, this.t(kk).f, this.t(v).f], [out.f, lse.f], { ...shape });
    return { out: out.rounded(), lse };
  }
  attentionBackward(
    q: Tensor,
    kk: Tensor,
    v: Tensor,
    out: Tensor,
    lse: Tensor,
    dOut: Tensor,
    shape: AttentionShape,
  ): { dq: Tensor; dk: Tensor; dv: Tensor } {
    checkAttention(shape);
    const Q = this.t(q), K = this.t(kk), V = this.t(v), DO = this.t(dOut);
    const dq = this.newFloat(Q.shape, DO.dtype), dk = this.newFloat(K.shape, DO.dtype);
    const dv = this.newFloat(V.shape, DO.dtype);
    const inputs = [Q.f, K.f, V.f, this.t(out).f, this.t(lse).f, DO.f] as const;
    attn.backward(this.ctx, inputs, [dq.f, dk.f, dv.f], { ...shape });
    return { dq: dq.rounded(), dk: dk.rounded(), dv: dv.rounded() };
  }
  siluMul(g: Tensor, u: Tensor): Tensor {
    const G = this.t(g), U = this.t(u);
    const H = this.newFloat(G.shape, G.dtype);
    this.pool.run(tk.siluMulTask, H.size, { g: G.f, u: U.f, h: H.f }, tk.MIN_RANGE_ELEMS);
    return H.rounded();
  }
  siluMulBackward(g: Tensor, u: Tensor, dh: Tensor): { dg: Tensor; du: Tensor } {
    const G = this.t(g), U = this.t(u), DH = this.t(dh);
    const dg = this.newFloat(G.shape, DH.dtype), du = this.newFloat(U.shape, DH.dtype);
    const args = { g: G.f, u: U.f, dh: DH.f, dg: dg.f, du: du.f };
    this.pool.run(tk.siluMulBackwardTask, G.size, args, tk.MIN_RANGE_ELEMS);
    return { dg: dg.rounded(), du: du.rounded() };
  }
  embedding(table: Tensor, ids: Tensor): Tensor {
    const T = this.t(table), idv = this.t(ids).i;
    const out = this.newFloat([idv.length, T.size / T.shape[0]], T.dtype);
    mem.embeddingRows(T.f, T.shape[0], idv, out.f);
    return out;
  }
  crossEntropy(logits: Tensor, targets: Tensor): Tensor {
    const L = this.t(logits), T = this.t(targets).i;
    const out = this.newFloat([T.length]);
    loss.crossEntropy(this.ctx, L.f, T, out.f);
    return out;
  }
  crossEntropyBackward(logits: Tensor, targets: Tensor, scale: number): Tensor {
    const L = this.t(logits), T = this.t(targets).i;
    const d = this.newFloat(L.shape, L.dtype);
    this.pool.run(tk.crossEntropyBackwardTask, T.length, {
      logits: L.f,
      targets: T,
      d: d.f,
      V: L.size / T.length,
      scale,
    }, tk.grain(L.size / T.length));
    return d.rounded();
  }
  argmaxRows(x: Tensor): Tensor {
    const X = this.t(x);
    const out = this.own([X.shape[0]], "i32", this.mem.i32(X.shape[0]));
    loss.argmaxRows(this.ctx, X.f, out.i);
    return out;
  }
}

/** Throws BackendError for a window or soft cap the kernels cannot take (attention.ts). */
function checkAttention(shape: AttentionShape): void {
  const bad = checkAttnOptions(shape);
  if (bad) throw new BackendError(bad);
}
