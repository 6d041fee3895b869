/**
 * Plain TypeScript kernels of the CPU reference backend. Written to be obviously correct first and
 * reasonably fast second (register-blocked matmuls reach ~1–3 GFLOP/s in V8 on one core).
 * Every function works on Float32Array or Float64Array alike, so the same code serves as the f64
 * reference in gradient checks.
 */

/** A float array the CPU backend computes on. */
export type FArr = Float32Array | Float64Array;

/**
 * c[M,N] = alpha·a[M,K]·b[N,K]ᵀ + beta·c: both operands walked along contiguous rows, 4×2 output
 * tile in registers (~2–4 GFLOP/s in V8 on one core). The other three forms transpose their
 * operands into this layout first: O(K·(M+N)) copies against O(M·N·K) arithmetic.
 */
export function matmulABt(
  a: FArr,
  b: FArr,
  c: FArr,
  M: number,
  N: number,
  K: number,
  alpha: number,
  beta: number,
): void {
  let i = 0;
  for (; i + 4 <= M; i += 4) {
    const a0 = i * K, a1 = a0 + K, a2 = a1 + K, a3 = a2 + K;
    let j = 0;
    for (; j + 2 <= N; j += 2) {
      const b0 = j * K, b1 = b0 + K;
      let s00 = 0, s01 = 0, s10 = 0, s11 = 0, s20 = 0, s21 = 0, s30 = 0, s31 = 0;
      for (let k = 0; k < K; k++) {
        const y0 = b[b0 + k], y1 = b[b1 + k];
        const x0 = a[a0 + k], x1 = a[a1 + k], x2 = a[a2 + k], x3 = a[a3 + k];
        s00 += x0 * y0;
        s01 += x0 * y1;
        s10 += x1 * y0;
        s11 += x1 * y1;
        s20 += x2 * y0;
        s21 += x2 * y1;
        s30 += x3 * y0;
        s31 += x3 * y1;
      }
      store(c, i * N + j, s00, alpha, beta);
      store(c, i * N + j + 1, s01, alpha, beta);
      store(c, (i + 1) * N + j, s10, alpha, beta);
      store(c, (i + 1) * N + j + 1, s11, alpha, beta);
      store(c, (i + 2) * N + j, s20, alpha, beta);
      store(c, (i + 2) * N + j + 1, s21, alpha, beta);
      store(c, (i + 3) * N + j, s30, alpha, beta);
      store(c, (i + 3) * N + j + 1, s31, alpha, beta);
    }
    for (; j < N; j++) {
      for (let r = i; r < i + 4; r++) store(c, r * N + j, dotRows(a, r * K, b, j * K, K), alpha, beta);
    }
  }
  for (; i < M; i++) {
    for (let j = 0; j < N; j++) store(c, i * N + j, dotRows(a, i * K, b, j * K, K), alpha, beta);
  }
}

function dotRows(a: FArr, ao: number, b: FArr, bo: number, K: number): number {
  let s = 0;
  for (let k = 0; k < K; k++) s += a[ao + k] * b[bo + k];
  return s;
}

function store(c: FArr, idx: number, s: number, alpha: number, beta: number): void {
  c[idx] = beta === 0 ? alpha * s : alpha * s + beta * c[idx];
}

/** Transpose `[rows, cols]` into a new array of the same element type. */
function transposed(x: FArr, rows: number, cols: number): FArr {
  const out = x instanceof Float64Array ? new Float64Array(rows * cols) : new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = x[r * cols + c];
  return out;
}

/** c[M,N] = alpha·a[M,K]·b[K,N] + beta·c. */
export function matmulAB(
  a: FArr,
  b: FArr,
  c: FArr,
  M: number,
  N: number,
  K: number,
  alpha: number,
  beta: number,
): void {
  matmulABt(a, transposed(b, K, N), c, M, N, K, alpha, beta);
}

/** c[M,N] = alpha·a[K,M]ᵀ·b[K,N] + beta·c. */
export function matmulAtB(
  a: FArr,
  b: FArr,
  c: FArr,
  M: number,
  N: number,
  K: number,
  alpha: number,
  beta: number,
): void {
  matmulABt(transposed(a, K, M), transposed(b, K, N), c, M, N, K, alpha, beta);
}

/** c[M,N] = alpha·a[K,M]ᵀ·b[N,K]ᵀ + beta·c. */
export function matmulAtBt(
  a: FArr,
  b: FArr,
  c: FArr,
  M: number,
  N: number,
  K: number,
  alpha: number,
  beta: number,
): void {
  matmulABt(transposed(a, K, M), b, c, M, N, K, alpha, beta);
}

/** y = x·rsqrt(mean(x²)+eps)·w per row. */
export function rmsNorm(x: FArr, w: FArr, y: FArr, rows: number, n: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[o + i] * x[o + i];
    const rstd = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[o + i] = x[o + i] * rstd * w[i];
  }
}

/**
 * dx of y = x·r·w with r = (mean(x²)+eps)^(-1/2):
 * dx_i = r·w_i·dy_i − x_i·r³/n · Σ_j dy_j·w_j·x_j.
 */
export function rmsNormBackward(
  x: FArr,
  w: FArr,
  dy: FArr,
  dx: FArr,
  rows: number,
  n: number,
  eps: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    let ss = 0, dot = 0;
    for (let i = 0; i < n; i++) {
      ss += x[o + i] * x[o + i];
      dot += dy[o + i] * w[i] * x[o + i];
    }
    const rstd = 1 / Math.sqrt(ss / n + eps);
    const c = rstd * rstd * rstd * dot / n;
    for (let i = 0; i < n; i++) dx[o + i] = rstd * w[i] * dy[o + i] - x[o + i] * c;
  }
}

