/**
 * Dense products of the CPU backend. With a CBLAS library (ffi/blas) they are one `cblas_sgemm`
 * (`cblas_dgemm` in f64) call, threaded by the library itself; without one, the TypeScript kernel
 * `matmulABt` runs on row ranges of C across the worker pool, after the operands are transposed into
 * its layout exactly as kernels.ts's matmulAB/AtB/AtBt do, so any thread count gives their bits.
 */
import type { Cblas } from "../../../ffi/blas/cblas.ts";
import type { WorkerPool } from "../../parallel/pool.ts";
import type { HostMemory } from "./cpu_tensor.ts";
import type { FArr } from "./kernels.ts";
import { matmulRowsTask, transposeTask } from "./tasks.ts";

/** One product's operands: C `[M, N]` = alpha·op(A)·op(B) + beta·C with op(A) `[M, K]`, op(B) `[K, N]`. */
export interface Gemm {
  a: FArr;
  b: FArr;
  c: FArr;
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  alpha: number;
  beta: number;
}

/** Multiply-adds per range worth a hand-off to another thread (~50 µs of dispatch at ~1 GFLOP/s). */
const MIN_RANGE_FLOPS = 1 << 17;

/** Run one product on the BLAS library when it has this precision, else the pool. */
export function gemm(g: Gemm, pool: WorkerPool, mem: HostMemory, blas?: Cblas): void {
  const { a, b, c, M, N, K, transA, transB, alpha, beta } = g;
  const lda = transA ? M : K, ldb = transB ? K : N;
  if (blas && a instanceof Float32Array && b instanceof Float32Array && c instanceof Float32Array) {
    blas.sgemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, N);
    return;
  }
  if (blas?.hasDgemm && a instanceof Float64Array && b instanceof Float64Array && c instanceof Float64Array) {
    blas.dgemm(transA, transB, M, N, K, alpha, a, lda, b, ldb, beta, c, N);
    return;
  }
  const x = transA ? transposed(a, K, M, pool, mem) : a;
  const yT = transB ? b : transposed(b, K, N, pool, mem);
  const grain = Math.ceil(MIN_RANGE_FLOPS / Math.max(1, N * K));
  pool.run(matmulRowsTask, M, { x, yT, c, N, K, alpha, beta }, grain);
  if (x !== a) mem.release(x);
  if (yT !== b) mem.release(yT);
}

/** x `[rows, cols]` transposed into new memory of the same precision. */
function transposed(x: FArr, rows: number, cols: number, pool: WorkerPool, mem: HostMemory): FArr {
  const out = x instanceof Float64Array ? mem.f64(rows * cols) : mem.f32(rows * cols);
  pool.run(transposeTask, cols, { x, out, rows, cols }, Math.ceil(MIN_RANGE_FLOPS / Math.max(1, rows)));
  return out;
}
