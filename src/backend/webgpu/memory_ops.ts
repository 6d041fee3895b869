/**
 * Dispatchers of wgsl/memory.wgsl: fill, copy with dtype conversion, gatherSamples, embedding and
 * the device-side keepBest.
 */
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import type { KernelSpec } from "./kernels.ts";
import { Params } from "./params.ts";
import { bind, forChunks, type GpuTensor } from "./tensor.ts";
import { isFloat } from "./storage.ts";

const WG = 256;

/**
 * t ← value everywhere (floats rounded to t's dtype; integers by bit pattern).
 *
 * @example
 * ```ts
 * fill(ctx, v, 0);
 * ```
 */
export function fill(ctx: GpuContext, t: GpuTensor, value: number): void {
  const { rt } = ctx;
  const float = isFloat(t.dtype);
  const spec: KernelSpec = float
    ? { family: "memory", entry: "fill", bindings: ["rw"], types: { out: t.kind } }
    : { family: "memory", entry: "fill_bits", bindings: ["rw"] };
  const k = rt.kernel(spec);
  forChunks(rt, t.size, [{ t, per: 1 }], (_s, n, [o]) => {
    const p = new Params().u(n).u(o.base).f(value).u(t.dtype === "u8" ? value & 255 : value | 0);
    rt.dispatch(k, p, [o.window], Math.ceil(n / WG));
  });
}

/**
 * dst[dstStart + i] ← src[srcStart + i] for i < count, converting dtype; with `flag` only where the
 * device flag word is set (keepBest).
 */
export function copyRange(
  ctx: GpuContext,
  dst: GpuTensor,
  src: GpuTensor,
  count: number,
  dstStart = 0,
  srcStart = 0,
  flag?: GpuTensor,
): void {
  const { rt } = ctx;
  const intCopy = !isFloat(dst.dtype) && !isFloat(src.dtype) && dst.kind.wgsl === src.kind.wgsl;
  if (intCopy && flag) throw new BackendError("keepBest of integer tensors is not supported");
  const spec: KernelSpec = {
    family: "memory",
    entry: flag ? "copy_if" : intCopy ? "copy_int" : "copy",
    bindings: flag ? ["rw", "rw", "rw"] : ["rw", "rw"],
    types: { src: src.kind, dst: dst.kind },
  };
  const k = rt.kernel(spec);
  const parts = [{ t: src, per: 1, start: srcStart }, { t: dst, per: 1, start: dstStart }];
  forChunks(rt, count, parts, (_s, n, [S, D]) => {
    const p = new Params().u(n).u(S.base).u(D.base).u(0);
    const windows = [S.window, D.window];
    if (flag) windows.push(bind(rt, flag, 0, 1).window);
    rt.dispatch(k, p, windows, Math.ceil(n / WG));
  });
}

/**
 * Backend.gatherSamples: dst sample i ← src sample indices[i], where a sample is `rowsPerSample`
 * rows. Runs as the embedding gather with one "row" per sample, so the indices may live on the
 * device (an i32 tensor) and src may be larger than one binding.
 */
export function gatherSamples(
  ctx: GpuContext,
  dst: GpuTensor,
  src: GpuTensor,
  indices: GpuTensor,
  rowsPerSample: number,
  firstSample?: number,
): void {
  const per = rowsPerSample * src.cols;
  const n = indices.size, samples = src.size / per;
  if (dst.size < n * per) {
    throw new BackendError(`gatherSamples: dst holds ${dst.size} elements, need ${n * per}`);
  }
  if (firstSample !== undefined) {
    // One segment of a split source: the kernel copies the indices it holds and skips the rest.
    gatherRows(ctx, src, per, samples, indices, dst, firstSample);
    return;
  }
  if (indices.hostInts?.some((i) => i < 0 || i >= samples)) {
    throw new BackendError(`gatherSamples: a sample index is outside 0..${samples - 1}`);
  }
  gatherRows(ctx, src, per, samples, indices, dst);
}

/** Backend.embedding: out rows ← table rows of ids, split over output rows and table rows. */
export function embedding(ctx: GpuContext, table: GpuTensor, ids: GpuTensor, out: GpuTensor): void {
  if (ids.hostInts) {
    const bad = ids.hostInts.find((id) => id < 0 || id >= table.rows);
    if (bad !== undefined) throw new BackendError(`token id ${bad} outside the vocabulary`);
  }
  gatherRows(ctx, table, table.cols, table.rows, ids, out);
}

/**
 * out[i, :] ← table[ids[i], :] for `ids.size` rows of `H` elements (table has `V` rows). With
 * `firstRow` the table holds rows [firstRow, firstRow + V) of a larger one and other ids are skipped.
 */
function gatherRows(
  ctx: GpuContext,
  table: GpuTensor,
  H: number,
  V: number,
  ids: GpuTensor,
  out: GpuTensor,
  firstRow?: number,
): void {
  const { rt } = ctx;
  const n = ids.size;
  const k = rt.kernel({
    family: "memory",
    entry: "embedding",
    bindings: ["r", "r", "rw"],
    types: { table: table.kind, out: out.kind },
  });
  forChunks(rt, n, [{ t: ids, per: 1 }, { t: out, per: H }], (_s0, cnt, [I, O]) => {
    forChunks(rt, V, [{ t: table, per: H }], (r0, rows, [T]) => {
      const row0 = (firstRow ?? 0) + r0, vocab = firstRow === undefined ? V : 0xffffffff;
      const p = new Params().u(cnt).u(H).u(row0).u(rows).u(vocab).u(T.base).u(I.base).u(O.base);
      rt.dispatch(k, p, [T.window, I.window, O.window], Math.ceil((cnt * H) / WG));
    }, 1);
  });
}

/** Backend.keepBest on the device: flag ← loss < best; copy pairs where flagged; best ← loss. */
export function keepBest(
  ctx: GpuContext,
  loss: GpuTensor,
  best: GpuTensor,
  pairs: readonly (readonly [GpuTensor, GpuTensor])[],
): void {
  const { rt } = ctx;
  using flag = ctx.alloc([1], "i32");
  const L = bind(rt, loss, 0, 1), B = bind(rt, best, 0, 1), F = bind(rt, flag, 0, 1);
  const types = { loss: loss.kind, best: best.kind };
  const p = () => new Params().u(L.base).u(B.base).u(0).u(0);
  const spec = (entry: string): KernelSpec => ({
    family: "memory",
    entry,
    bindings: ["rw", "rw", "rw"],
    types,
  });
  rt.dispatch(rt.kernel(spec("keep_best_flag")), p(), [L.window, B.window, F.window], 1);
  for (const [src, dst] of pairs) {
    if (src.size !== dst.size) {
      throw new BackendError(`keepBest: pair sizes ${src.size} and ${dst.size} differ`);
    }
    copyRange(ctx, dst, src, src.size, 0, 0, flag);
  }
  rt.dispatch(rt.kernel(spec("keep_best_commit")), p(), [L.window, B.window, F.window], 1);
}
