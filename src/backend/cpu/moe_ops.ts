/**
 * The CPU backend's mixture-of-experts row ops (spec/MODELS.md § 2, § 7.4): rows of the hidden
 * states gathered per expert (optionally scaled by the routing weights), expert outputs scattered
 * back with a weighted add, per-row dot products for the routing-weight gradient, and the synchronous
 * read the host-side routing needs inside the block forward.
 *
 * Plain loops on the calling thread: they move T·k rows of H values against the experts' matmuls of
 * T·k·H·I multiply-adds, so they are not worth the worker pool. Products and sums are formed in f64
 * and stored into the backend's float storage (f32, or f64 for gradient checks); bf16/f16 results
 * are rounded to their dtype (CpuTensor.rounded), a scatter-add after every addition, as torch's
 * `index_add_` in that dtype does.
 */
import type { DType, Tensor } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { roundBf16 } from "../../tensor/dtype.ts";
import type { CpuTensor } from "./cpu_tensor.ts";

/** What the ops need of the backend: its tensors and new float tensors. */
export interface MoeOpsHost {
  tensor(x: Tensor): CpuTensor;
  newFloat(shape: readonly number[], dtype?: DType): CpuTensor;
}

/** Rows, columns and float values of a 2-D float tensor (`[rows, ...]` flattened to columns). */
function matrix(t: CpuTensor, what: string): { rows: number; cols: number } {
  if (t.dtype === "i32" || t.dtype === "u8") throw new BackendError(`${what}: expected a float tensor`);
  const rows = t.shape[0] ?? 1;
  return { rows, cols: rows === 0 ? 0 : t.size / rows };
}

/** The i32 row indices, each checked to lie in `[0, limit)`. */
function rowIndices(t: CpuTensor, limit: number, what: string): Int32Array {
  const r = t.i;
  for (let i = 0; i < r.length; i++) {
    if (r[i] < 0 || r[i] >= limit) throw new BackendError(`${what}: row index ${r[i]} outside [0, ${limit})`);
  }
  return r;
}

/** The per-row scale, one value per index (absent: undefined, meaning 1). */
function rowScale(h: MoeOpsHost, scale: Tensor | undefined, n: number, what: string) {
  if (!scale) return undefined;
  const s = h.tensor(scale).f;
  if (s.length !== n) throw new BackendError(`${what}: ${s.length} scales for ${n} rows`);
  return s;
}

/** Backend.gatherRows: out[i, :] = scale[i]·x[rows[i], :] in x's dtype. */
export function gatherRows(h: MoeOpsHost, x: Tensor, rows: Tensor, scale?: Tensor): Tensor {
  const X = h.tensor(x);
  const { rows: nx, cols } = matrix(X, "gatherRows");
  const r = rowIndices(h.tensor(rows), nx, "gatherRows");
  const s = rowScale(h, scale, r.length, "gatherRows");
  const out = h.newFloat([r.length, cols], X.dtype);
  const xf = X.f, of = out.f;
  for (let i = 0; i < r.length; i++) {
    const src = r[i] * cols, dst = i * cols, a = s ? s[i] : 1;
    for (let c = 0; c < cols; c++) of[dst + c] = a * xf[src + c];
  }
  return out.rounded();
}

/** The rounding a stored value of `dtype` gets (none for f32: the storage itself rounds). */
function dtypeRounding(dtype: DType): ((v: number) => number) | undefined {
  return dtype === "bf16" ? roundBf16 : dtype === "f16" ? Math.f16round : undefined;
}

/** Backend.scatterAddRows: out[rows[i], :] += scale[i]·src[i, :], in place; rows may repeat. */
export function scatterAddRows(h: MoeOpsHost, out: Tensor, src: Tensor, rows: Tensor, scale?: Tensor): void {
  const O = h.tensor(out), S = h.tensor(src);
  const { rows: no, cols } = matrix(O, "scatterAddRows");
  const r = rowIndices(h.tensor(rows), no, "scatterAddRows");
  const sc = matrix(S, "scatterAddRows");
  if (sc.rows !== r.length || (r.length > 0 && sc.cols !== cols)) {
    throw new BackendError(`scatterAddRows: src [${S.shape}] for ${r.length} rows of ${cols} columns`);
  }
  const s = rowScale(h, scale, r.length, "scatterAddRows");
  const round = dtypeRounding(O.dtype);
  const of = O.f, sf = S.f;
  for (let i = 0; i < r.length; i++) {
    const dst = r[i] * cols, from = i * cols, a = s ? s[i] : 1;
    for (let c = 0; c < cols; c++) {
      const v = of[dst + c] + a * sf[from + c];
      of[dst + c] = round ? round(v) : v;
    }
  }
}

/** Backend.rowDots: f32 `[n]`, out[i] = Σ_c a[i, c]·b[i, c] (summed in f64). */
export function rowDots(h: MoeOpsHost, a: Tensor, b: Tensor): Tensor {
  const A = h.tensor(a), B = h.tensor(b);
  const { rows, cols } = matrix(A, "rowDots");
  if (B.size !== A.size || (B.shape[0] ?? 1) !== rows) {
    throw new BackendError(`rowDots: shapes [${A.shape}] and [${B.shape}] differ`);
  }
  matrix(B, "rowDots");
  const out = h.newFloat([rows]);
  const af = A.f, bf = B.f, of = out.f;
  for (let i = 0; i < rows; i++) {
    let acc = 0;
    for (let c = i * cols, end = c + cols; c < end; c++) acc += af[c] * bf[c];
    of[i] = acc;
  }
  return out;
}

/**
 * Backend.readSync: a copy of the values, Float32Array from an f32-precision backend and the full
 * Float64Array from an f64 one (gradient checks must see routing logits unrounded).
 */
export function readSync(h: MoeOpsHost, x: Tensor): Float32Array | Float64Array {
  const f = h.tensor(x).f;
  return f instanceof Float64Array ? Float64Array.from(f) : Float32Array.from(f);
}
