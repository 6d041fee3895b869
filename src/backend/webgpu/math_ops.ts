/**
 * Dispatchers of wgsl/elementwise.wgsl, wgsl/rms_norm.wgsl, wgsl/rope.wgsl and wgsl/reduce.wgsl:
 * add, addRowVector, siluMul(+backward), geluTanhMul(+backward), tanhSoftcap, signSgdStep,
 * rmsNorm(+backward), rope (with partial rotary), accumulateColumnSquares.
 */
import type { RopeGeo } from "../family_ops.ts";
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import { Params } from "./params.ts";
import { bind, chunks, forChunks, type GpuTensor } from "./tensor.ts";
import type { StorageKind } from "./storage.ts";

const WG = 256;

function sameSize(what: string, ...ts: GpuTensor[]): void {
  if (ts.some((t) => t.size !== ts[0].size)) {
    throw new BackendError(`${what}: sizes ${ts.map((t) => t.size).join(", ")} differ`);
  }
}

/**
 * out = a + alpha·b (out may alias a or b).
 *
 * @example
 * ```ts
 * add(ctx, x, o, x); // x += o
 * ```
 */
export function add(ctx: GpuContext, a: GpuTensor, b: GpuTensor, out: GpuTensor, alpha = 1): void {
  sameSize("add", a, b, out);
  binary(ctx, "add", a, b, out, alpha);
}

/** h = silu(g)·u. */
export function siluMul(ctx: GpuContext, g: GpuTensor, u: GpuTensor, out: GpuTensor): void {
  sameSize("siluMul", g, u, out);
  binary(ctx, "silu_mul", g, u, out);
}

function binary(ctx: GpuContext, entry: string, a: GpuTensor, b: GpuTensor, out: GpuTensor, alpha = 1): void {
  const { rt } = ctx;
  const k = rt.kernel({
    family: "elementwise",
    entry,
    bindings: ["rw", "rw", "rw"],
    types: { a: a.kind, b: b.kind, out: out.kind },
  });
  forChunks(rt, a.size, [{ t: a, per: 1 }, { t: b, per: 1 }, { t: out, per: 1 }], (_s, n, [A, B, O]) => {
    const p = new Params().u(n).u(A.base).u(B.base).u(O.base).u(1).f(alpha);
    rt.dispatch(k, p, [A.window, B.window, O.window], Math.ceil(n / WG));
  });
}

/** x[r, :] += bias (in place). */
export function addRowVector(ctx: GpuContext, x: GpuTensor, bias: GpuTensor): void {
  const { rt } = ctx;
  const cols = bias.size;
  if (x.size % cols !== 0) throw new BackendError(`addRowVector: ${x.size} elements are not rows of ${cols}`);
  const k = rt.kernel({
    family: "elementwise",
    entry: "add_row_vector",
    bindings: ["rw", "rw", "rw"],
    types: { a: x.kind, b: bias.kind },
  });
  forChunks(rt, x.size / cols, [{ t: x, per: cols }, { t: bias, per: 0 }], (_s, rows, [X, B]) => {
    const p = new Params().u(rows * cols).u(X.base).u(B.base).u(X.base).u(cols).f(1);
    rt.dispatch(k, p, [X.window, B.window, X.window], Math.ceil((rows * cols) / WG));
  }, 1);
}

/** h = gelu_tanh(g)·u (Gemma's GeGLU), a new tensor in g's dtype. */
export function geluTanhMul(ctx: GpuContext, g: GpuTensor, u: GpuTensor): GpuTensor {
  const out = ctx.alloc(g.shape, g.dtype);
  sameSize("geluTanhMul", g, u, out);
  binary(ctx, "gelu_tanh_mul", g, u, out);
  return out;
}

/** dg, du of geluTanhMul, new tensors in dh's dtype. */
export function geluTanhMulBackward(
  ctx: GpuContext,
  g: GpuTensor,
  u: GpuTensor,
  dh: GpuTensor,
): { dg: GpuTensor; du: GpuTensor } {
  const dg = ctx.alloc(g.shape, dh.dtype), du = ctx.alloc(u.shape, dh.dtype);
  siluMulBackward(ctx, g, u, dh, dg, du, "gelu_tanh_mul_backward");
  return { dg, du };
}

