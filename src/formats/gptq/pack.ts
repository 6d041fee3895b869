/**
 * Bit packing of integer codes into int32 words, GPTQ style (lowest bits first), as the auto_round
 * and auto_gptq kernels read it (auto_round_extension/torch/qlinear_torch*.py `pack_248_bits`,
 * `pack_3bits`). 2/4/8-bit codes fill a word with 32/b values; 3-bit codes are packed 32 values
 * into 3 words, the 11th and 22nd value straddling word boundaries.
 */
import { FormatError } from "../../errors.ts";

/**
 * Pack a run of `32·words/bits` codes (given through `get(i)`) into `words` int32 words.
 * Word layout (b ∈ {2,4,8}): value j → bits [j·b, (j+1)·b) of word ⌊j·b/32⌋.
 */
function packRun(
  bits: number,
  count: number,
  get: (i: number) => number,
  put: (w: number, v: number) => void,
): void {
  if (bits === 3) {
    if (count % 32 !== 0) throw new FormatError(`3-bit packing needs a multiple of 32 values, got ${count}`);
    for (let base = 0, w = 0; base < count; base += 32, w += 3) {
      let w0 = 0, w1 = 0, w2 = 0;
      for (let j = 0; j < 10; j++) w0 |= get(base + j) << (3 * j);
      const v10 = get(base + 10);
      w0 |= v10 << 30;
      w1 |= (v10 >> 2) & 1;
      for (let j = 0; j < 10; j++) w1 |= get(base + 11 + j) << (3 * j + 1);
      const v21 = get(base + 21);
      w1 |= v21 << 31;
      w2 |= (v21 >> 1) & 3;
      for (let j = 0; j < 10; j++) w2 |= get(base + 22 + j) << (3 * j + 2);
      put(w, w0);
      put(w + 1, w1);
      put(w + 2, w2);
    }
    return;
  }
  const per = 32 / bits;
  if (!Number.isInteger(per)) throw new FormatError(`cannot pack ${bits}-bit values into int32 words`);
  if (count % per !== 0) {
    throw new FormatError(`${bits}-bit packing needs a multiple of ${per} values, got ${count}`);
  }
  for (let w = 0; w < count / per; w++) {
    let word = 0;
    for (let j = 0; j < per; j++) word |= get(w * per + j) << (j * bits);
    put(w, word);
  }
}

/** Inverse of packRun. */
function unpackRun(
  bits: number,
  count: number,
  word: (w: number) => number,
  set: (i: number, v: number) => void,
): void {
  const mask = (1 << bits) - 1;
  if (bits === 3) {
    for (let base = 0, w = 0; base < count; base += 32, w += 3) {
      const w0 = word(w) >>> 0, w1 = word(w + 1) >>> 0, w2 = word(w + 2) >>> 0;
      for (let j = 0; j < 10; j++) set(base + j, (w0 >>> (3 * j)) & 7);
      set(base + 10, ((w0 >>> 30) & 3) | ((w1 & 1) << 2));
      for (let j = 0; j < 10; j++) set(base + 11 + j, (w1 >>> (3 * j + 1)) & 7);
      set(base + 21, ((w1 >>> 31) & 1) | ((w2 & 3) << 1));
      for (let j = 0; j < 10; j++) set(base + 22 + j, (w2 >>> (3 * j + 2)) & 7);
    }
    return;
  }
  const per = 32 / bits;
  for (let w = 0; w < count / per; w++) {
    const x = word(w) >>> 0;
    for (let j = 0; j < per; j++) set(w * per + j, (x >>> (j * bits)) & mask);
  }
}

/** Number of int32 words that hold `count` b-bit values. */
export function packedWords(count: number, bits: number): number {
  return (count * bits) / 32;
}

/**
 * `qweight` int32 `[K·b/32, N]`: the codes of each output column n, packed along K.
 * `codes` is `[N, K]` row-major. (The 2/4/8-bit path is a tight loop: this runs on every weight of
 * the model, ~4 s per Llama-8B block with per-element callbacks, ~0.1 s like this.)
 */
