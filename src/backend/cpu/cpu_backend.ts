/**
 * The CPU backend: the reference every other backend is tested against. Plain TypeScript on
 * typed arrays, computing in f32 (or f64, for gradient checks against finite differences).
 * Tensors of dtype bf16/f16 are stored as f32 values rounded to that dtype.
 */
import type {
  AttentionShape,
  Backend,
  DType,
  FakeQuantGrads,
  GgufBlockType,
  GgufQuantizeOptions,
  IntQuantParams,
  QuantizedWeights,
  QuantState,
  Tensor,
} from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { decodeFloats, roundBf16 } from "../../tensor/dtype.ts";
import * as k from "./kernels.ts";
import {
  fakeQuantize,
  fakeQuantizeBackward,
  type GroupLayout,
  groupMinMax,
  groupsPerRow,
  importanceForWeight,
  type QuantMath,
  type QuantTunables,
  resolveGroupSize,
  searchScalesSym,
} from "../../quant/int_quant.ts";
import { quantizeAtExport, quantizeTensor } from "../../export/gguf/quantize.ts";
import { packBlocks } from "../../io/gguf_blocks.ts";
import { ggufPlan } from "../gguf_plan.ts";

type Storage = k.FArr | Int32Array | Uint8Array;

/** A tensor in host memory. `offset` lets views share a parent's storage. */
export class CpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly backend: CpuBackend,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly storage: Storage,
    readonly offset = 0,
    readonly isView = false,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    if (offset + this.size > storage.length) {
      throw new BackendError(`tensor of ${this.size} elements does not fit its storage`);
    }
  }
  /** The elements of this tensor (a subarray for views). */
  get data(): Storage {
    return this.offset === 0 && this.size === this.storage.length
      ? this.storage
      : this.storage.subarray(this.offset, this.offset + this.size);
  }
  /** Float elements; throws for integer tensors. */
  get f(): k.FArr {
    if (this.dtype === "i32" || this.dtype === "u8") throw new BackendError(`expected a float tensor`);
    return this.data as k.FArr;
  }
  [Symbol.dispose](): void {}
}

function rounderFor(dtype: DType): ((x: number) => number) | undefined {
  if (dtype === "bf16") return roundBf16;
  if (dtype === "f16") return Math.f16round;
  return undefined;
}

/** The reference backend. `precision: "f64"` stores floats in Float64Array (gradient checks). */
export class CpuBackend implements Backend {
  readonly name = "cpu" as const;
  readonly computeDType = "f32" as const;
  readonly device: string;
  readonly precision: "f32" | "f64";
  /** Optional cap on one tensor's bytes: lets tests drive the splitting a GPU's buffer limit forces. */
  readonly maxTensorBytes?: number;

  constructor(opts: { precision?: "f32" | "f64"; maxTensorBytes?: number } = {}) {
    this.precision = opts.precision ?? "f32";
    this.maxTensorBytes = opts.maxTensorBytes;
    this.device = `CPU (${this.precision}, ${navigator.hardwareConcurrency} cores)`;
  }

  private alloc(n: number): k.FArr {
    // Counted as 4 bytes an element (the f32 storage a GPU would use), also in f64 mode.
    if (this.maxTensorBytes !== undefined && n * 4 > this.maxTensorBytes) {
      throw new BackendError(
        `a tensor of ${n} elements (${
          n * 4
        } bytes) exceeds this backend's maxTensorBytes ${this.maxTensorBytes}`,
      );
    }
    return this.precision === "f64" ? new Float64Array(n) : new Float32Array(n);
  }

  private t(x: Tensor): CpuTensor {
    if (!(x instanceof CpuTensor)) throw new BackendError(`tensor belongs to another backend`);
    return x;
  }

  private newFloat(shape: readonly number[], dtype: DType = "f32"): CpuTensor {
    return new CpuTensor(this, shape, dtype, this.alloc(shape.reduce((a, b) => a * b, 1)));
  }

  private finish(t: CpuTensor): CpuTensor {
    const r = rounderFor(t.dtype);
    if (r) {
      const d = t.f;
      for (let i = 0; i < d.length; i++) d[i] = r(d[i]);
    }
    return t;
  }

