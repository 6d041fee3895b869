/**
 * Tensors of the CPU backend and the host memory they live in. With worker threads the storage is a
 * SharedArrayBuffer, so a pool task (src/parallel/pool.ts) reads and writes it in place from any
 * thread; single-threaded it is an ordinary ArrayBuffer, exactly as before threads existed.
 *
 * Shared memory is recycled: V8 counts a SharedArrayBuffer's bytes against the garbage collector's
 * budget far more loosely than an ArrayBuffer's, so the SignRound loop, which allocates its working
 * set anew every iteration, left ~2× the single-threaded peak RSS waiting for collection. A disposed
 * tensor's buffer goes to a free list by type and length instead, and the next allocation of that
 * size takes it (zeroed); the free list holds at most the peak bytes live at once.
 */
import type { Backend, DType, Tensor } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { roundBf16 } from "../../tensor/dtype.ts";
import type { FArr } from "./kernels.ts";

/** Typed arrays a CPU tensor can hold. */
export type Storage = FArr | Int32Array | Uint8Array;

type Kind = "f32" | "f64" | "i32" | "u8";
const CTORS = { f32: Float32Array, f64: Float64Array, i32: Int32Array, u8: Uint8Array } as const;

/** Free-list bytes kept even while little is live (covers a block's working set of small models). */
const MIN_FREE_BYTES = 64 << 20;

/** Allocates zeroed typed arrays on shared or ordinary memory; recycles released shared ones. */
export class HostMemory {
  private readonly free = new Map<string, Storage[]>();
  private freeBytes = 0;
  private liveBytes = 0;
  private peakLiveBytes = 0;

  constructor(readonly shared: boolean, readonly precision: "f32" | "f64") {}

  /** Floats in the backend's precision. */
  floats(n: number): FArr {
    return this.precision === "f64" ? this.f64(n) : this.f32(n);
  }
  f32(n: number): Float32Array {
    return this.take("f32", n) as Float32Array;
  }
  f64(n: number): Float64Array {
    return this.take("f64", n) as Float64Array;
  }
  i32(n: number): Int32Array {
    return this.take("i32", n) as Int32Array;
  }
  u8(n: number): Uint8Array {
    return this.take("u8", n) as Uint8Array;
  }

  /** Bytes of shared memory handed out and not yet released, in free lists, and the peak handed out. */
  stats(): { liveBytes: number; freeBytes: number; peakLiveBytes: number } {
    return { liveBytes: this.liveBytes, freeBytes: this.freeBytes, peakLiveBytes: this.peakLiveBytes };
  }

  /** Hand back an array this memory allocated; it must no longer be used. */
  release(x: Storage): void {
    if (!this.shared || x.byteOffset !== 0 || x.byteLength !== x.buffer.byteLength) return;
    this.liveBytes -= x.byteLength;
    const key = keyOf(x);
    const list = this.free.get(key) ?? [];
    if (!this.free.has(key)) this.free.set(key, list);
    list.push(x);
    this.freeBytes += x.byteLength;
    this.evict(Math.max(MIN_FREE_BYTES, this.peakLiveBytes));
  }

  private take(kind: Kind, n: number): Storage {
    const Ctor = CTORS[kind];
    let x = this.free.get(`${kind}:${n}`)?.pop();
    if (x) {
      this.freeBytes -= x.byteLength;
      x.fill(0);
    } else {
      const bytes = n * Ctor.BYTES_PER_ELEMENT;
      x = new Ctor(
        this.shared ? new SharedArrayBuffer(bytes) as unknown as ArrayBuffer : new ArrayBuffer(bytes),
      );
    }
    if (this.shared) {
      this.liveBytes += x.byteLength;
      this.peakLiveBytes = Math.max(this.peakLiveBytes, this.liveBytes);
    }
    return x;
  }

  /** Drop the oldest free sizes until at most `cap` bytes are kept. */
  private evict(cap: number): void {
    for (const [key, list] of this.free) {
      if (this.freeBytes <= cap) return;
      while (list.length && this.freeBytes > cap) this.freeBytes -= list.shift()!.byteLength;
      if (!list.length) this.free.delete(key);
    }
  }
}

function keyOf(x: Storage): string {
  const kind = x instanceof Float32Array
    ? "f32"
    : x instanceof Float64Array
    ? "f64"
    : x instanceof Int32Array
    ? "i32"
    : "u8";
  return `${kind}:${x.length}`;
}

/** A tensor's storage, shared with its views; released once, by the tensor that owns it. */
export class HostBlock {
  released = false;
  constructor(readonly array: Storage, readonly memory?: HostMemory) {}
}

/** A tensor in host memory. `offset` lets views share a parent's storage. */
export class CpuTensor implements Tensor {
  readonly size: number;
  readonly block: HostBlock;
  constructor(
    readonly backend: Backend,
    readonly shape: readonly number[],
    readonly dtype: DType,
    storage: Storage | HostBlock,
    readonly offset = 0,
    readonly isView = false,
  ) {
    this.block = storage instanceof HostBlock ? storage : new HostBlock(storage);
    this.size = shape.reduce((a, b) => a * b, 1);
    if (offset + this.size > this.block.array.length) {
      throw new BackendError(`tensor of ${this.size} elements does not fit its storage`);
    }
  }
  /** `x` as a CPU tensor; BackendError when it belongs to another backend or was disposed. */
  static of(x: Tensor): CpuTensor {
    if (!(x instanceof CpuTensor)) throw new BackendError(`tensor belongs to another backend`);
    if (x.block.released) throw new BackendError(`use of a disposed tensor`);
    return x;
  }
  /** Rounds the stored values to the dtype (bf16/f16 tensors hold f32 values so rounded); returns this. */
  rounded(): this {
    const r = this.dtype === "bf16" ? roundBf16 : this.dtype === "f16" ? Math.f16round : undefined;
    if (r) {
      const d = this.f;
      for (let i = 0; i < d.length; i++) d[i] = r(d[i]);
    }
    return this;
  }
  /** The whole typed array this tensor (or view) lies in. */
  get storage(): Storage {
    return this.block.array;
  }
  /** The elements of this tensor (a subarray for views). */
  get data(): Storage {
    const s = this.block.array;
    return this.offset === 0 && this.size === s.length ? s : s.subarray(this.offset, this.offset + this.size);
  }
  /** Float elements; throws for integer tensors. */
  get f(): FArr {
    if (this.dtype === "i32" || this.dtype === "u8") throw new BackendError(`expected a float tensor`);
    return this.data as FArr;
  }
  /** Integer elements of an i32 tensor. */
  get i(): Int32Array {
    if (this.dtype !== "i32") throw new BackendError(`expected an i32 tensor, got ${this.dtype}`);
    return this.data as Int32Array;
  }
  [Symbol.dispose](): void {
    if (this.isView || this.block.released) return;
    this.block.released = true;
    this.block.memory?.release(this.block.array);
  }
}
