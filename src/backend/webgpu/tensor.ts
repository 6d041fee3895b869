/**
 * GPU tensors, the byte windows ops bind, and the splitting of work into chunks whose windows fit
 * `maxStorageBufferBindingSize`.
 *
 * A tensor is an element range of one pooled buffer (views share it). An op binds the part of each
 * tensor its chunk touches: the binding starts at the element's byte offset rounded down to
 * `minStorageBufferOffsetAlignment`, and the kernel receives the remaining element offset (`base`)
 * as a uniform. A tensor larger than one binding is therefore never rejected: the op is split into
 * chunks (rows, runs, weight rows, batch entries) each of whose windows fits.
 */
import type { Backend, DType, Tensor } from "../backend.ts";
import { BackendError, DeviceError } from "../../errors.ts";
import type { BufferPool } from "./buffer_pool.ts";
import type { BufferWindow, GpuRuntime } from "./runtime.ts";
import type { StorageKind } from "./storage.ts";

/** One pooled buffer and the storage kind of its elements. */
export class GpuStorage {
  private released = false;
  constructor(readonly buffer: GPUBuffer, readonly kind: StorageKind, private readonly pool: BufferPool) {}
  /** Whether the buffer went back to the pool. */
  get isReleased(): boolean {
    return this.released;
  }
  /** Return the buffer to the pool (once). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.pool.release(this.buffer);
  }
}

/** A tensor in a GPU buffer: `size` elements starting at element `offset` of `storage`. */
export class GpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly backend: Backend,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly storage: GpuStorage,
    readonly offset = 0,
    readonly isView = false,
    /** Host copy of an uploaded i32 tensor (token ids), for checks without a readback. */
    readonly hostInts?: Int32Array,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
  }
  /** Storage kind of the elements. */
  get kind(): StorageKind {
    return this.storage.kind;
  }
  /** Rows of a 2-D reading: shape[0] (1 for a scalar). */
  get rows(): number {
    return this.shape.length === 0 ? 1 : this.shape[0];
  }
  /** Elements per row. */
  get cols(): number {
    return this.rows === 0 ? 0 : this.size / this.rows;
  }
  [Symbol.dispose](): void {
    if (!this.isView) this.storage.release();
  }
}

/** A binding plus the element offset the kernel adds to its indices. */
export interface Bound {
  window: BufferWindow;
  base: number;
}

/**
 * Bind elements `[start, start + count)` of tensor `t`.
 *
 * @example
 * ```ts
 * const { window, base } = bind(rt, x, 0, x.size);
 * ```
 */
export function bind(rt: GpuRuntime, t: GpuTensor, start = 0, count = t.size - start): Bound {
  if (t.storage.isReleased) throw new BackendError("use of a disposed tensor");
  const es = t.kind.bytes;
  const byteStart = (t.offset + start) * es;
  const offset = Math.floor(byteStart / rt.offsetAlign) * rt.offsetAlign;
  // Never bind an empty range; round up to whole 4-byte words (buffers are allocated in larger classes).
  const size = Math.min(
    Math.ceil((byteStart - offset + Math.max(1, count) * es) / 4) * 4,
    t.storage.buffer.size - offset,
  );
  if (size > rt.maxBinding) {
    throw new BackendError(
      `internal: a ${size}-byte binding exceeds maxStorageBufferBindingSize ${rt.maxBinding}`,
    );
  }
  return { window: { buffer: t.storage.buffer, offset, size }, base: (byteStart - offset) / es };
}

/** Largest element count of one chunk so that a window of `count·perItemBytes` fits in a binding. */
function fitting(rt: GpuRuntime, perItemBytes: number): number {
  return Math.floor((rt.maxBinding - rt.offsetAlign) / perItemBytes);
}

/**
 * Split `items` (rows, runs, elements) into chunks so that for every tensor a window of
 * `count · bytesPerItem[i]` bytes fits one binding. Chunk sizes are multiples of `multiple` when
 * possible (keeps vector loads aligned).
 *
 * @example
 * ```ts
 * for (const [start, count] of chunks(rt, rows, [x.cols * 4, y.cols * 4])) { ... }
 * ```
 */
export function chunks(
  rt: GpuRuntime,
  items: number,
  bytesPerItem: readonly number[],
  multiple = 4,
): [number, number][] {
  let per = Math.min(...bytesPerItem.filter((b) => b > 0).map((b) => fitting(rt, b)), Math.max(1, items));
  if (per < 1) {
    throw new DeviceError(
      `${rt.op || "an op"} binds items (rows, samples) of ${
        Math.max(...bytesPerItem)
      } bytes, and one does not fit maxStorageBufferBindingSize (${rt.limitsText()})`,
      "try a smaller --seqlen",
    );
  }
  if (per < items && per >= multiple) per -= per % multiple;
  const out: [number, number][] = [];
  for (let s = 0; s < items; s += per) out.push([s, Math.min(per, items - s)]);
  if (out.length === 0) out.push([0, 0]);
  return out;
}

/** Check that every tensor belongs to this backend's runtime and is still alive. */
export function gpu(t: Tensor): GpuTensor {
  if (!(t instanceof GpuTensor)) throw new BackendError("tensor belongs to another backend");
  if (t.storage.isReleased) throw new BackendError("use of a disposed tensor");
  return t;
}

/** A tensor an op binds per chunk: `per` elements per item (0 = the whole tensor every chunk). */
export interface ChunkPart {
  t: GpuTensor;
  per: number;
  /** Element of `t` where item 0 starts (default 0). */
  start?: number;
}

/**
 * Run an op over `items` items (elements, rows, runs) in chunks that fit one binding per tensor:
 * `emit(start, count, bound)` gets each part's window for items `[start, start + count)`.
 *
 * @example
 * ```ts
 * forChunks(rt, x.size, [{ t: x, per: 1 }, { t: y, per: 1 }], (s, n, [X, Y]) => dispatch(...));
 * ```
 */
export function forChunks(
  rt: GpuRuntime,
  items: number,
  parts: readonly ChunkPart[],
  emit: (start: number, count: number, bound: Bound[]) => void,
  multiple = 4,
): void {
  const list = chunks(rt, items, parts.map((p) => p.per * p.t.kind.bytes), multiple);
  for (const [start, count] of list) {
    const bound = parts.map((p) =>
      p.per === 0
        ? bind(rt, p.t, p.start ?? 0, p.t.size - (p.start ?? 0))
        : bind(rt, p.t, (p.start ?? 0) + start * p.per, count * p.per)
    );
    emit(start, count, bound);
  }
}