export function packQweightAlongK(codes: Uint8Array, n: number, k: number, bits: number): Int32Array {
  const rows = packedWords(k, bits);
  const out = new Int32Array(rows * n);
  if (bits === 3) {
    for (let col = 0; col < n; col++) {
      packRun(bits, k, (i) => codes[col * k + i], (w, v) => (out[w * n + col] = v));
    }
    return out;
  }
  const per = 32 / bits;
  if (!Number.isInteger(per)) throw new FormatError(`cannot pack ${bits}-bit values into int32 words`);
  if (k % per !== 0) throw new FormatError(`${bits}-bit packing needs a multiple of ${per} values, got ${k}`);
  for (let col = 0; col < n; col++) {
    let src = col * k;
    for (let w = 0; w < rows; w++) {
      let word = 0;
      for (let j = 0; j < per; j++) word |= codes[src++] << (j * bits);
      out[w * n + col] = word;
    }
  }
  return out;
}

/** Inverse of packQweightAlongK → codes `[N, K]`. */
export function unpackQweightAlongK(q: Int32Array, n: number, k: number, bits: number): Uint8Array {
  const codes = new Uint8Array(n * k);
  for (let col = 0; col < n; col++) {
    unpackRun(bits, k, (w) => q[w * n + col], (i, v) => (codes[col * k + i] = v));
  }
  return codes;
}

/**
 * `qzeros` int32 `[G, N·b/32]`: zero points of each group row packed along N. `zeros` is `[G, N]`
 * row-major (already in the stored convention, e.g. minus one for GPTQ).
 */
export function packRowsAlongN(zeros: Int32Array, g: number, n: number, bits: number): Int32Array {
  const cols = packedWords(n, bits);
  const out = new Int32Array(g * cols);
  for (let r = 0; r < g; r++) packRun(bits, n, (i) => zeros[r * n + i], (w, v) => (out[r * cols + w] = v));
  return out;
}

/** Inverse of packRowsAlongN → `[G, N]`. */
export function unpackRowsAlongN(q: Int32Array, g: number, n: number, bits: number): Int32Array {
  const cols = packedWords(n, bits);
  const out = new Int32Array(g * n);
  for (let r = 0; r < g; r++) unpackRun(bits, n, (w) => q[r * cols + w], (i, v) => (out[r * n + i] = v));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Legacy GPTQ zero points
// ---------------------------------------------------------------------------------------------------

/** Σ_j 1 << (j·b) over one word's (or, for 3 bits, one 3-word group's) values: the "minus one" of GPTQ v1. */
function onesPattern(bits: number): bigint {
  const per = bits === 3 ? 32 : 32 / bits;
  let c = 0n;
  for (let j = 0; j < per; j++) c |= 1n << BigInt(j * bits);
  return c;
}

/** Add `delta` (±pattern) to each packed run, as unsigned arithmetic on 32 (or 96 for 3 bits) bits. */
function addToRuns(words: Int32Array, bits: number, delta: bigint): Int32Array {
  const out = new Int32Array(words.length);
  const span = bits === 3 ? 3 : 1, width = BigInt(32 * span), mask = (1n << width) - 1n;
  for (let w = 0; w < words.length; w += span) {
    let v = 0n;
    for (let s = 0; s < span; s++) v |= BigInt(words[w + s] >>> 0) << BigInt(32 * s);
    v = (v + delta) & mask;
    for (let s = 0; s < span; s++) out[w + s] = Number((v >> BigInt(32 * s)) & 0xffffffffn) | 0;
  }
  return out;
}

/**
 * `qzeros` int32 `[G, N·b/32]` in the legacy GPTQ ("v1") convention: zero points stored minus one.
 * The subtraction is arithmetic over each packed run (auto_round_extension qlinear_torch_zp.py
 * `pack_248_bits`: `zeros -= 1` then the shifted values are summed), so a zero point of 0 borrows
 * from its neighbour exactly as there; gptqmodel's v1 → v2 conversion adds the pattern back.
 * `zeros` is `[G, N]` row-major with the true zero points.
 */
export function packZerosGptqV1(zeros: Int32Array, g: number, n: number, bits: number): Int32Array {
  return addToRuns(packRowsAlongN(zeros, g, n, bits), bits, -onesPattern(bits));
}

/** Inverse of {@link packZerosGptqV1} → true zero points `[G, N]`. */
export function unpackZerosGptqV1(q: Int32Array, g: number, n: number, bits: number): Int32Array {
  return unpackRowsAlongN(addToRuns(q, bits, onesPattern(bits)), g, n, bits);
}
