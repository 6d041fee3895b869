/**
 * Dense products through cuBLASLt. The program's tensors are row-major and cuBLAS is column-major,
 * so C = op(A)·op(B) (row-major, [M, N]) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's A is our B
 * and its B is our A, with m = N, n = M and each storage row width as its leading dimension — no
 * copies. Mixed operand dtypes are cast first (to the backend's 16-bit compute dtype when one operand
 * has it, as autocast would, else to f32); an output dtype cuBLASLt cannot write from those operands
 * goes through an f32 scratch. Shapes cuBLASLt has no algorithm for use the simple fallback kernel.
 *
 * The algorithm of a shape is cuBLASLt's heuristic's first choice, fixed for the run (the plan cache)
 * and the same in every run on the same GPU and library. With `--deterministic` (CudaRuntime
 * .deterministic) it is also never a split-K algorithm, and the operands' alignment is passed as at
 * most PINNED_ALIGNMENT bytes, so where a tensor starts inside its allocation (a view of an activation
 * store, or a fresh upload when the store is spilled to the host) cannot change the algorithm.
 */
import type { DType } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import type { GemmType } from "../../../ffi/cuda/cublaslt.ts";
import type { CudaRuntime } from "./runtime.ts";
import { alignmentOf, CudaTensor, DTYPE_CODE } from "./tensor.ts";

/** What a CUDA op needs from the backend: the runtime, tensor creation, casts. */
export interface OpContext {
  readonly rt: CudaRuntime;
  readonly computeDType: "f32" | "bf16" | "f16";
  readonly allowTf32: boolean;
  newTensor(shape: readonly number[], dtype: DType): CudaTensor;
  /** A same-size copy of `x` in `dtype` (x itself when it already has it). */
  castTo(x: CudaTensor, dtype: DType): CudaTensor;
  /** dst ← src converted to dst's dtype (same size). */
  castInto(dst: CudaTensor, src: CudaTensor): void;
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
  out?: CudaTensor;
}

const isGemmType = (d: DType): d is GemmType => d === "f32" || d === "bf16" || d === "f16";

/**
 * The alignment hint under --deterministic: 16 bytes, what the tensor-core kernels load with (a
 * 16-byte vector, a TMA tile's base). Allocations are 256-byte aligned; a view is 16-byte aligned when
 * its offset is (the activation stores' sample boundaries are, for any hidden size divisible by 8).
 */
export const PINNED_ALIGNMENT = 16;

/** Test hook: route every product through the fallback kernel (it otherwise runs only rarely). */
export const gemmTuning = { forceFallback: false };

/** C = alpha·op(A)·op(B) + beta·C. */
export function matmul(op: OpContext, a: CudaTensor, b: CudaTensor, opts: MatmulOptions = {}): CudaTensor {
  const transA = opts.transA ?? false, transB = opts.transB ?? false;
  const M = transA ? a.cols : a.rows, K = transA ? a.rows : a.cols;
  const N = transB ? b.rows : b.cols, K2 = transB ? b.cols : b.rows;
  if (K !== K2) throw new BackendError(`matmul inner sizes differ: ${K} vs ${K2}`);
  const out = opts.out ?? op.newTensor([M, N], a.dtype === "f32" ? "f32" : a.dtype);
  if (out.size !== M * N) throw new BackendError(`matmul out has ${out.size} elements, need ${M}×${N}`);
  const alpha = opts.alpha ?? 1, beta = opts.out ? opts.beta ?? 0 : 0;
  if (M === 0 || N === 0) return out;

  // Operand dtype: one GEMM type for both.
  let ab: DType;
  if (a.dtype === b.dtype) ab = a.dtype;
  else if (op.computeDType !== "f32" && (a.dtype === op.computeDType || b.dtype === op.computeDType)) {
    ab = op.computeDType;
  } else ab = "f32";
  if (!isGemmType(ab) || K === 0 || gemmTuning.forceFallback) {
    simpleGemm(op, out, a, b, { M, N, K, transA, transB, alpha, beta });
    return out;
  }
  const A = op.castTo(a, ab), B = op.castTo(b, ab);
  // Output: cuBLASLt writes the operand type or f32.
  const direct = out.dtype === ab || out.dtype === "f32";
  const D = direct ? out : op.castTo(out, "f32");
  try {
    const rt = op.rt;
    const align = (addr: bigint) =>
      rt.deterministic ? Math.min(PINNED_ALIGNMENT, alignmentOf(addr)) : alignmentOf(addr);
    const plan = rt.blas.plan({
      transa: transB,
      transb: transA,
      m: N,
      n: M,
      k: K,
      lda: B.cols,
      ldb: A.cols,
      ldc: N,
      ab,
      cd: D.dtype as GemmType,
      compute: ab === "f32" && op.allowTf32 ? "tf32" : "f32",
      alignA: align(B.addr),
      alignB: align(A.addr),
      alignC: align(D.addr),
      noSplitK: rt.deterministic,
    }, rt.workspaceBytes);
    if (plan) {
      rt.blas.run(plan, {
        a: B.addr,
        b: A.addr,
        c: D.addr,
        d: D.addr,
        alpha,
        beta,
        workspace: rt.workspace.addr,
        workspaceBytes: rt.workspaceBytes,
        stream: rt.stream.handle,
      });
    } else {
      simpleGemm(op, D, A, B, { M, N, K, transA, transB, alpha, beta });
    }
    if (D !== out) op.castInto(out, D);
  } finally {
    if (A !== a) A[Symbol.dispose]();
    if (B !== b) B[Symbol.dispose]();
    if (D !== out) D[Symbol.dispose]();
  }
  return out;
}

/** The fallback kernel (ffi/cuda/gemm.cu): any dtypes, f32 arithmetic. */
function simpleGemm(
  op: OpContext,
  c: CudaTensor,
  a: CudaTensor,
  b: CudaTensor,
  s: { M: number; N: number; K: number; transA: boolean; transB: boolean; alpha: number; beta: number },
): void {
  const rt = op.rt;
  rt.begin()
    .ptr(c.addr).i32(DTYPE_CODE[c.dtype])
    .ptr(a.addr).i32(DTYPE_CODE[a.dtype])
    .ptr(b.addr).i32(DTYPE_CODE[b.dtype])
    .i32(s.M).i32(s.N).i32(s.K)
    .i64(a.cols).i64(b.cols).i64(s.N)
    .i32(s.transA ? 1 : 0).i32(s.transB ? 1 : 0)
    .f32(s.alpha).f32(s.beta);
  rt.launch(rt.fn("gemm_simple"), [Math.ceil(s.N / 16), Math.ceil(s.M / 16)], [256]);
}
