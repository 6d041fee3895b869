/**
 * Host-side number formats: conversions between f32 and the 16-bit float formats checkpoints use,
 * and the rounding rules the quantizers must share with PyTorch.
 *
 * All conversions round to nearest, ties to even, like `torch.Tensor.to(dtype)`.
 */

/** Element types a checkpoint tensor can have (safetensors names). */
export type StDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U8"
  | "BOOL"
  | "F8_E4M3";

/** Bytes per element of each safetensors dtype. */
export const ST_DTYPE_BYTES: Readonly<Record<StDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
};

/** Floating dtypes a model's weights may be stored in. */
export type FloatDType = "F32" | "F16" | "BF16";

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bf16 bits → f32 value. */
export function bf16ToF32(bits: number): number {
  u32[0] = bits << 16;
  return f32[0];
}

/** f32 value → bf16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7f800000) === 0x7f800000 && (u & 0x007fffff) !== 0) return 0x7fc0; // NaN
  const rounded = u + 0x7fff + ((u >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** Round an f32 value to the nearest bf16 value (as a number). */
export function roundBf16(x: number): number {
  return bf16ToF32(f32ToBf16(x));
}

/** Round a value to the nearest f16 value (ties to even, overflow to ±Infinity). */
export const roundF16: (x: number) => number = Math.f16round;

/** f16 bits → f32 value. */
export function f16ToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >> 10) & 0x1f;
  const frac = bits & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const f16Buf = new Float16Array(1);
const f16Bits = new Uint16Array(f16Buf.buffer);

/** f32 value → f16 bits, round to nearest even. */
export function f32ToF16(x: number): number {
  f16Buf[0] = x;
  return f16Bits[0];
}

/** Decode a little-endian byte run of a float dtype into f32 values. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDType | "F64"): Float32Array {
  const n = bytes.byteLength / ST_DTYPE_BYTES[dtype];
  // Copy into an aligned buffer: safetensors data offsets need not be aligned to the element size.
  const aligned = new Uint8Array(bytes.byteLength);
  aligned.set(bytes);
  switch (dtype) {
    case "F32":
      return new Float32Array(aligned.buffer, 0, n);
    case "F64":
      return Float32Array.from(new Float64Array(aligned.buffer, 0, n));
    case "F16":
      return Float32Array.from(new Float16Array(aligned.buffer, 0, n));
    case "BF16": {
      const src = new Uint16Array(aligned.buffer, 0, n);
      const out = new Float32Array(n);
      const outBits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) outBits[i] = src[i] << 16;
      return out;
    }
  }
}

/** Encode f32 values as little-endian bytes of a float dtype (rounding to nearest even). */
export function encodeFloats(values: Float32Array, dtype: FloatDType): Uint8Array {
  switch (dtype) {
    case "F32":
      return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
    case "F16":
      return new Uint8Array(Float16Array.from(values).buffer);
    case "BF16": {
      const out = new Uint16Array(values.length);
      for (let i = 0; i < values.length; i++) out[i] = f32ToBf16(values[i]);
      return new Uint8Array(out.buffer);
    }
  }
}

/** Round every value in place to what storing it as `dtype` would keep. */
export function roundToDType(values: Float32Array, dtype: FloatDType): Float32Array {
  if (dtype === "F16") { for (let i = 0; i < values.length; i++) values[i] = Math.f16round(values[i]); }
  else if (dtype === "BF16") { for (let i = 0; i < values.length; i++) values[i] = roundBf16(values[i]); }
  return values;
}

/**
 * Round half to even, as `torch.round` does (JavaScript's `Math.round` rounds halves up, which
 * would pick different integer codes at exact .5 ties).
 */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
