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

/**
 * SignRoundV2's outlier-suppressed loss (sign_roundv2/quantizer.py:362-398): the max(1, ⌊n/1000⌋)
 * elements of largest |y − t| (over the whole batch, token mask not applied yet; ties to the lower
 * index) are left out, then mean((|y − t| · mask · keep)²) over all n elements, in f32 as torch.
 * dy = scale · ∂loss/∂y. On the calling thread: a full sort of |y − t| per call.
 */
export function outlierSuppressedMse(
  y: FArr,
  t: FArr,
  mask: FArr | undefined,
  dy: FArr,
  cols: number,
  scale: number,
): number {
  const n = y.length;
  const diff = new Float32Array(n);
  for (let i = 0; i < n; i++) diff[i] = Math.abs(Math.fround(y[i] - t[i]));
  const k = Math.max(1, Math.floor(n / 1000));
  const sorted = diff.slice().sort((a, b) => b - a);
  const thr = sorted[k - 1];
  let above = 0;
  for (let i = 0; i < n; i++) if (diff[i] > thr) above++;
  let tiesToDrop = k - above;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let keep = diff[i] < thr ? 1 : diff[i] > thr ? 0 : tiesToDrop-- > 0 ? 0 : 1;
    if (Number.isNaN(diff[i])) keep = 1;
    const m = (mask ? mask[Math.floor(i / cols)] : 1) * keep;
    const e = Math.fround(y[i] - t[i]) * m;
    sum += e * e;
    dy[i] = scale * 2 * e * m / n;
  }
  return sum / n;
}