/**
 * In-place rotate_half RoPE over `[B·T, H·hd]` on the first `rot` elements of each head (Phi-3's
 * partial rotary; rot = hd for the rest), pairing i with i + rot/2; tables `[maxPos, rot/2]`.
 */
export function rope(
  x: FArr,
  cos: FArr,
  sin: FArr,
  batch: number,
  seqLen: number,
  nHeads: number,
  hd: number,
  posOffset: number,
  inverse: boolean,
  rot = hd,
): void {
  const half = rot / 2;
  const sgn = inverse ? -1 : 1;
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < seqLen; t++) {
      const row = (b * seqLen + t) * nHeads * hd;
      const tab = (t + posOffset) * half;
      for (let h = 0; h < nHeads; h++) {
        const o = row + h * hd;
        for (let i = 0; i < half; i++) {
          const c = cos[tab + i], s = sgn * sin[tab + i];
          const x1 = x[o + i], x2 = x[o + i + half];
          x[o + i] = x1 * c - x2 * s;
          x[o + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}

/** silu(x) = x·sigmoid(x). */
export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

/** h = silu(g)·u elementwise. */
export function siluMul(g: FArr, u: FArr, h: FArr): void {
  for (let i = 0; i < h.length; i++) h[i] = g[i] * sigmoid(g[i]) * u[i];
}

/** dg, du of h = silu(g)·u: du = dh·silu(g), dg = dh·u·σ(g)·(1 + g·(1 − σ(g))). */
export function siluMulBackward(g: FArr, u: FArr, dh: FArr, dg: FArr, du: FArr): void {
  for (let i = 0; i < g.length; i++) {
    const s = sigmoid(g[i]);
    du[i] = dh[i] * g[i] * s;
    dg[i] = dh[i] * u[i] * s * (1 + g[i] * (1 - s));
  }
}

/** out[r] = logsumexp(logits[r, :]) − logits[r, targets[r]] (max-shifted), rows of width V. */
export function crossEntropyRows(logits: FArr, targets: Int32Array, out: FArr, V: number): void {
  for (let r = 0; r < targets.length; r++) {
    const o = r * V;
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > m) m = logits[o + j];
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[o + j] - m);
    out[r] = m + Math.log(s) - logits[o + targets[r]];
  }
}

/** d[r, :] = scale·(softmax(logits[r, :]) − onehot(targets[r])); rows with a target < 0 get 0. */
export function crossEntropyBackwardRows(
  logits: FArr,
  targets: Int32Array,
  d: FArr,
  V: number,
  scale: number,
): void {
  for (let r = 0; r < targets.length; r++) {
    const o = r * V;
    if (targets[r] < 0) {
      d.fill(0, o, o + V);
      continue;
    }
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (logits[o + j] > m) m = logits[o + j];
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(logits[o + j] - m);
    for (let j = 0; j < V; j++) d[o + j] = scale * Math.exp(logits[o + j] - m) / s;
    d[o + targets[r]] -= scale;
  }
}

/** out[r] = index of the largest value of row r (ties: the lowest index). */
export function argmaxRows(x: FArr, out: Int32Array, V: number): void {
  for (let r = 0; r < out.length; r++) {
    let best = 0;
    for (let j = 1; j < V; j++) if (x[r * V + j] > x[r * V + best]) best = j;
    out[r] = best;
  }
}

/**
 * Masked squared error per row: rowSums[r] = Σ_c (m_r·(y − t))², dy = scale·2·m_r·(m_r·(y − t))/denom.
 * The loss is the sum of rowSums in row order divided by denom (so any cut of the rows agrees).
 */
export function mseRows(
  y: FArr,
  t: FArr,
  mask: FArr | undefined,
  dy: FArr,
  rowSums: Float64Array,
  cols: number,
  scale: number,
  denom: number,
): void {
  for (let r = 0; r < rowSums.length; r++) {
    const mr = mask ? mask[r] : 1;
    let sum = 0;
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const e = mr * (y[i] - t[i]);
      sum += e * e;
      dy[i] = scale * 2 * e * mr / denom;
    }
    rowSums[r] = sum;
  }
}

/** p ← clamp(p − lr·sign(g), lo, hi) (no clamp when lo/hi are ±Infinity). */
export function signSgd(p: FArr, g: FArr, lr: number, lo: number, hi: number): void {
  for (let i = 0; i < p.length; i++) {
    let x = p[i] - lr * Math.sign(g[i]);
    if (lo !== -Infinity || hi !== Infinity) x = Math.min(Math.max(x, lo), hi);
    p[i] = x;
  }
}

/** z = x + y elementwise (z may alias x or y). */
export function add(x: FArr, y: FArr, z: FArr): void {
  for (let i = 0; i < z.length; i++) z[i] = x[i] + y[i];
}

/** acc += alpha·x elementwise. */
export function axpy(acc: FArr, x: FArr, alpha: number): void {
  for (let i = 0; i < acc.length; i++) acc[i] += alpha * x[i];
}

/** x[r, :] += bias for every row of x (x.length a multiple of bias.length). */
export function addRowVector(x: FArr, bias: FArr): void {
  const n = bias.length;
  for (let i = 0; i < x.length; i++) x[i] += bias[i % n];
}

/** acc[c] += Σ_r x[r, c]² for columns `[c0, c1)` of x `[rows, cols]` (cols = acc.length). */
export function columnSquares(acc: FArr, x: FArr, c0 = 0, c1 = acc.length): void {
  const cols = acc.length, rows = x.length / cols;
  for (let r = 0; r < rows; r++) for (let c = c0; c < c1; c++) acc[c] += x[r * cols + c] ** 2;
}
