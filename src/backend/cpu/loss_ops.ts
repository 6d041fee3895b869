/**
 * The CPU backend's loss ops on the worker pool: masked MSE with its gradient, cross-entropy and
 * argmax per row (the kernels are tasks.ts over kernels.ts).
 */
import type { FArr } from "./kernels.ts";
import type { OpsContext } from "./resources.ts";
import * as tk from "./tasks.ts";

/** dy ← scale·∂loss/∂y for y, t `[rows, cols]`; returns loss = Σ mask_r·(y − t)² / (rows·cols). */
export function mseLoss(
  c: OpsContext,
  y: FArr,
  t: FArr,
  mask: FArr | undefined,
  dy: FArr,
  cols: number,
  scale: number,
) {
  const rows = y.length / cols;
  const rowSums = c.mem.f64(rows);
  const args = { y, t, mask, dy, rowSums, cols, scale, denom: rows * cols };
  c.pool.run(tk.mseTask, rows, args, tk.grain(cols));
  let sum = 0;
  for (let r = 0; r < rows; r++) sum += rowSums[r];
  c.mem.release(rowSums);
  return sum / (rows * cols);
}

/** Negative log-likelihood of each row's target: logits `[n, V]`, targets `[n]` → out `[n]`. */
export function crossEntropy(c: OpsContext, logits: FArr, targets: Int32Array, out: FArr): void {
  const n = targets.length, V = logits.length / n;
  c.pool.run(tk.crossEntropyTask, n, { logits, targets, out, V }, tk.grain(V));
}

/** Index of the largest value of each row of x `[rows, V]` into out `[rows]`. */
export function argmaxRows(c: OpsContext, x: FArr, out: Int32Array): void {
  const rows = out.length, V = x.length / rows;
  c.pool.run(tk.argmaxTask, rows, { x, out, V }, tk.grain(V));
}
