/**
 * lm-eval's aggregations and standard errors (lm_eval/api/metrics.py, v0.4):
 * - `mean` with `mean_stderr` = sample standard deviation / √n (acc, acc_norm);
 * - `perplexity` = exp(−mean(loglik)) with a bootstrap standard error: `iters // 1000` chunks,
 *   chunk i drawing 1000 resamples with `random.Random(i).choices(xs, k=len(xs))`, then the sample
 *   standard deviation of the resampled statistics. With the CPython RNG port this reproduces
 *   lm-eval's number, not just its method;
 * - `weighted_perplexity` = exp(−Σ loglik / Σ weight) and `bits_per_byte` = −Σ loglik / Σ bytes / ln 2,
 *   which lm-eval gives no standard error ("N/A").
 */
import { PyRandom } from "../io/pyrandom.ts";

/** Σ xs with Neumaier compensation (what Python ≥ 3.12's `sum` of floats does). */
export function pySum(xs: ArrayLike<number>): number {
  let s = 0, c = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i], t = s + x;
    c += Math.abs(s) >= Math.abs(x) ? (s - t) + x : (x - t) + s;
    s = t;
  }
  return s + c;
}

/** `mean(arr)` = sum / len. */
export function mean(xs: ArrayLike<number>): number {
  return pySum(xs) / xs.length;
}

/** `sample_stddev`: √(Σ(x − μ)² / (n − 1)). */
export function sampleStddev(xs: ArrayLike<number>): number {
  const mu = mean(xs);
  const sq = new Float64Array(xs.length);
  for (let i = 0; i < xs.length; i++) sq[i] = (xs[i] - mu) ** 2;
  return Math.sqrt(pySum(sq) / (xs.length - 1));
}

/**
 * `mean_stderr`: the standard error of a mean, or null where lm-eval prints "N/A" (n ≤ 1).
 *
 * @example
 * ```ts
 * meanStderr([1, 0, 1, 1]); // 0.25
 * ```
 */
export function meanStderr(xs: ArrayLike<number>): number | null {
  if (xs.length <= 1) return null;
  return sampleStddev(xs) / Math.sqrt(xs.length);
}

/** `perplexity(items)` = exp(−mean(items)) over per-document log-likelihoods. */
export function perplexity(logliks: ArrayLike<number>): number {
  return Math.exp(-mean(logliks));
}

/** `weighted_perplexity` over (loglik, weight) pairs: exp(−Σ loglik / Σ weight). */
export function weightedPerplexity(logliks: ArrayLike<number>, weights: ArrayLike<number>): number {
  return Math.exp(-pySum(logliks) / pySum(weights));
}

/** `bits_per_byte` over (loglik, bytes) pairs: −Σ loglik / Σ bytes / ln 2. */
export function bitsPerByte(logliks: ArrayLike<number>, bytes: ArrayLike<number>): number {
  return -pySum(logliks) / pySum(bytes) / Math.LN2;
}

/**
 * lm-eval's `bootstrap_stderr(perplexity, xs, iters)`: null where it prints "N/A" (iters ≤ 0 or
 * n ≤ 1). Costs iters × n RNG draws (about 0.5 s per million on one core).
 *
 * @example
 * ```ts
 * bootstrapPerplexityStderr([-1.2, -3.4, -0.5], 1000);
 * ```
 */
export function bootstrapPerplexityStderr(logliks: ArrayLike<number>, iters: number): number | null {
  const n = logliks.length;
  if (iters <= 0 || n <= 1) return null;
  const chunk = Math.min(1000, iters);
  const stats: number[] = [];
  const draw = new Float64Array(n);
  for (let i = 0; i < Math.floor(iters / chunk); i++) {
    const rnd = new PyRandom(i);
    for (let r = 0; r < chunk; r++) {
      // random.choices without weights: population[floor(random() * n)], k = n times.
      for (let j = 0; j < n; j++) draw[j] = logliks[Math.floor(rnd.random() * n)];
      stats.push(perplexity(draw));
    }
  }
  return sampleStddev(stats);
}