  // ---- memory ---------------------------------------------------------------------------------
  upload(data: Float32Array | Float64Array, shape: readonly number[], dtype: DType = "f32"): Tensor {
    if (dtype === "i32" || dtype === "u8") throw new BackendError(`upload() takes float data; use uploadInt`);
    const t = this.newFloat(shape, dtype);
    if (data.length !== t.size) throw new BackendError(`upload: ${data.length} values for shape [${shape}]`);
    t.f.set(data);
    return this.finish(t);
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
  groupMinMax(w: Tensor, groupSize: number): { wMin: Tensor; wMax: Tensor } {
    const W = this.t(w);
    const n = W.shape[0], k = W.size / n;
    const { wMin, wMax } = groupMinMax(W.f, { n, k, g: resolveGroupSize(groupSize, k) });
    return { wMin: this.upload(wMin, [wMin.length]), wMax: this.upload(wMax, [wMax.length]) };
  }
  optRtnScales(w: Tensor, imatrix: Tensor | undefined, groupSize: number, bits: number): Tensor {
    const W = this.t(w);
    const n = W.shape[0], k = W.size / n;
    const layout = { n, k, g: resolveGroupSize(groupSize, k) };
    const imp = imatrix ? importanceForWeight(this.t(imatrix).f, W.f, layout, bits) : undefined;
    const s = searchScalesSym(W.f, layout, bits, imp, 1e-5, Math.fround);
    return this.upload(s, [s.length]);
  }
  /** The host reference itself (src/export/gguf/quantize.ts), on the f32 values of `w`. */
  ggufQuantize(w: Tensor, type: GgufBlockType, opts: GgufQuantizeOptions): Promise<Uint8Array> {
    const W = this.t(w);
    if (W.shape.length !== 2) throw new BackendError(`ggufQuantize: weight must be 2-D, got [${W.shape}]`);
    const [n, k] = W.shape;
    const imatrix = opts.imatrix ? Float32Array.from(this.t(opts.imatrix).f) : undefined;
    ggufPlan(type, n, k, opts, imatrix); // the same shape checks as the device backends
    const wf = Float32Array.from(W.f);
    const blocks = opts.atExport
      ? quantizeAtExport(type, wf, n, k)
      : quantizeTensor(type, wf, n, k, { optRtn: opts.optRtn, imatrix });
    return Promise.resolve(packBlocks(blocks));
  }
  uploadInt(data: Int32Array, shape: readonly number[]): Tensor {
    return new CpuTensor(this, shape, "i32", Int32Array.from(data));
  }
  full(shape: readonly number[], value: number, dtype: DType = "f32"): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (dtype === "i32") return new CpuTensor(this, shape, dtype, new Int32Array(n).fill(value));
    if (dtype === "u8") return new CpuTensor(this, shape, dtype, new Uint8Array(n).fill(value));
    const t = this.newFloat(shape, dtype);
    t.f.fill(value);
    return this.finish(t);
  }
  read(x: Tensor): Promise<Float32Array> {
    return Promise.resolve(Float32Array.from(this.t(x).f));
  }
  readInt(x: Tensor): Promise<Int32Array> {
    const t = this.t(x);
    if (t.dtype !== "i32") throw new BackendError(`readInt of a ${t.dtype} tensor`);
    return Promise.resolve(Int32Array.from(t.data as Int32Array));
  }
  view(x: Tensor, shape: readonly number[]): Tensor {
    const t = this.t(x);
    const n = shape.reduce((a, b) => a * b, 1);
    if (n !== t.size) throw new BackendError(`view [${shape}] of a tensor of shape [${t.shape}]`);
    return new CpuTensor(this, shape, t.dtype, t.storage, t.offset, true);
  }
  rows(x: Tensor, start: number, count: number): Tensor {
    const t = this.t(x);
    const cols = t.size / t.shape[0];
    if (start < 0 || start + count > t.shape[0]) {
      throw new BackendError(`rows ${start}+${count} of ${t.shape[0]}`);
    }
    return new CpuTensor(
      this,
      [count, ...t.shape.slice(1)],
      t.dtype,
      t.storage,
      t.offset + start * cols,
      true,
    );
  }
  copy(dst: Tensor, src: Tensor): void {
    const d = this.t(dst), s = this.t(src);
    if (d.size !== s.size) throw new BackendError(`copy of ${s.size} elements into ${d.size}`);
    (d.data as k.FArr).set(s.data as k.FArr);
    this.finish(d);
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
    const cols = s.size / s.shape[0];
    const per = rowsPerSample * cols;
    const samples = s.size / per, first = firstSample ?? 0;
    if (d.size < indices.length * per) {
      throw new BackendError(`gatherSamples: dst holds ${d.size} elements, need ${indices.length * per}`);
    }
    const dd = d.data as k.FArr, sd = s.data as k.FArr;
    indices.forEach((idx, i) => {
      const j = idx - first;
      if (j >= 0 && j < samples) dd.set(sd.subarray(j * per, (j + 1) * per), i * per);
      else if (firstSample === undefined) {
        throw new BackendError(`gatherSamples: sample index ${idx} outside 0..${samples - 1}`);
      }
    });
    this.finish(d);
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
    const M = opts.transA ? ac : ar, K = opts.transA ? ar : ac;
    const N = opts.transB ? br : bc, K2 = opts.transB ? bc : br;
    if (K !== K2) throw new BackendError(`matmul inner sizes differ: ${K} vs ${K2}`);
    const C = opts.out ? this.t(opts.out) : this.newFloat([M, N], A.dtype === "f32" ? "f32" : A.dtype);
    if (C.size !== M * N) throw new BackendError(`matmul out has ${C.size} elements, need ${M}×${N}`);
    const alpha = opts.alpha ?? 1, beta = opts.out ? opts.beta ?? 0 : 0;
    const fn = opts.transA
      ? (opts.transB ? k.matmulAtBt : k.matmulAtB)
      : opts.transB
      ? k.matmulABt
      : k.matmulAB;
    fn(A.f, B.f, C.f, M, N, K, alpha, beta);
    return this.finish(C);
  }
  add(a: Tensor, b: Tensor, out?: Tensor): Tensor {
    const A = this.t(a), B = this.t(b);
    const C = out ? this.t(out) : this.newFloat(A.shape, A.dtype);
    const x = A.f, y = B.f, z = C.f;
    for (let i = 0; i < z.length; i++) z[i] = x[i] + y[i];
    return this.finish(C);
  }
  addRowVector(x: Tensor, bias: Tensor): void {
    const X = this.t(x), b = this.t(bias).f, d = X.f;
    const n = b.length;
    for (let i = 0; i < d.length; i++) d[i] += b[i % n];
    this.finish(X);
  }
  rmsNorm(x: Tensor, w: Tensor, eps: number): Tensor {
    const X = this.t(x), W = this.t(w);
    const n = W.size, Y = this.newFloat(X.shape, X.dtype);
    k.rmsNorm(X.f, W.f, Y.f, X.size / n, n, eps);
    return this.finish(Y);
  }
  rmsNormBackward(x: Tensor, w: Tensor, dy: Tensor, eps: number): Tensor {
    const X = this.t(x), W = this.t(w), DY = this.t(dy);
    const n = W.size, DX = this.newFloat(X.shape, DY.dtype);
    k.rmsNormBackward(X.f, W.f, DY.f, DX.f, X.size / n, n, eps);
    return this.finish(DX);
  }
  rope(
    x: Tensor,
    cos: Tensor,
    sin: Tensor,
    geo: { batch: number; seqLen: number; nHeads: number; headDim: number; posOffset?: number },
    inverse = false,
  ): void {
    const X = this.t(x);
    k.rope(
      X.f,
      this.t(cos).f,
      this.t(sin).f,
      geo.batch,
      geo.seqLen,
      geo.nHeads,
      geo.headDim,
      geo.posOffset ?? 0,
      inverse,
    );
    this.finish(X);
  }
  attention(q: Tensor, kk: Tensor, v: Tensor, shape: AttentionShape): { out: Tensor; lse: Tensor } {
    const Q = this.t(q);
    const out = this.newFloat(Q.shape, Q.dtype);
    const lse = this.newFloat([shape.batch * shape.nHeads * shape.seqLen]);
    k.attention(Q.f, this.t(kk).f, this.t(v).f, out.f, lse.f, shape);
    return { out: this.finish(out), lse };
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
    const Q = this.t(q), K = this.t(kk), V = this.t(v), DO = this.t(dOut);
    const dq = this.newFloat(Q.shape, DO.dtype), dk = this.newFloat(K.shape, DO.dtype);
    const dv = this.newFloat(V.shape, DO.dtype);
    k.attentionBackward(Q.f, K.f, V.f, this.t(out).f, this.t(lse).f, DO.f, dq.f, dk.f, dv.f, shape);
    return { dq: this.finish(dq), dk: this.finish(dk), dv: this.finish(dv) };
  }
  siluMul(g: Tensor, u: Tensor): Tensor {
    const G = this.t(g), U = this.t(u);
    const H = this.newFloat(G.shape, G.dtype);
    const gd = G.f, ud = U.f, hd = H.f;
    for (let i = 0; i < hd.length; i++) hd[i] = gd[i] * k.sigmoid(gd[i]) * ud[i];
    return this.finish(H);
  }
  siluMulBackward(g: Tensor, u: Tensor, dh: Tensor): { dg: Tensor; du: Tensor } {
    const G = this.t(g), U = this.t(u), DH = this.t(dh);
    const dg = this.newFloat(G.shape, DH.dtype), du = this.newFloat(U.shape, DH.dtype);
    const gd = G.f, ud = U.f, d = DH.f, dgd = dg.f, dud = du.f;
    for (let i = 0; i < gd.length; i++) {
      const s = k.sigmoid(gd[i]);
      dud[i] = d[i] * gd[i] * s;
      dgd[i] = d[i] * ud[i] * s * (1 + gd[i] * (1 - s));
    }
    return { dg: this.finish(dg), du: this.finish(du) };
  }
  embedding(table: Tensor, ids: Tensor): Tensor {
    const T = this.t(table), I = this.t(ids);
    const H = T.size / T.shape[0];
    const idv = I.data as Int32Array;
    const out = this.newFloat([idv.length, H], T.dtype);
    const td = T.f, od = out.f;
    for (let i = 0; i < idv.length; i++) {
      if (idv[i] < 0 || idv[i] >= T.shape[0]) {
        throw new BackendError(`token id ${idv[i]} outside the vocabulary`);
      }
      od.set(td.subarray(idv[i] * H, (idv[i] + 1) * H), i * H);
    }
    return out;
  }
  crossEntropy(logits: Tensor, targets: Tensor): Tensor {
    const L = this.t(logits), T = this.t(targets).data as Int32Array;
    const n = T.length, V = L.size / n, ld = L.f;
    const out = this.newFloat([n]);
    for (let r = 0; r < n; r++) {
      const o = r * V;
      let m = -Infinity;
      for (let j = 0; j < V; j++) if (ld[o + j] > m) m = ld[o + j];
      let s = 0;
      for (let j = 0; j < V; j++) s += Math.exp(ld[o + j] - m);
      out.f[r] = m + Math.log(s) - ld[o + T[r]];
    }
    return out;
  }
  argmaxRows(x: Tensor): Tensor {
    const X = this.t(x), d = X.f;
    const rows = X.shape[0], V = X.size / rows;
    const out = new Int32Array(rows);
    for (let r = 0; r < rows; r++) {
      let best = 0;
      for (let j = 1; j < V; j++) if (d[r * V + j] > d[r * V + best]) best = j;
      out[r] = best;
    }
    return new CpuTensor(this, [rows], "i32", out);
  }

