/**
 * ggml's MXFP4 blocks (type 39; ggml-common.h block_mxfp4, gguf-py quants.py MXFP4): per 32 weights one
 * E8M0 byte e then 16 bytes, byte j = code of weight j (low nibble) | code of weight j + 16 (high
 * nibble). Codes index ggml's kvalues (E2M1 doubled: 0, 1, 2, 3, 4, 6, 8, 12 and their negatives at
 * 8..15) and the scale is 2^(e − 127)/2 (ggml_e8m0_to_fp32_half), so a weight is exactly
 * E2M1 value · 2^(e − 127): the OCP MX value auto-round's quant_mx gives with shared exponent e − 127.
 * Used to store MXFP4-quantized Linears in GGUF without re-quantizing them (SCHEMES.md § 10.9).
 */

/** Positive E2M1 values in code order (codes 8..15 are their negatives; 8 is −0). */
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];
/** ggml's kvalues_mxfp4 (doubled E2M1). */
const KVALUES = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/** Bytes of one block. */
export const MXFP4_BLOCK_BYTES = 17;

function codeOf(v: number): number {
  const i = E2M1.indexOf(Math.abs(v));
  if (i < 0) throw new RangeError(`${v} is not an E2M1 value`);
  return i + (v < 0 || Object.is(v, -0) ? 8 : 0);
}

/**
 * Pack `[n, k]` E2M1 element values (k a multiple of 32) with their shared exponents `[n·k/32]`
 * (integers in [−127, 127]) into ggml MXFP4 blocks, row by row.
 */
export function packMxfp4Blocks(
  elements: Float32Array,
  sharedExp: Float32Array,
  n: number,
  k: number,
): Uint8Array {
  if (k % 32 !== 0) throw new RangeError(`MXFP4 rows must be a multiple of 32 wide (got ${k})`);
  const nb = (n * k) / 32, out = new Uint8Array(nb * MXFP4_BLOCK_BYTES);
  for (let b = 0; b < nb; b++) {
    const o = b * MXFP4_BLOCK_BYTES, at = b * 32;
    out[o] = Math.min(254, Math.max(0, sharedExp[b] + 127));
    for (let j = 0; j < 16; j++) {
      out[o + 1 + j] = codeOf(elements[at + j]) | (codeOf(elements[at + j + 16]) << 4);
    }
  }
  return out;
}

/** ggml_e8m0_to_fp32_half: 2^(e − 128) as a float32 (with the two subnormal cases e < 2). */
function e8m0Half(e: number): number {
  const bits = new Uint32Array(1);
  bits[0] = e < 2 ? 0x00200000 << e : (e - 1) << 23;
  return new Float32Array(bits.buffer)[0];
}

/** Dequantize MXFP4 block bytes to f32, as ggml's dequantize_row_mxfp4. */
export function dequantizeMxfp4(bytes: Uint8Array): Float32Array {
  const nb = bytes.length / MXFP4_BLOCK_BYTES, out = new Float32Array(nb * 32);
  for (let b = 0; b < nb; b++) {
    const o = b * MXFP4_BLOCK_BYTES, d = e8m0Half(bytes[o]);
    for (let j = 0; j < 16; j++) {
      const q = bytes[o + 1 + j];
      out[b * 32 + j] = d * KVALUES[q & 15];
      out[b * 32 + j + 16] = d * KVALUES[q >> 4];
    }
  }
  return out;
}
