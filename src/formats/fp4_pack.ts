/**
 * FP4 (E2M1) weight packing of compressed-tensors as auto-round writes it (spec/SCHEMES.md § 10.2–10.3,
 * auto-round export_to_llmcompressor/qlinear_fp.py `_pack_fp4_to_uint8`): a code is the index of the
 * magnitude in the E2M1 table (the first on ties) with the sign in bit 3, and byte i of the row-major
 * code stream holds code 2i in its low nibble and code 2i+1 in its high nibble.
 *
 * MXFP4 packs the fake-quantized weight divided by its group's power-of-two scale, keeping the sign of
 * −0 (code 0x8); NVFP4 re-casts `W · gs / s8` and packs every zero as 0x0 (§ 12.4); MXFP8 stores
 * float8_e4m3fn bytes of W / 2^e instead (§ 10.3).
 */
import { castToFp4, roundE4M3 } from "../qmath/float_quant.ts";

/** E2M1 magnitudes by code (bit 3 is the sign). */
export const E2M1_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** The E2M1 code of `v`: nearest magnitude (first on ties), bit 3 from the sign bit (−0 included). */
export function e2m1Code(v: number): number {
  const a = Math.abs(v);
  let best = 0;
  for (let i = 1; i < E2M1_VALUES.length; i++) {
    if (Math.abs(E2M1_VALUES[i] - a) < Math.abs(E2M1_VALUES[best] - a)) best = i;
  }
  return (v < 0 || Object.is(v, -0) ? 8 : 0) | best;
}

/** Two codes a byte, low nibble first (`codes.length` even). */
export function packNibbles(codes: Uint8Array): Uint8Array {
  const out = new Uint8Array(codes.length >> 1);
  for (let i = 0; i < out.length; i++) out[i] = (codes[2 * i] & 15) | ((codes[2 * i + 1] & 15) << 4);
  return out;
}

/**
 * MXFP4 tensors of a fake-quantized `[n, k]` weight and its shared exponents `[n, k/32]`:
 * `weight_packed` `[n, k/2]` and `weight_scale` (E8M0: exponent + 127, clamped to a byte) `[n, k/32]`.
 */
export function packMxfp4(values: Float32Array, sharedExp: Float32Array, n: number, k: number) {
  const G = 32, codes = new Uint8Array(n * k);
  for (let i = 0; i < n * k; i++) codes[i] = e2m1Code(values[i] / 2 ** sharedExp[Math.floor(i / G)]);
  const scale = Uint8Array.from(sharedExp, (e) => Math.min(Math.max(e + 127, 0), 255));
  return { weightPacked: packNibbles(codes), weightScale: scale };
}

/**
 * NVFP4 `weight_packed` `[n, k/2]` of a stored weight `[n, k]` (as the checkpoint holds it, e.g. bf16
 * values), its E4M3 group scales `[n, k/16]` and global scale: codes of cast_to_fp4(clamp(W · os, ±6))
 * with os = 1/(s8 · (1/gs)) in float32, zeros as 0x0.
 */
export function packNvfp4(
  values: Float32Array,
  scales: Float32Array,
  globalScale: number,
  n: number,
  k: number,
) {
  const f32 = Math.fround, G = 16, codes = new Uint8Array(n * k);
  const recip = (x: number) => (x === 0 ? 0 : f32(1 / x));
  for (let g = 0; g < (n * k) / G; g++) {
    const os = recip(f32(scales[g] * recip(globalScale)));
    for (let i = g * G; i < (g + 1) * G; i++) {
      const q = castToFp4(Math.min(Math.max(f32(values[i] * os), -6), 6));
      codes[i] = q === 0 ? 0 : e2m1Code(q);
    }
  }
  return packNibbles(codes);
}

/**
 * The float8_e4m3fn byte of `v` (rounded to E4M3 first): sign bit 7, exponent bits 6–3 (bias 7),
 * mantissa bits 2–0; subnormals have exponent 0. |v| > 448 is clamped (auto-round clamps before the cast).
 */
export function e4m3Byte(v: number): number {
  const r = roundE4M3(Math.min(Math.max(v, -448), 448));
  const sign = r < 0 || Object.is(r, -0) ? 0x80 : 0;
  const a = Math.abs(r);
  if (a === 0) return sign;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (e < -6) return sign | Math.round(a / 2 ** -9); // subnormal: m · 2^−9
  return sign | ((e + 7) << 3) | Math.round((a / 2 ** e - 1) * 8);
}

/**
 * MXFP8 tensors of a fake-quantized `[n, k]` weight and its shared exponents `[n, k/32]`: `weight`
 * float8_e4m3fn bytes of W / 2^e (exact: the fake quantization put them on the grid) and `weight_scale`.
 */
export function packMxfp8(values: Float32Array, sharedExp: Float32Array) {
  const weight = Uint8Array.from(values, (v, i) => e4m3Byte(v / 2 ** sharedExp[Math.floor(i / 32)]));
  const scale = Uint8Array.from(sharedExp, (e) => Math.min(Math.max(e + 127, 0), 255));
  return { weight, weightScale: scale };
}
