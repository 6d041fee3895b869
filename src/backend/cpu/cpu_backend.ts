/**
 * The CPU backend: the reference every other backend is tested against. Plain TypeScript on
 * typed arrays, computing in f32 (or f64, for gradient checks against finite differences).
 * Tensors of dtype bf16/f16 are stored as f32 values rounded to that dtype.
 *
 * `new CpuBackend()` is the single-threaded reference. `CpuBackend.create({ threads })` adds a worker
 * pool (src/parallel/pool.ts) that runs the kernels on ranges of rows, heads or elements over
 * SharedArrayBuffer storage (tasks.ts), and a CBLAS library (ffi/blas) for the products when one is
 * installed; with neither, every op runs the same kernels on the calling thread. Memory and dense
 * math are in cpu_core.ts; quantization and training here.
 */
import type { Backend, DType, FakeQuantGrads, IntQuantParams, QuantState, Tensor } from "../backend.ts";
import type { QuantizedWeights } from "../../qmath/quantized.ts";
import { type CpuBackendOptions, startThreads } from "./resources.ts";
import type { CpuTensor } from "./cpu_tensor.ts";
import { CpuCore } from "./cpu_core.ts";
import * as loss from "./loss_ops.ts";
import * as q from "./quant_ops.ts";
import * as fo from "./float_ops.ts";
import * as moe from "./moe_ops.ts";
import * as tk from "./tasks.ts";
import * as gelu from "./gelu.ts";

export { CpuTensor } from "./cpu_tensor.ts";
export type { CpuBackendOptions } from "./resources.ts";

/** The reference backend. `precision: "f64"` stores floats in Float64Array (gradient checks). */
export class CpuBackend extends CpuCore implements Backend {
  /**
   * A backend on `threads` threads (default: every core) with a CBLAS library when one is found.
   * Workers that cannot start leave it single-threaded (logged with --debug).
   */
  static async create(opts: CpuBackendOptions = {}): Promise<CpuBackend> {
    return new CpuBackend({ precision: opts.precision, ...await startThreads(opts) });
  }

  // ---- quantization ---------------------------------------------------------------------------
  private quantArgs(w: CpuTensor, st: QuantState, p: IntQuantParams): tk.QuantArgs {
    return q.quantArgs(w.f, w.shape[0], q.stateArrays(st, (x) => this.t(x).f), p, this.precision);
  }
  fakeQuant(w: Tensor, state: QuantState, p: IntQuantParams, outDType?: DType): Tensor {
    const W = this.t(w);
    const out = this.newFloat(W.shape, outDType ?? W.dtype);
    q.fakeQuantRows(this.ctx, this.quantArgs(W, state, p), out.f);
    return out.rounded();
  }
  fakeQuantBackward(w: Tensor, state: QuantState, p: IntQuantParams, dWq: Tensor): FakeQuantGrads {
    const W = this.t(w);
    const a = this.quantArgs(W, state, p);
    const dv = this.newFloat(W.shape),
      dMin = this.newFloat([a.wMin.length]),
      dMax = this.newFloat([a.wMin.length]);
    q.fakeQuantBackwardRows(this.ctx, a, this.t(dWq).f, dv.f, dMin.f, dMax.f);
    return { dv, dMinScale: dMin, dMaxScale: dMax };
  }
  quantizeWeights(w: Tensor, state: QuantState, p: IntQuantParams): Promise<QuantizedWeights> {
    const W = this.t(w);
    return Promise.resolve(q.quantizeRows(this.ctx, this.quantArgs(W, state, p)));
  }

  // ---- float schemes (float_ops.ts) ------------------------------------------------------------
  private readonly fh = fo.opsHost((x) => this.t(x), (s, d) => this.newFloat(s, d));
  readonly floatFakeQuant: Backend["floatFakeQuant"] = (w, s, p, d) => fo.floatFakeQuant(this.fh, w, s, p, d);
  readonly floatFakeQuantBackward: Backend["floatFakeQuantBackward"] = (w, s, p, g) =>
    fo.floatFakeQuantBackward(this.fh, w, s, p, g);
  readonly floatQuantizeWeights: Backend["floatQuantizeWeights"] = (w, s, p) =>
    fo.floatQuantizeWeights(this.fh, w, s, p);
  readonly actFakeQuant: Backend["actFakeQuant"] = (x, a) => fo.actFakeQuant(this.fh, x, a);
  readonly actFakeQuantBackward: Backend["actFakeQuantBackward"] = (x, a, g) =>
    fo.actFakeQuantBackward(this.fh, x, a, g);

