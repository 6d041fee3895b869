/**
 * The attention ops of the CPU backend on the worker pool, by units b·nKvHeads + kh: the reference
 * kernel of attention.ts, or, when the BLAS library has `cblas_dgemm`, the tiled kernel of
 * attention_blas.ts, which each pool thread runs with its own handle on the library.
 */
import type { AttnGeo } from "./attention.ts";
import { attentionUnits } from "./attention.ts";
import type { FArr } from "./kernels.ts";
import type { OpsContext } from "./resources.ts";
import { attentionBackwardTask, attentionTask } from "./tasks.ts";

/** out, lse ← attention(q, k, v). */
export function forward(
  c: OpsContext,
  [q, k, v]: readonly [FArr, FArr, FArr],
  [out, lse]: readonly [FArr, FArr],
  g: AttnGeo,
): void {
  const args = { q, k, v, out, lse, g, blas: tiledWith(c) };
  onOneBlasThread(c, () => c.pool.run(attentionTask, attentionUnits(g), args));
}

/** dq, dk, dv ← the gradients of attention for dOut. */
export function backward(
  c: OpsContext,
  [q, k, v, out, lse, dOut]: readonly [FArr, FArr, FArr, FArr, FArr, FArr],
  [dq, dk, dv]: readonly [FArr, FArr, FArr],
  g: AttnGeo,
): void {
  const args = { q, k, v, out, lse, dOut, dq, dk, dv, g, blas: tiledWith(c) };
  onOneBlasThread(c, () => c.pool.run(attentionBackwardTask, attentionUnits(g), args));
}

/** The library path the tasks open for the tiled kernel, when it has dgemm. */
function tiledWith(c: OpsContext): string | undefined {
  return c.blas?.hasDgemm ? c.blas.path : undefined;
}

/**
 * Run `fn`, whose pool tasks call the BLAS library themselves, with the library on one thread (each
 * task already owns a core); the products the backend issues itself keep all threads.
 */
function onOneBlasThread(c: OpsContext, fn: () => void): void {
  const blas = c.pool.threads > 1 ? c.blas : undefined;
  blas?.setThreads(1);
  try {
    fn();
  } finally {
    blas?.setThreads(c.pool.threads);
  }
}
