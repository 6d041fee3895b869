/**
 * CPython's `random.Random`, bit for bit, for integer seeds.
 *
 * AutoRound orders local calibration texts with `random.Random(seed).shuffle(samples)`
 * (calib_dataset.py `get_local_dataset`); reproducing its selection needs the same generator:
 * MT19937 seeded by `init_by_array` (Modules/_randommodule.c `random_seed`), `getrandbits`,
 * `_randbelow_with_getrandbits` and `shuffle` as in Lib/random.py of CPython 3.11+.
 *
 * @module
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

/**
 * `random.Random(seed)` of CPython: same seed, same numbers.
 *
 * @example
 * ```ts
 * const rng = new PyRandom(42);
 * rng.random(); // 0.6394267984578837, as Python's random.Random(42).random()
 * const xs = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
 * new PyRandom(42).shuffle(xs); // [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]
 * ```
 */
export class PyRandom {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  /** @param seed any integer (number or bigint); like CPython, its absolute value is used. */
  constructor(seed: number | bigint) {
    if (typeof seed === "number" && !Number.isSafeInteger(seed)) {
      throw new RangeError(`PyRandom seed must be a safe integer or a bigint, got ${seed}`);
    }
    this.initByArray(seedWords(BigInt(seed)));
  }

  /** The generator's whole state (Python's `getstate()`: the 624 MT words and the position). */
  getState(): { mt: Uint32Array; index: number } {
    return { mt: this.mt.slice(), index: this.mti };
  }

  /** Continue from a state taken with {@link getState} (Python's `setstate()`). */
  setState(state: { mt: Uint32Array; index: number }): void {
    if (state.mt.length !== N || !Number.isInteger(state.index) || state.index < 0 || state.index > N + 1) {
      throw new RangeError(
        `PyRandom.setState: not an MT19937 state (${state.mt.length} words, index ${state.index})`,
      );
    }
    this.mt.set(state.mt);
    this.mti = state.index;
  }

  /** A float in [0, 1) with 53 random bits (`random.random()`, genrand_res53). */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
  }

  /** `random.getrandbits(k)`: an integer with k random bits, as a bigint (k may exceed 53). */
  getrandbits(k: number): bigint {
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`getrandbits: k must be >= 0, got ${k}`);
    if (k <= 32) return BigInt(this.getrandbits32(k));
    // CPython fills 32-bit words from the least significant end; the last word keeps its top bits.
    let result = 0n;
    let shift = 0n;
    for (let left = k; left > 0; left -= 32) {
      let word = this.nextUint32();
      if (left < 32) word >>>= 32 - left;
      result |= BigInt(word) << shift;
      shift += 32n;
    }
    return result;
  }

  /** `_randbelow_with_getrandbits(n)`: uniform integer in [0, n), by rejection on bit_length(n) bits. */
  randbelow(n: number): number {
    if (!Number.isSafeInteger(n) || n <= 0) throw new RangeError(`randbelow: n must be > 0, got ${n}`);
    const k = bitLength(n);
    if (k <= 32) {
      let r = this.getrandbits32(k);
      while (r >= n) r = this.getrandbits32(k);
      return r;
    }
    const big = BigInt(n);
    let r = this.getrandbits(k);
    while (r >= big) r = this.getrandbits(k);
    return Number(r);
  }

  /** In-place `random.shuffle(x)` (CPython 3.11+: Fisher-Yates from the end with randbelow). */
  shuffle<T>(x: T[]): T[] {
    for (let i = x.length - 1; i >= 1; i--) {
      const j = this.randbelow(i + 1);
      const t = x[i];
      x[i] = x[j];
      x[j] = t;
    }
    return x;
  }

  /** getrandbits for k <= 32, as a plain number. */
  private getrandbits32(k: number): number {
    if (k === 0) return 0;
    return this.nextUint32() >>> (32 - k);
  }

  // ---- MT19937 (Matsumoto & Nishimura, mt19937ar.c, as vendored in _randommodule.c) ----

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.mti = N;
  }

  private initByArray(key: Uint32Array): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
    }
    mt[0] = 0x80000000; // MSB is 1, assuring a non-zero initial array
  }

  private nextUint32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
        mt[kk] = mt[kk + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
        mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      }
      const y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
      mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
      this.mti = 0;
    }
    let y = mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}

/** |seed| as little-endian 32-bit words; zero gives one zero word (random_seed in _randommodule.c). */
function seedWords(seed: bigint): Uint32Array {
  let n = seed < 0n ? -seed : seed;
  const words: number[] = [];
  while (n > 0n) {
    words.push(Number(n & 0xffffffffn));
    n >>= 32n;
  }
  if (words.length === 0) words.push(0);
  return Uint32Array.from(words);
}

/** Python's int.bit_length() for a positive safe integer. */
function bitLength(n: number): number {
  return n < 2 ** 32 ? 32 - Math.clz32(n) : 32 + bitLength(Math.floor(n / 2 ** 32));
}
