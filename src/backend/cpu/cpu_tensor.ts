/**
 * Tensors of the CPU backend and the host memory they live in. With worker threads the storage is a
 * SharedArrayBuffer, so a pool task (src/parallel/pool.ts) reads and writes it in place from any
 * thread; single-threaded it is an ordinary ArrayBuffer, exactly as before threads existed.
 */
import type { Backend, DType, Tensor } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import type { FArr } from "./kernels.ts";

/** Typed arrays a CPU tensor can hold. */
export type Storage = FArr | Int32Array | Uint8Array;

/** Allocates zeroed typed arrays on shared or ordinary memory. */
export class HostMemory {
  constructor(readonly shared: boolean, readonly precision: "f32" | "f64") {}

  private buffer(bytes: number): ArrayBufferLike {
    return this.shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  }
  /** Floats in the backend's precision. */
  floats(n: number): FArr {
    return this.precision === "f64" ? this.f64(n) : this.f32(n);
  }
  f32(n: number): Float32Array {
    return new Float32Array(this.buffer(4 * n));
  }
  f64(n: number): Float64Array {
    return new Float64Array(this.buffer(8 * n));
  }
  i32(n: number): Int32Array {
    return new Int32Array(this.buffer(4 * n));
  }
  u8(n: number): Uint8Array {
    return new Uint8Array(this.buffer(n));
  }
}

/** A tensor in host memory. `offset` lets views share a parent's storage. */
export class CpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly backend: Backend,
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly storage: Storage,
    readonly offset = 0,
    readonly isView = false,
  ) {
    this.size = shape.reduce((a, b) => a * b, 1);
    if (offset + this.size > storage.length) {
      throw new BackendError(`tensor of ${this.size} elements does not fit its storage`);
    }
  }
  /** The elements of this tensor (a subarray for views). */
  get data(): Storage {
    return this.offset === 0 && this.size === this.storage.length
      ? this.storage
      : this.storage.subarray(this.offset, this.offset + this.size);
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
  [Symbol.dispose](): void {}
}