/** x ← cap·tanh(x/cap) in place. */
export function tanhSoftcap(ctx: GpuContext, x: GpuTensor, cap: number): void {
  if (!(cap > 0)) throw new BackendError(`tanhSoftcap: cap must be positive, got ${cap}`);
  const k = ctx.rt.kernel({
    family: "elementwise",
    entry: "tanh_softcap",
    bindings: ["rw", "rw", "rw"],
    types: { a: x.kind, b: x.kind, out: x.kind },
  });
  forChunks(ctx.rt, x.size, [{ t: x, per: 1 }], (_s, n, [X]) => {
    const p = new Params().u(n).u(X.base).u(X.base).u(X.base).u(1).f(cap);
    ctx.rt.dispatch(k, p, [X.window, X.window, X.window], Math.ceil(n / WG));
  });
}

/** dg, du of siluMul (or, with `entry`, of geluTanhMul). */
export function siluMulBackward(
  ctx: GpuContext,
  g: GpuTensor,
  u: GpuTensor,
  dh: GpuTensor,
  dg: GpuTensor,
  du: GpuTensor,
  entry = "silu_mul_backward",
): void {
  sameSize(entry, g, u, dh);
  const { rt } = ctx;
  const k = rt.kernel({
    family: "elementwise",
    entry,
    bindings: ["rw", "rw", "rw", "rw", "rw"],
    types: { g: g.kind, u: u.kind, dh: dh.kind, dg: dg.kind, du: du.kind },
  });
  const parts = [g, u, dh, dg, du].map((t) => ({ t, per: 1 }));
  forChunks(rt, g.size, parts, (_s, n, [G, U, DH, DG, DU]) => {
    const p = new Params().u(n).u(G.base).u(U.base).u(DH.base).u(DG.base).u(DU.base);
    rt.dispatch(k, p, [G.window, U.window, DH.window, DG.window, DU.window], Math.ceil(n / WG));
  });
}

/** p ← clamp(p − lr·sign(g)); lr a number or an f32 [1] tensor read on the device. */
export function signSgdStep(
  ctx: GpuContext,
  p: GpuTensor,
  g: GpuTensor,
  lr: number | GpuTensor,
  clamp?: { lo: number; hi: number },
): void {
  sameSize("signSgdStep", p, g);
  const { rt } = ctx;
  const k = rt.kernel({
    family: "elementwise",
    entry: "sign_sgd",
    bindings: ["rw", "rw", "rw"],
    types: { p: p.kind, gr: g.kind, lr: typeof lr === "number" ? p.kind : lr.kind },
  });
  // A number lr arrives as an f32 pair so p − lr is formed from the f64 value (see elementwise.wgsl).
  const hi = typeof lr === "number" ? Math.fround(lr) : 0,
    lo = typeof lr === "number" ? Math.fround(lr - hi) : 0;
  const L = typeof lr === "number" ? undefined : bind(rt, lr, 0, 1);
  forChunks(rt, p.size, [{ t: p, per: 1 }, { t: g, per: 1 }], (_s, n, [P, G]) => {
    const prm = new Params().u(n).u(P.base).u(G.base).u(clamp ? 1 : 0).f(hi).f(lo).f(clamp?.lo ?? 0)
      .f(clamp?.hi ?? 0).u(0).u(L ? 1 : 0).u(L?.base ?? 0).u(0);
    rt.dispatch(k, prm, [P.window, G.window, (L ?? P).window], Math.ceil(n / WG));
  });
}

/** Runs of n = w.size shorter than this get one thread each instead of a workgroup. */
const SMALL_RUN = 64;

/** y = rmsNorm(x) · w over runs of w.size elements. */
export function rmsNorm(ctx: GpuContext, x: GpuTensor, w: GpuTensor, y: GpuTensor, eps: number): void {
  norm(ctx, x, w, undefined, y, eps);
}

/** dx of rmsNorm for dy. */
export function rmsNormBackward(
  ctx: GpuContext,
  x: GpuTensor,
  w: GpuTensor,
  dy: GpuTensor,
  dx: GpuTensor,
  eps: number,
): void {
  norm(ctx, x, w, dy, dx, eps);
}

