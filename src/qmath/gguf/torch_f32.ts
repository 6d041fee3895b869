/**
 * float32 arithmetic the way AutoRound's torch code does it on a CPU, so that the GGUF searches
 * (search.ts, search_sym.ts) reproduce its scales bit for bit.
 *
 * Elementwise: every torch op rounds to float32 ({@link fr}), in the order the Python expression
 * evaluates (`w * x * L` is fr(fr(w·x)·L)); a Python float operand is first rounded to float32;
 * `tensor / scalar` divides, while `scalar / tensor` is `tensor.reciprocal() * scalar` (torch/_tensor.py
 * `__rdiv__`), two roundings.
 *
 * Reductions: `torch.sum(x, dim=-1)` on a contiguous float32 row of n ≥ 8 elements runs
 * aten/src/ATen/native/cpu/SumKernel.cpp `vectorized_inner_sum` with 8-lane vectors (AVX2): the row is
 * n/8 vectors; `row_sum` keeps 4 vector accumulators (vector v goes to v mod 4) over the first
 * 4·⌊n/32⌋ vectors, adds the remaining vectors to the first accumulator, folds the four left to
 * right, and the 8 lanes are then added left to right after the n mod 8 trailing scalars.
 * {@link torchSum} follows that for n < 512 (beyond, `multi_row_sum` adds cascade levels we never
 * need: our rows are 8, 16 and 32 long). Checked against auto-round on torch 1.13 (CPU) and the
 * same bytes came from torch 2.11; a CUDA run sums in another order, so a GPU run of auto-round
 * can differ from us at near-ties.
 */

/** Round to float32 (one torch float32 op). */
export const fr = Math.fround;

/** auto_round `get_reciprocal` on float32: fr(1/x) for |x| ≥ 1e-30, else 0 (NaN gives 0 too). */
export function recip(x: number): number {
  return Math.abs(x) >= 1e-30 ? fr(1 / x) : 0;
}

const TWO52 = 2 ** 52;

/**
 * `torch.round`: to the nearest integer, ties to even (as `roundHalfEven` of tensor/dtype.ts), by
 * adding and subtracting 2^52, which the FPU rounds half-to-even; about twice as fast in the search
 * loops. |x| ≥ 2^52 is an integer already; NaN stays NaN. A zero result is +0 where torch may give
 * −0 (no code or sum here depends on that sign).
 */
export function rint(x: number): number {
  if (x >= 0) return x < TWO52 ? x + TWO52 - TWO52 : x;
  return x > -TWO52 ? x - TWO52 + TWO52 : x;
}

/**
 * 1.5·2^52: `(a + RNE) − RNE` is `torch.round(a)` (half to even) for |a| < 2^51, without the sign
 * branch of {@link rint} (a sign that flips from weight to weight mispredicts); a larger |a| comes
 * back within a few units of itself, ±Infinity and NaN unchanged, so a code clamped to a small range
 * after it equals the clamp of {@link rint}. Zeros come back as +0, as from rint.
 */
export const RNE = 6755399441055744;

/**
 * `torch.round` exactly as `roundHalfEven` of tensor/dtype.ts gives it, −0 included (a in [−0.5, −0]
 * gives −0, as torch does), without its branches: the {@link RNE} sum, the sign of a kept on a zero
 * result, and |a| ≥ 2^51 (already an integer), ±Infinity and NaN returned as they are.
 */
export function rne(a: number): number {
  const q = a + RNE - RNE;
  return q === 0 ? a * 0 : Math.abs(a) < 2251799813685248 ? q : a;
}

/**
 * `torch.sum(a[0..n), dim=-1)` for a contiguous float32 row on a CPU, in torch's order (see the
 * file comment); n < 512. (Float32Array only, which keeps the callers' loads monomorphic.)
 *
 * @example
 * ```ts
 * torchSum(Float32Array.from({ length: 16 }, (_, i) => i / 3), 16); // lanes (x[l] + x[l+8]), then l = 0..7
 * ```
 */
export function torchSum(a: Float32Array, n: number = a.length): number {
  if (n === 16) return sum16(a);
  if (n === 32) return sum32(a);
  if (n < 8) {
    // scalar_inner_sum: row_sum with 4 scalar accumulators.
    const p = [0, 0, 0, 0], head = n & ~3;
    for (let k = 0; k < head; k++) p[k & 3] = fr(p[k & 3] + a[k]);
    for (let k = head; k < n; k++) p[0] = fr(p[0] + a[k]);
    return fr(fr(fr(p[0] + p[1]) + p[2]) + p[3]);
  }
  const nv = n >> 3, ilp = nv >> 2;
  let total = 0;
  for (let k = nv << 3; k < n; k++) total = fr(total + a[k]);
  for (let l = 0; l < 8; l++) {
    let p0 = 0, p1 = 0, p2 = 0, p3 = 0;
    for (let i = 0, b = l; i < ilp; i++, b += 32) {
      p0 = fr(p0 + a[b]);
      p1 = fr(p1 + a[b + 8]);
      p2 = fr(p2 + a[b + 16]);
      p3 = fr(p3 + a[b + 24]);
    }
    for (let v = 4 * ilp; v < nv; v++) p0 = fr(p0 + a[(v << 3) + l]);
    total = fr(total + fr(fr(fr(p0 + p1) + p2) + p3));
  }
  return total;
}

/** {@link torchSum} of 16: lanes x[l] + x[l+8], added left to right. */
function sum16(a: Float32Array): number {
  let s = 0;
  for (let l = 0; l < 8; l++) s = fr(s + fr(a[l] + a[l + 8]));
  return s;
}

/** {@link torchSum} of 32: lanes ((x[l] + x[l+8]) + x[l+16]) + x[l+24], added left to right. */
function sum32(a: Float32Array): number {
  let s = 0;
  for (let l = 0; l < 8; l++) s = fr(s + fr(fr(fr(a[l] + a[l + 8]) + a[l + 16]) + a[l + 24]));
  return s;
}

const scratchBuffers: Float32Array[] = [];

/**
 * A reusable float32 buffer of at least `n` elements for temporary rows (slot 0, 1, …); storing into
 * it rounds to float32 like a torch op's output. Contents are overwritten by the next user of the
 * slot, so a function must not hold one across a call that uses the same slot.
 */
export function scratch(slot: number, n: number): Float32Array {
  let b = scratchBuffers[slot];
  if (!b || b.length < n) b = scratchBuffers[slot] = new Float32Array(Math.max(n, 64));
  return b;
}
