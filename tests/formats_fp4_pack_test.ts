/**
 * FP4 packing of compressed-tensors (src/formats/fp4_pack.ts) against the bytes of the worked examples in
 * spec/SCHEMES.md § 11 (derived from auto-round's packer), and the round trip code → value → code.
 */
import { assertEquals } from "./assert.ts";
import {
  E2M1_VALUES,
  e2m1Code,
  e4m3Byte,
  packMxfp4,
  packMxfp8,
  packNibbles,
  packNvfp4,
} from "../src/formats/fp4_pack.ts";
import { MX_FORMATS, mxQuantize, nvfp4Quantize } from "../src/qmath/float_quant.ts";
import { roundBf16 } from "../src/tensor/dtype.ts";

Deno.test("E2M1 codes: every value and its negation round-trip; −0 is 0x8; nibbles low first", () => {
  E2M1_VALUES.forEach((v, i) => {
    assertEquals(e2m1Code(v), i);
    if (v !== 0) assertEquals(e2m1Code(-v), 8 | i);
  });
  assertEquals([e2m1Code(-0), e2m1Code(0)], [8, 0]);
  assertEquals(Array.from(packNibbles(Uint8Array.of(7, 8, 4, 0, 0xa, 6))), [0x87, 0x04, 0x6a]);
});

Deno.test("MXFP4 and NVFP4 packing give the bytes of spec/SCHEMES.md § 11", () => {
  // § 11.1: one MXFP4 row of 32 → 0x87, 0x04, 0x6A, 0xB5, then zeros; E8M0 scale 0x78.
  const x = new Float32Array(32);
  x.set([0.059, -0.0009, 0.01953125, 0.001953125, -0.009765625, 0.0390625, 0.0271, -0.0123]);
  const mx = mxQuantize(x, 1, 32, 32, MX_FORMATS.mx_fp4);
  const p = packMxfp4(mx.values, mx.sharedExp, 1, 32);
  assertEquals(Array.from(p.weightPacked), [0x87, 0x04, 0x6a, 0xb5, ...new Array(12).fill(0)]);
  assertEquals(Array.from(p.weightScale), [0x78]);
  // § 11.3: NVFP4 [2, 16] stored as bf16; row 1 → F7 35 69 00 46 0F 42 6D.
  const w = new Float32Array(32);
  w.set([3.0, -1.0, 0.5, 0.25], 0);
  w.set([0.4, -0.35, 0.2, 0.1, -0.05, 0.3, 0.013, -0.0021, 0.25, 0.15, -0.4, 0, 0.07, 0.12, -0.18, 0.33], 16);
  const nv = nvfp4Quantize(w, 2, 16);
  const packed = packNvfp4(Float32Array.from(nv.values, roundBf16), nv.scales, nv.globalScale, 2, 16);
  assertEquals(Array.from(packed.subarray(8)), [0xf7, 0x35, 0x69, 0x00, 0x46, 0x0f, 0x42, 0x6d]);
});

/** float8_e4m3fn decoded from its bits (independent of the encoder). */
function decodeE4M3(b: number): number {
  const sign = b & 0x80 ? -1 : 1, e = (b >> 3) & 15, m = b & 7;
  return sign * (e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7));
}

Deno.test("E4M3 bytes: all 254 finite codes decode and encode back; MXFP8 packs W / 2^e", () => {
  for (let b = 0; b < 256; b++) {
    if ((b & 0x7f) === 0x7f) continue; // NaN
    const v = decodeE4M3(b);
    assertEquals(e4m3Byte(v), b, `code 0x${b.toString(16)} = ${v}`);
  }
  assertEquals([e4m3Byte(448), e4m3Byte(1000), e4m3Byte(2 ** -9), e4m3Byte(60)], [0x7e, 0x7e, 0x01, 0x67]);
  const x = Float32Array.from({ length: 32 }, (_, i) => Math.sin(i) * 3);
  const mx = mxQuantize(x, 1, 32, 32, MX_FORMATS.mx_fp8);
  const p = packMxfp8(mx.values, mx.sharedExp);
  for (let i = 0; i < 32; i++) assertEquals(decodeE4M3(p.weight[i]) * 2 ** mx.sharedExp[0], mx.values[i]);
  assertEquals(p.weightScale[0], mx.sharedExp[0] + 127);
});
