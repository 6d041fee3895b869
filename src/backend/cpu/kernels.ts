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

/** In-place rotate_half RoPE over `[B·T, H·hd]`; tables `[maxPos, hd/2]`. */
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
): void {
  const half = hd / 2;
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

/** Geometry of one attention call. */
export interface AttnGeo {
  batch: number;
  seqLen: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  scale: number;
}

/**
 * Gather the rows of one kv head and its query heads into contiguous blocks: Q `[group·T, D]`
 * (head-major), K and V `[T, D]`, so the scores are plain matmuls.
 */
function gatherHeads(
  q: FArr,
  k: FArr,
  v: FArr,
  g: AttnGeo,
  b: number,
  kh: number,
  Qg: Float64Array,
  Kc: Float64Array,
  Vc: Float64Array,
): void {
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D } = g;
  const group = H / KV;
  for (let t = 0; t < T; t++) {
    const ko = (b * T + t) * KV * D + kh * D;
    for (let d = 0; d < D; d++) {
      Kc[t * D + d] = k[ko + d];
      Vc[t * D + d] = v[ko + d];
    }
    for (let j = 0; j < group; j++) {
      const qo = (b * T + t) * H * D + (kh * group + j) * D;
      for (let d = 0; d < D; d++) Qg[(j * T + t) * D + d] = q[qo + d];
    }
  }
}

/** Causal GQA attention forward; writes out and lse `[B, nH, T]`. */
export function attention(q: FArr, k: FArr, v: FArr, out: FArr, lse: FArr, g: AttnGeo): void {
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale } = g;
  const group = H / KV, R = group * T;
  const Qg = new Float64Array(R * D), Kc = new Float64Array(T * D), Vc = new Float64Array(T * D);
  const p = new Float64Array(T), acc = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < KV; kh++) {
      gatherHeads(q, k, v, g, b, kh, Qg, Kc, Vc);
      for (let r = 0; r < R; r++) {
        const t = r % T, qo = r * D;
        let m = -Infinity;
        for (let s = 0; s <= t; s++) {
          let dot = 0;
          for (let d = 0, ko = s * D; d < D; d++) dot += Qg[qo + d] * Kc[ko + d];
          p[s] = dot * scale;
          if (p[s] > m) m = p[s];
        }
        let sum = 0;
        acc.fill(0);
        for (let s = 0; s <= t; s++) {
          const e = Math.exp(p[s] - m);
          sum += e;
          for (let d = 0, vo = s * D; d < D; d++) acc[d] += e * Vc[vo + d];
        }
        const h = kh * group + Math.floor(r / T);
        const oo = (b * T + t) * H * D + h * D;
        for (let d = 0; d < D; d++) out[oo + d] = acc[d] / sum;
        lse[(b * H + h) * T + t] = m + Math.log(sum);
      }
    }
  }
}

/**
 * Attention backward from the saved lse: P = exp(S − lse), dV = Pᵀ·dO, dP = dO·Vᵀ,
 * dS = P ∘ (dP − rowsum(dO ∘ O)), dQ = scale·dS·K, dK = scale·dSᵀ·Q (summed over the query heads
 * sharing a kv head).
 */
export function attentionBackward(
  q: FArr,
  k: FArr,
  v: FArr,
  out: FArr,
  lse: FArr,
  dOut: FArr,
  dq: FArr,
  dk: FArr,
  dv: FArr,
  g: AttnGeo,
): void {
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale } = g;
  const group = H / KV, R = group * T;
  const Qg = new Float64Array(R * D), Kc = new Float64Array(T * D), Vc = new Float64Array(T * D);
  const dKc = new Float64Array(T * D), dVc = new Float64Array(T * D), dOr = new Float64Array(D);
  const dQr = new Float64Array(D);
  for (let b = 0; b < B; b++) {
    for (let kh = 0; kh < KV; kh++) {
      gatherHeads(q, k, v, g, b, kh, Qg, Kc, Vc);
      dKc.fill(0);
      dVc.fill(0);
      for (let r = 0; r < R; r++) {
        const t = r % T, h = kh * group + Math.floor(r / T), qo = r * D;
        const oo = (b * T + t) * H * D + h * D;
        const l = lse[(b * H + h) * T + t];
        let delta = 0;
        for (let d = 0; d < D; d++) {
          dOr[d] = dOut[oo + d];
          delta += dOr[d] * out[oo + d];
        }
        dQr.fill(0);
        for (let s = 0; s <= t; s++) {
          const ko = s * D;
          let dot = 0, dp = 0;
          for (let d = 0; d < D; d++) {
            dot += Qg[qo + d] * Kc[ko + d];
            dp += dOr[d] * Vc[ko + d];
          }
          const pr = Math.exp(dot * scale - l);
          const ds = pr * (dp - delta) * scale;
          for (let d = 0; d < D; d++) {
            dVc[ko + d] += pr * dOr[d];
            dQr[d] += ds * Kc[ko + d];
            dKc[ko + d] += ds * Qg[qo + d];
          }
        }
        for (let d = 0; d < D; d++) dq[oo + d] = dQr[d];
      }
      for (let t = 0; t < T; t++) {
        const ko = (b * T + t) * KV * D + kh * D;
        for (let d = 0; d < D; d++) {
          dk[ko + d] = dKc[t * D + d];
          dv[ko + d] = dVc[t * D + d];
        }
      }
    }
  }
}

/** silu(x) = x·sigmoid(x). */
export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}