  // ---- mixture-of-experts rows (moe_ops.ts) ----------------------------------------------------
  readonly gatherRows: NonNullable<Backend["gatherRows"]> = (x, rows, scale) =>
    moe.gatherRows(this.fh, x, rows, scale);
  readonly scatterAddRows: NonNullable<Backend["scatterAddRows"]> = (out, src, rows, scale) =>
    moe.scatterAddRows(this.fh, out, src, rows, scale);
  readonly rowDots: NonNullable<Backend["rowDots"]> = (a, b) => moe.rowDots(this.fh, a, b);
  readonly readSync: NonNullable<Backend["readSync"]> = (x) => moe.readSync(this.fh, x);

  // ---- Gemma's activations (gelu.ts) -----------------------------------------------------------
  geluTanhMul(g: Tensor, u: Tensor): Tensor {
    const G = this.t(g), U = this.t(u);
    const H = this.newFloat(G.shape, G.dtype);
    this.pool.run(gelu.geluTanhMulTask, H.size, { g: G.f, u: U.f, h: H.f }, tk.MIN_RANGE_ELEMS);
    return H.rounded();
  }
  /** Returns new dg, du whether or not `overwrite` is set (as siluMulBackward does). */
  geluTanhMulBackward(g: Tensor, u: Tensor, dh: Tensor): { dg: Tensor; du: Tensor } {
    const G = this.t(g), U = this.t(u), DH = this.t(dh);
    const dg = this.newFloat(G.shape, DH.dtype), du = this.newFloat(U.shape, DH.dtype);
    const args = { g: G.f, u: U.f, dh: DH.f, dg: dg.f, du: du.f };
    this.pool.run(gelu.geluTanhMulBackwardTask, G.size, args, tk.MIN_RANGE_ELEMS);
    return { dg: dg.rounded(), du: du.rounded() };
  }
  tanhSoftcap(x: Tensor, cap: number): void {
    const X = this.t(x);
    this.pool.run(gelu.tanhSoftcapTask, X.size, { x: X.f, cap }, tk.MIN_RANGE_ELEMS);
    X.rounded();
  }

  // ---- training -------------------------------------------------------------------------------
  mseLoss(y: Tensor, target: Tensor, mask: Tensor | undefined, scale: number): { loss: Tensor; dy: Tensor } {
    const Y = this.t(y), T = this.t(target);
    const dy = this.newFloat(Y.shape);
    const m = mask ? this.t(mask).f : undefined;
    const out = this.newFloat([1]);
    out.f[0] = loss.mseLoss(this.ctx, Y.f, T.f, m, dy.f, Y.size / Y.shape[0], scale);
    return { loss: out, dy };
  }
  outlierSuppressedMseLoss(y: Tensor, target: Tensor, mask: Tensor | undefined, scale: number) {
    const Y = this.t(y), dy = this.newFloat(Y.shape), out = this.newFloat([1]);
    const m = mask ? this.t(mask).f : undefined;
    out.f[0] = loss.outlierSuppressedMse(Y.f, this.t(target).f, m, dy.f, Y.size / Y.shape[0], scale);
    return { loss: out, dy };
  }
  signSgdStep(p: Tensor, g: Tensor, lrArg: number | Tensor, clamp?: { lo: number; hi: number }): void {
    const P = this.t(p);
    const lr = typeof lrArg === "number" ? lrArg : this.t(lrArg).f[0];
    const args = { p: P.f, g: this.t(g).f, lr, lo: clamp?.lo ?? -Infinity, hi: clamp?.hi ?? Infinity };
    this.pool.run(tk.signSgdTask, P.size, args, tk.MIN_RANGE_ELEMS);
    P.rounded();
  }
  accumulate(acc: Tensor, x: Tensor, alpha = 1): void {
    const A = this.t(acc);
    this.pool.run(tk.axpyTask, A.size, { acc: A.f, x: this.t(x).f, alpha }, tk.MIN_RANGE_ELEMS);
    A.rounded();
  }
  accumulateColumnSquares(acc: Tensor, x: Tensor): void {
    const A = this.t(acc).f, X = this.t(x).f;
    this.pool.run(tk.columnSquaresTask, A.length, { acc: A, x: X }, tk.grain(X.length / A.length));
  }
  keepBest(loss: Tensor, best: Tensor, pairs: readonly (readonly [Tensor, Tensor])[]): void {
    const l = this.t(loss).f[0], B = this.t(best).f;
    if (l < B[0]) {
      B[0] = l;
      for (const [src, dst] of pairs) this.copy(dst, src);
    }
  }
  sync(): Promise<void> {
    return Promise.resolve();
  }
  [Symbol.dispose](): void {
    for (const r of this.owned.splice(0)) r[Symbol.dispose]();
  }
}
