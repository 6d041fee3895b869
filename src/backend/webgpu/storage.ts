/**
 * How each tensor dtype is stored in a GPU buffer, and the host-side encode/decode of those bytes.
 *
 * WGSL has no bf16 and no 8-bit type, so: bf16 tensors are stored as f32 words holding values
 * already rounded to bf16 (every kernel store rounds again, bit-exactly), u8 as one u32 per element,
 * and f16 natively (`array<f16>`) when the device has `shader-f16`, else as f32 words rounded to f16.
 * The stored values therefore equal the CPU reference's, which keeps bf16/f16 as rounded f32 too.
 */
import type { DType } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { roundBf16 } from "../../tensor/dtype.ts";

/** WGSL element type of a buffer plus the rounding a store applies. */
export interface StorageKind {
  /** WGSL scalar type of one element. */
  readonly wgsl: "f32" | "f16" | "i32" | "u32";
  /** Bytes per element in the buffer. */
  readonly bytes: 2 | 4;
  /** Rounding every store applies (f32 words that stand for a 16-bit dtype). */
  readonly round: "none" | "f16" | "bf16";
}

const F32: StorageKind = { wgsl: "f32", bytes: 4, round: "none" };

/**
 * Storage of `dtype` on a device with or without native f16.
 *
 * @example
 * ```ts
 * storageKind("bf16", true); // { wgsl: "f32", bytes: 4, round: "bf16" }
 * ```
 */
export function storageKind(dtype: DType, nativeF16: boolean): StorageKind {
  switch (dtype) {
    case "f32":
      return F32;
    case "f16":
      return nativeF16 ? { wgsl: "f16", bytes: 2, round: "none" } : { wgsl: "f32", bytes: 4, round: "f16" };
    case "bf16":
      return { wgsl: "f32", bytes: 4, round: "bf16" };
    case "i32":
      return { wgsl: "i32", bytes: 4, round: "none" };
    case "u8":
      return { wgsl: "u32", bytes: 4, round: "none" };
  }
}

/** Whether a dtype holds floating-point values. */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16" || dtype === "bf16";
}

/**
 * Host values → the bytes a buffer of `kind` holds. Values pass through f32 first, as the CPU
 * backend's Float32Array storage does, so f64 → f32 → f16 rounds twice exactly like the reference.
 *
 * @example
 * ```ts
 * encodeHost(new Float32Array([1, 2]), storageKind("f16", true)); // 4 bytes of f16
 * ```
 */
export function encodeHost(
  data: Float32Array | Float64Array | Int32Array,
  kind: StorageKind,
): Uint8Array<ArrayBuffer> {
  let out: ArrayBufferView<ArrayBuffer>;
  if (kind.wgsl === "i32") out = Int32Array.from(data);
  else if (kind.wgsl === "u32") out = Uint32Array.from(data);
  else {
    // One output array and no intermediate copy (an 8B model's embedding table is gigabytes). f64
    // input passes through f32 first (Math.fround) so it rounds twice exactly like the reference.
    const n = data.length;
    const f32 = data instanceof Float32Array ? (x: number) => x : Math.fround;
    if (kind.wgsl === "f16") {
      const h = new Float16Array(n);
      for (let i = 0; i < n; i++) h[i] = f32(data[i]);
      out = h;
    } else if (kind.round === "none" && data instanceof Float32Array && data.buffer instanceof ArrayBuffer) {
      out = data as Float32Array<ArrayBuffer>;
    } else {
      const r = kind.round === "f16" ? Math.f16round : kind.round === "bf16" ? roundBf16 : (x: number) => x;
      const o = new Float32Array(n);
      for (let i = 0; i < n; i++) o[i] = r(f32(data[i]));
      out = o;
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/**
 * Buffer bytes of `count` elements → f32 values (floats) or i32 values (integers).
 *
 * @example
 * ```ts
 * decodeFloat(bytes, storageKind("f16", true), 2); // Float32Array(2)
 * ```
 */
export function decodeFloat(
  bytes: ArrayBuffer,
  byteOffset: number,
  kind: StorageKind,
  count: number,
): Float32Array {
  if (kind.wgsl === "f16") return Float32Array.from(new Float16Array(bytes, byteOffset, count));
  if (kind.wgsl === "f32") return new Float32Array(bytes.slice(byteOffset, byteOffset + count * 4));
  throw new BackendError(`cannot read a ${kind.wgsl} buffer as floats`);
}

/** Buffer bytes of `count` integer elements → Int32Array. */
export function decodeInt(
  bytes: ArrayBuffer,
  byteOffset: number,
  kind: StorageKind,
  count: number,
): Int32Array {
  if (kind.wgsl === "i32" || kind.wgsl === "u32") {
    return new Int32Array(bytes.slice(byteOffset, byteOffset + count * 4));
  }
  throw new BackendError(`cannot read a ${kind.wgsl} buffer as integers`);
}
