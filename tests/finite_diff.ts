/** Central finite differences for the gradient checks (float64). */

/**
 * Max |numeric − analytic| over coordinates `idx` of `x`, relative to the largest magnitude of either
 * (absolute when all are zero); the numeric derivative is (f(x + ε) − f(x − ε)) / 2ε per coordinate.
 */
export function fdCheck(
  x: Float64Array,
  analytic: ArrayLike<number>,
  f: () => number,
  idx: number[],
  eps = 1e-6,
): number {
  let err = 0, scale = 0;
  for (const i of idx) {
    const x0 = x[i];
    x[i] = x0 + eps;
    const fp = f();
    x[i] = x0 - eps;
    const fm = f();
    x[i] = x0;
    const num = (fp - fm) / (2 * eps);
    err = Math.max(err, Math.abs(num - analytic[i]));
    scale = Math.max(scale, Math.abs(num), Math.abs(analytic[i]));
  }
  return scale === 0 ? err : err / scale;
}
