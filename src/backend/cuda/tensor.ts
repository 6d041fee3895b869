/**
 * Device tensors of the CUDA backend. A tensor owns a block of the caching allocator (or, for a
 * view, points into its parent's block at a byte offset); disposing an owner returns the block to
 * the pool, disposing a view does nothing.
 */
import type { Backend, DType, Tensor } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import type { DeviceBlock, DeviceMemory } from "./allocator.ts";

/** dtype → the DT_* code kernels take (ffi/cuda/common.cuh). */
export const DTYPE_CODE: Readonly<Record<DType, number>> = { f32: 0, f16: 1, bf16: 2, i32: 3, u8: 4 };
/** Bytes per element. */
export const DTYPE_BYTES: Readonly<Record<DType, 1 | 2 | 4>> = { f32: 4, f16: 2, bf16: 2, i32: 4, u8: 1 };

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new BackendError(`invalid tensor shape [${shape}]`);
    n *= d;
  }
  return n;
}

/** A tensor in device memory. */
export class CudaTensor implements Tensor {
  readonly size: number;
  /** Device address of element 0 (internal to the CUDA backend). */
  readonly addr: bigint;
  private disposed = false;

  constructor(
    readonly backend: Backend,
    readonly shape: readonly number[],
    readonly dtype: DType,
    /** @internal */ readonly block: DeviceBlock,
    /** @internal */ readonly byteOffset: number,
    private readonly memory: DeviceMemory | null,
  ) {
    this.size = sizeOf(shape);
    this.addr = block.addr + BigInt(byteOffset);
    if (byteOffset + this.size * DTYPE_BYTES[dtype] > block.bytes) {
      throw new BackendError(`tensor of ${this.size} ${dtype} elements does not fit its storage`);
    }
  }

  get bytes(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** True for views (they share a parent's storage). */
  get isView(): boolean {
    return this.memory === null;
  }

  /** Rows × columns when read as 2-D: the first dim and the product of the rest. */
  get rows(): number {
    return this.shape.length === 0 ? 1 : this.shape[0];
  }
  get cols(): number {
    return this.shape.length === 0 ? 1 : this.size / Math.max(this.shape[0], 1);
  }

  [Symbol.dispose](): void {
    if (this.disposed || this.memory === null) return;
    this.disposed = true;
    this.memory.release(this.block);
  }
}

/** Largest power of two ≤ 256 dividing a device address (cuBLASLt alignment preference). */
export function alignmentOf(addr: bigint): number {
  let a = 1;
  while (a < 256 && (addr & BigInt(a * 2 - 1)) === 0n) a *= 2;
  return a;
}

/** Whether every address is 16-byte aligned (the vectorized kernel paths need it). */
export function aligned16(...addrs: bigint[]): boolean {
  for (const a of addrs) if ((a & 15n) !== 0n) return false;
  return true;
}