  // ---- quantization ---------------------------------------------------------------------------
  private quantArgs(
    w: CpuTensor,
    state: QuantState,
    p: IntQuantParams,
  ): [GroupLayout, QuantMath, QuantTunables] {
    const [n, kk] = [w.shape[0], w.size / w.shape[0]];
    const layout = { n, k: kk, g: p.groupSize };
    const roundScale = p.scaleDType === "f16"
      ? Math.f16round
      : p.scaleDType === "bf16"
      ? roundBf16
      : this.precision === "f32"
      ? Math.fround
      : (x: number) => x;
    const math: QuantMath = {
      bits: p.bits,
      sym: p.sym,
      roundScale,
      scaleThresh: p.scaleDType === "f32" ? 1e-8 : 1e-5,
    };
    const G = groupsPerRow(layout);
    const tun: QuantTunables = {
      v: this.t(state.v).f,
      minScale: this.t(state.minScale).f,
      maxScale: this.t(state.maxScale).f,
      wMin: this.t(state.wMin).f,
      wMax: this.t(state.wMax).f,
      initScale: state.initScale ? this.t(state.initScale).f : undefined,
    };
    if (tun.wMin.length !== n * G || tun.v!.length !== w.size) {
      throw new BackendError(`quant state does not match a [${n}, ${kk}] weight with group ${p.groupSize}`);
    }
    return [layout, math, tun];
  }
  fakeQuant(w: Tensor, state: QuantState, p: IntQuantParams, outDType?: DType): Tensor {
    const W = this.t(w);
    const [layout, math, tun] = this.quantArgs(W, state, p);
    const out = this.newFloat(W.shape, outDType ?? W.dtype);
    fakeQuantize(W.f, layout, math, tun, out.f);
    return this.finish(out);
  }
  fakeQuantBackward(w: Tensor, state: QuantState, p: IntQuantParams, dWq: Tensor): FakeQuantGrads {
    const W = this.t(w);
    const [layout, math, tun] = this.quantArgs(W, state, p);
    const dv = this.newFloat(W.shape),
      dMin = this.newFloat([tun.wMin.length]),
      dMax = this.newFloat([tun.wMin.length]);
    fakeQuantizeBackward(W.f, layout, math, tun, this.t(dWq).f, dv.f, dMin.f, dMax.f);
    return { dv, dMinScale: dMin, dMaxScale: dMax };
  }
  quantizeWeights(w: Tensor, state: QuantState, p: IntQuantParams): Promise<QuantizedWeights> {
    const W = this.t(w);
    const [layout, math, tun] = this.quantArgs(W, state, p);
    const G = groupsPerRow(layout);
    const res: QuantizedWeights = {
      codes: new Uint8Array(W.size),
      scales: new Float32Array(layout.n * G),
      zeros: new Int32Array(layout.n * G),
    };
    fakeQuantize(W.f, layout, math, tun, this.alloc(W.size), res);
    return Promise.resolve(res);
  }

