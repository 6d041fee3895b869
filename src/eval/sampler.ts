/**
 * Next-token choice, as llama2.c's `run.c` samples: argmax at temperature 0; otherwise softmax of
 * logits / T, one coin from its xorshift* generator per token, then multinomial sampling over all
 * tokens (top_p ≤ 0 or ≥ 1) or nucleus sampling (tokens with p ≥ (1 − top_p)/(n − 1) sorted by p,
 * cut after the cumulative probability first exceeds top_p). Float32 arithmetic mirrors the C.
 */

/** run.c's `random_u32` / `random_f32`: xorshift* on a 64-bit state. */
export class XorShiftStar {
  private state: bigint;
  constructor(seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed));
    if (this.state === 0n) this.state = 1n; // an all-zero xorshift state would stay zero
  }
  nextU32(): number {
    let s = this.state;
    s ^= s >> 12n;
    s = BigInt.asUintN(64, s ^ (s << 25n));
    s ^= s >> 27n;
    this.state = s;
    return Number(BigInt.asUintN(64, s * 0x2545F4914F6CDD1Dn) >> 32n);
  }
  /** A float32 in [0, 1) from the top 24 bits. */
  nextF32(): number {
    return Math.fround((this.nextU32() >>> 8) / 16777216.0);
  }
}

/** Sampling settings. */
export interface SamplerOptions {
  /** 0 = greedy. */
  temperature: number;
  /** Nucleus mass; ≤ 0 or ≥ 1 samples from the whole distribution. */
  topP: number;
  seed: number;
}

/** Index of the largest logit (first one on ties). */
export function argmaxIndex(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** softmax(logits / temperature) in float32, as run.c's `softmax`. */
export function softmaxF32(logits: ArrayLike<number>, temperature: number): Float32Array {
  const p = new Float32Array(logits.length);
  const t = Math.fround(temperature); // run.c keeps the temperature as a C float
  for (let i = 0; i < p.length; i++) p[i] = Math.fround(logits[i] / t);
  let max = p[0];
  for (let i = 1; i < p.length; i++) if (p[i] > max) max = p[i];
  let sum = 0;
  for (let i = 0; i < p.length; i++) {
    p[i] = Math.fround(Math.exp(p[i] - max));
    sum = Math.fround(sum + p[i]);
  }
  for (let i = 0; i < p.length; i++) p[i] = Math.fround(p[i] / sum);
  return p;
}

/**
 * A stateful sampler (one RNG stream per generation).
 *
 * @example
 * ```ts
 * const s = new Sampler({ temperature: 0.8, topP: 0.9, seed: 42 });
 * const next = s.sample(logits);
 * ```
 */
export class Sampler {
  private readonly rng: XorShiftStar;
  constructor(readonly opts: SamplerOptions) {
    this.rng = new XorShiftStar(opts.seed);
  }

  sample(logits: ArrayLike<number>): number {
    const { temperature, topP } = this.opts;
    if (temperature === 0) return argmaxIndex(logits);
    const probs = softmaxF32(logits, temperature);
    const coin = this.rng.nextF32();
    return topP <= 0 || topP >= 1 ? sampleMult(probs, coin) : sampleTopP(probs, topP, coin);
  }
}

/** run.c `sample_mult`: the first index whose running CDF exceeds coin. */
export function sampleMult(probs: Float32Array, coin: number): number {
  let cdf = 0;
  for (let i = 0; i < probs.length; i++) {
    cdf = Math.fround(cdf + probs[i]);
    if (coin < cdf) return i;
  }
  return probs.length - 1;
}

/** run.c `sample_topp`. */
export function sampleTopP(probs: Float32Array, topP: number, coin: number): number {
  const n = probs.length;
  topP = Math.fround(topP); // a C float in run.c
  const cutoff = Math.fround(Math.fround(1 - topP) / (n - 1));
  const idx: number[] = [];
  for (let i = 0; i < n; i++) if (probs[i] >= cutoff) idx.push(i);
  idx.sort((a, b) => probs[b] - probs[a] || a - b);
  let cum = 0, last = idx.length - 1;
  for (let i = 0; i < idx.length; i++) {
    cum = Math.fround(cum + probs[idx[i]]);
    if (cum > topP) {
      last = i;
      break;
    }
  }
  const r = Math.fround(coin * cum);
  let cdf = 0;
  for (let i = 0; i <= last; i++) {
    cdf = Math.fround(cdf + probs[idx[i]]);
    if (r < cdf) return idx[i];
  }
  return idx[last];
}