function norm(
  ctx: GpuContext,
  x: GpuTensor,
  w: GpuTensor,
  dy: GpuTensor | undefined,
  out: GpuTensor,
  eps: number,
) {
  const { rt } = ctx;
  const n = w.size;
  if (x.size % n !== 0) throw new BackendError(`rmsNorm: ${x.size} elements are not runs of ${n}`);
  const small = n < SMALL_RUN;
  const entry = (dy ? "rms_norm_backward" : "rms_norm") + (small ? "_small" : "");
  const types: Record<string, StorageKind> = dy
    ? { x: x.kind, w: w.kind, dy: dy.kind, dx: out.kind }
    : { x: x.kind, w: w.kind, y: out.kind };
  const k = rt.kernel({
    family: "rmsNorm",
    entry,
    bindings: dy ? ["r", "r", "r", "rw"] : ["r", "r", "rw"],
    types,
  });
  const parts = [{ t: x, per: n }, { t: w, per: 0 }, { t: out, per: n }];
  if (dy) parts.push({ t: dy, per: n });
  forChunks(rt, x.size / n, parts, (_s, runs, [X, W, O, DY]) => {
    const p = new Params().u(runs).u(n).u(X.base).u(W.base).u(O.base).u(DY?.base ?? 0).f(eps);
    const windows = dy ? [X.window, W.window, DY.window, O.window] : [X.window, W.window, O.window];
    rt.dispatch(k, p, windows, small ? Math.ceil(runs / WG) : runs);
  }, 1);
}

/** Backend.rope, in place on x. */
export function rope(
  ctx: GpuContext,
  x: GpuTensor,
  cos: GpuTensor,
  sin: GpuTensor,
  geo: RopeGeo,
  inverse: boolean,
): void {
  const { rt } = ctx;
  const rot = geo.rotaryDim ?? geo.headDim;
  if (!(Number.isInteger(rot) && rot > 0 && rot % 2 === 0 && rot <= geo.headDim)) {
    throw new BackendError(`rope rotaryDim must be even, positive and ≤ headDim ${geo.headDim}, got ${rot}`);
  }
  const half = rot / 2, rows = geo.batch * geo.seqLen, off = geo.posOffset ?? 0;
  if (x.size !== rows * geo.nHeads * geo.headDim) throw new BackendError(`rope: x has ${x.size} elements`);
  if ((off + geo.seqLen) * half > cos.size) {
    throw new BackendError(`rope: tables cover ${cos.size / half} positions, need ${off + geo.seqLen}`);
  }
  const k = rt.kernel({
    family: "rope",
    entry: "rope",
    bindings: ["rw", "r", "r"],
    types: { x: x.kind, cs: cos.kind, sn: sin.kind },
  });
  // Only the table rows [posOffset, posOffset + seqLen) are read.
  const C = bind(rt, cos, off * half, geo.seqLen * half), S = bind(rt, sin, off * half, geo.seqLen * half);
  const width = geo.nHeads * geo.headDim;
  forChunks(rt, rows, [{ t: x, per: width }], (r0, cnt, [X]) => {
    const pairs = cnt * geo.nHeads * half;
    const p = new Params().u(pairs).u(geo.nHeads).u(half).u(geo.seqLen).u(r0).u(X.base).u(C.base).u(S.base)
      .f(inverse ? -1 : 1).u(geo.headDim);
    rt.dispatch(k, p, [X.window, C.window, S.window], Math.ceil(pairs / WG));
  }, 1);
}

/** Rows per slice of the column-square partial sums. */
const COLSQ_ROWS = 64;

/** acc[c] += Σ_r x[r, c]². */
export function accumulateColumnSquares(ctx: GpuContext, acc: GpuTensor, x: GpuTensor): void {
  const { rt } = ctx;
  if (acc.dtype !== "f32") throw new BackendError(`accumulateColumnSquares needs an f32 accumulator`);
  const cols = acc.size;
  if (x.size % cols !== 0) {
    throw new BackendError(`accumulateColumnSquares: ${x.size} elements are not rows of ${cols}`);
  }
  const part = rt.kernel({
    family: "reduce",
    entry: "colsq_partial",
    bindings: ["r", "rw"],
    types: { x: x.kind },
  });
  const fin = rt.kernel({ family: "reduce", entry: "colsq_finish", bindings: ["r", "rw"] });
  const A = bind(rt, acc);
  // Chunks of rows whose x window and partial-sum scratch both fit one binding.
  for (
    const [r0, rows] of chunks(rt, x.size / cols, [cols * x.kind.bytes, (cols * 4) / COLSQ_ROWS], COLSQ_ROWS)
  ) {
    const X = bind(rt, x, r0 * cols, rows * cols);
    const slices = Math.ceil(rows / COLSQ_ROWS);
    using partial = ctx.alloc([slices, cols], "f32");
    const P = bind(rt, partial);
    const p = new Params().u(rows).u(cols).u(X.base).u(A.base).u(slices).u(COLSQ_ROWS);
    rt.dispatch(part, p, [X.window, P.window], [Math.ceil(cols / WG), slices, 1]);
    rt.dispatch(fin, p, [P.window, A.window], Math.ceil(cols / WG));
  }
}