  // ---- training -------------------------------------------------------------------------------
  mseLoss(y: Tensor, target: Tensor, mask: Tensor | undefined, scale: number): { loss: Tensor; dy: Tensor } {
    const Y = this.t(y), T = this.t(target);
    const rows = Y.shape[0], cols = Y.size / rows;
    const m = mask ? this.t(mask).f : undefined;
    const dy = this.newFloat(Y.shape);
    const yd = Y.f, td = T.f, dd = dy.f;
    const denom = rows * cols;
    let sum = 0;
    for (let r = 0; r < rows; r++) {
      const mr = m ? m[r] : 1;
      for (let c = 0; c < cols; c++) {
        const i = r * cols + c;
        const e = mr * (yd[i] - td[i]);
        sum += e * e;
        dd[i] = scale * 2 * e * mr / denom;
      }
    }
    const loss = this.newFloat([1]);
    loss.f[0] = sum / denom;
    return { loss, dy };
  }
  signSgdStep(p: Tensor, g: Tensor, lrArg: number | Tensor, clamp?: { lo: number; hi: number }): void {
    const P = this.t(p).f, G = this.t(g).f;
    const lr = typeof lrArg === "number" ? lrArg : this.t(lrArg).f[0];
    for (let i = 0; i < P.length; i++) {
      let x = P[i] - lr * Math.sign(G[i]);
      if (clamp) x = Math.min(Math.max(x, clamp.lo), clamp.hi);
      P[i] = x;
    }
    this.finish(this.t(p));
  }
  accumulate(acc: Tensor, x: Tensor, alpha = 1): void {
    const A = this.t(acc).f, X = this.t(x).f;
    for (let i = 0; i < A.length; i++) A[i] += alpha * X[i];
    this.finish(this.t(acc));
  }
  accumulateColumnSquares(acc: Tensor, x: Tensor): void {
    const A = this.t(acc).f, X = this.t(x).f;
    const cols = A.length, rows = X.length / cols;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) A[c] += X[r * cols + c] ** 2;
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
  [Symbol.dispose](): void {}
}
