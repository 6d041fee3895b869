/**
 * Dispatchers of wgsl/loss.wgsl: masked MSE with its gradient, cross-entropy and argmax per row.
 */
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import { Params } from "./params.ts";
import { bind, chunks, forChunks, type GpuTensor } from "./tensor.ts";

const WG = 256;

/**
 * loss = Σ mask_r·(y − t)² / (rows·cols) (f32 [1]) and dy = scale·∂loss/∂y (f32, y's shape).
 *
 * @example
 * ```ts
 * const { loss, dy } = mseLoss(ctx, y, target, mask, 1);
 * ```
 */
export function mseLoss(
  ctx: GpuContext,
  y: GpuTensor,
  target: GpuTensor,
  mask: GpuTensor | undefined,
  scale: number,
): { loss: GpuTensor; dy: GpuTensor } {
  const { rt } = ctx;
  if (y.size !== target.size) {
    throw new BackendError(`mseLoss: y has ${y.size} elements, target ${target.size}`);
  }
  const rows = y.rows, cols = y.cols, denom = rows * cols;
  if (mask && mask.size !== rows) {
    throw new BackendError(`mseLoss: mask has ${mask.size} entries for ${rows} rows`);
  }
  const dy = ctx.alloc(y.shape, "f32");
  const loss = ctx.alloc([1], "f32");
  const kPart = rt.kernel({
    family: "loss",
    entry: "mse_partial",
    bindings: ["r", "r", "r", "rw", "rw"],
    types: { y: y.kind, t: target.kind, m: (mask ?? y).kind },
  });
  const kSum = rt.kernel({ family: "loss", entry: "sum_partials", bindings: ["r", "rw"] });
  // Chunks of whole rows; each workgroup of a chunk owns one partial slot.
  const list = chunks(rt, rows, [cols * y.kind.bytes, cols * target.kind.bytes, cols * 4, 4 * cols / WG], 1);
  const slots = list.map(([, n]) => Math.ceil((n * cols) / WG));
  using partial = ctx.alloc([Math.max(1, slots.reduce((a, b) => a + b, 0))], "f32");
  let slot = 0;
  list.forEach(([r0, n], ci) => {
    const Y = bind(rt, y, r0 * cols, n * cols), T = bind(rt, target, r0 * cols, n * cols);
    const D = bind(rt, dy, r0 * cols, n * cols);
    const M = mask ? bind(rt, mask, r0, n) : Y;
    const P = bind(rt, partial, slot, slots[ci]);
    const p = new Params().u(n * cols).u(cols).u(Y.base).u(T.base).u(M.base).u(D.base).u(mask ? 1 : 0).u(
      P.base,
    )
      .f(scale * 2 / denom).f(1 / denom).u(slots[ci]).u(0);
    rt.dispatch(kPart, p, [Y.window, T.window, M.window, D.window, P.window], slots[ci]);
    slot += slots[ci];
  });
  forChunks(rt, 1, [{ t: partial, per: 0 }, { t: loss, per: 0 }], (_s, _n, [P, L]) => {
    const p = new Params().u(0).u(cols).u(0).u(0).u(0).u(L.base).u(0).u(P.base).f(0).f(1 / denom).u(slot).u(
      0,
    );
    rt.dispatch(kSum, p, [P.window, L.window], 1);
  });
  return { loss, dy };
}

/** −log softmax(logits)[target] per row (f32 [rows]). */
export function crossEntropy(ctx: GpuContext, logits: GpuTensor, targets: GpuTensor, out: GpuTensor): void {
  rowKernel(ctx, "cross_entropy", logits, targets, out);
}

/** Index of the row maximum (lowest on ties), i32 [rows]. */
export function argmaxRows(ctx: GpuContext, x: GpuTensor, out: GpuTensor): void {
  rowKernel(ctx, "argmax_rows", x, undefined, out);
}

function rowKernel(
  ctx: GpuContext,
  entry: string,
  x: GpuTensor,
  targets: GpuTensor | undefined,
  out: GpuTensor,
) {
  const { rt } = ctx;
  const rows = out.size, cols = x.size / Math.max(1, rows);
  if (targets && targets.size !== rows) {
    throw new BackendError(`crossEntropy: ${targets.size} targets for ${rows} rows`);
  }
  const k = rt.kernel({
    family: "loss",
    entry,
    bindings: targets ? ["r", "r", "rw"] : ["r", "rw"],
    types: { x: x.kind },
  });
  const parts = [{ t: x, per: cols }, { t: out, per: 1 }];
  if (targets) parts.push({ t: targets, per: 1 });
  forChunks(rt, rows, parts, (_s, n, [X, O, T]) => {
    const p = new Params().u(n).u(cols).u(X.base).u(T?.base ?? 0).u(O.base);
    rt.dispatch(k, p, targets ? [X.window, T.window, O.window] : [X.window, O.window], n);
  }, 1);
}
