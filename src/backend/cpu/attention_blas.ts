/**
 * Causal grouped-query attention with its products on CBLAS: the math of attention.ts (f64
 * accumulation, the same units b·nKvHeads + kh), but each head's queries are taken in tiles of
 * TILE rows, and the score, P·V and backward products of a tile are `cblas_dgemm` calls, leaving only
 * the softmax (one `Math.exp` per score, the floor of both kernels) to TypeScript. A tile of queries
 * t0..t0+rows−1 needs keys 0..t0+rows−1 only (from t0 − window + 1 under a sliding window), so the
 * causal waste is the upper half of one rows×rows corner (plus the lower one for a window). Scores
 * are soft-capped (Gemma 2) in the softmax loop. With head_dim 8 (stories260K) this runs ~2× faster
 * than attention.ts.
 *
 * The caller runs these with the library on one thread (a pool task already owns a core).
 */
import type { Cblas } from "../../../ffi/blas/cblas.ts";
import { type AttnGeo, firstKey } from "./attention.ts";
import type { FArr } from "./kernels.ts";

/** Query rows per tile: big enough for efficient products, small enough for cache. */
const TILE = 64;

/** Per-unit scratch: the unit's keys and values, one tile's queries, scores and outputs. */
class Scratch {
  readonly K: Float64Array;
  readonly V: Float64Array;
  readonly Q: Float64Array;
  readonly dO: Float64Array;
  readonly S: Float64Array;
  readonly dP: Float64Array;
  readonly O: Float64Array;
  readonly rowA: Float64Array;
  readonly rowB: Float64Array;
  readonly dK: Float64Array;
  readonly dV: Float64Array;
  constructor(T: number, D: number, backward: boolean) {
    this.K = new Float64Array(T * D);
    this.V = new Float64Array(T * D);
    this.Q = new Float64Array(TILE * D);
    this.dO = new Float64Array(backward ? TILE * D : 0);
    this.S = new Float64Array(TILE * T);
    this.dP = new Float64Array(backward ? TILE * T : 0);
    this.O = new Float64Array(TILE * D);
    this.rowA = new Float64Array(TILE);
    this.rowB = new Float64Array(TILE);
    this.dK = new Float64Array(backward ? T * D : 0);
    this.dV = new Float64Array(backward ? T * D : 0);
  }
}

/** Copy kv head kh of sequence b into K, V `[T, D]`. */
function gatherKv(k: FArr, v: FArr, g: AttnGeo, b: number, kh: number, s: Scratch): void {
  const { seqLen: T, nKvHeads: KV, headDim: D } = g;
  for (let t = 0; t < T; t++) {
    const o = (b * T + t) * KV * D + kh * D;
    for (let d = 0; d < D; d++) {
      s.K[t * D + d] = k[o + d];
      s.V[t * D + d] = v[o + d];
    }
  }
}

/** Copy rows t0.. of head h of sequence b from x `[B·T, H·D]` into dst `[rows, D]`. */
function gatherRows(
  x: FArr,
  g: AttnGeo,
  b: number,
  h: number,
  t0: number,
  rows: number,
  dst: Float64Array,
): void {
  const { seqLen: T, nHeads: H, headDim: D } = g;
  for (let i = 0; i < rows; i++) {
    const o = (b * T + t0 + i) * H * D + h * D;
    for (let d = 0; d < D; d++) dst[i * D + d] = x[o + d];
  }
}

/** Forward for units `[u0, u1)`: writes out and lse `[B, nH, T]` like attention.ts. */
export function attentionTiled(
  blas: Cblas,
  q: FArr,
  k: FArr,
  v: FArr,
  out: FArr,
  lse: FArr,
  g: AttnGeo,
  u0: number,
  u1: number,
): void {
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale, softcap: cap, window } = g;
  const group = H / KV, s = new Scratch(T, D, false), S = s.S;
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / KV), kh = u % KV;
    gatherKv(k, v, g, b, kh, s);
    for (let h = kh * group; h < (kh + 1) * group; h++) {
      for (let t0 = 0; t0 < T; t0 += TILE) {
        // This tile's keys are k0..t0+rows−1: tile column j is key k0 + j.
        const rows = Math.min(TILE, T - t0), k0 = firstKey(t0, window), n = t0 + rows - k0;
        const K = s.K.subarray(k0 * D), V = s.V.subarray(k0 * D);
        gatherRows(q, g, b, h, t0, rows, s.Q);
        blas.dgemm(false, true, rows, n, D, scale, s.Q, D, K, D, 0, S, n); // S = scale·Q·Kᵀ
        for (let i = 0; i < rows; i++) {
          const t = t0 + i, o = i * n, lo = firstKey(t, window) - k0, hi = t - k0;
          let m = -Infinity;
          for (let j = lo; j <= hi; j++) {
            if (cap !== undefined) S[o + j] = cap * Math.tanh(S[o + j] / cap);
            if (S[o + j] > m) m = S[o + j];
          }
          let sum = 0;
          for (let j = lo; j <= hi; j++) {
            const e = Math.exp(S[o + j] - m);
            S[o + j] = e;
            sum += e;
          }
          S.fill(0, o, o + lo);
          S.fill(0, o + hi + 1, o + n);
          s.rowA[i] = sum;
          lse[(b * H + h) * T + t] = m + Math.log(sum);
        }
        blas.dgemm(false, false, rows, D, n, 1, S, n, V, D, 0, s.O, D); // O = P·V
        for (let i = 0; i < rows; i++) {
          const o = (b * T + t0 + i) * H * D + h * D;
          for (let d = 0; d < D; d++) out[o + d] = s.O[i * D + d] / s.rowA[i];
        }
      }
    }
  }
}

/**
 * Backward for units `[u0, u1)` from the saved lse, as attention.ts: P = exp(S − lse), dP = dO·Vᵀ,
 * dS = scale·P∘(dP − rowsum(dO∘O)) (times 1 − tanh²(S_raw/cap) under a soft cap), dQ = dS·K,
 * dK += dSᵀ·Q, dV += Pᵀ·dO over the group's heads.
 */
export function attentionBackwardTiled(
  blas: Cblas,
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
  u0: number,
  u1: number,
): void {
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale, softcap: cap, window } = g;
  const group = H / KV, s = new Scratch(T, D, true), S = s.S, dP = s.dP;
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / KV), kh = u % KV;
    gatherKv(k, v, g, b, kh, s);
    s.dK.fill(0);
    s.dV.fill(0);
    for (let h = kh * group; h < (kh + 1) * group; h++) {
      for (let t0 = 0; t0 < T; t0 += TILE) {
        const rows = Math.min(TILE, T - t0), k0 = firstKey(t0, window), n = t0 + rows - k0;
        const K = s.K.subarray(k0 * D), V = s.V.subarray(k0 * D);
        const dK = s.dK.subarray(k0 * D), dV = s.dV.subarray(k0 * D);
        gatherRows(q, g, b, h, t0, rows, s.Q);
        gatherRows(dOut, g, b, h, t0, rows, s.dO);
        blas.dgemm(false, true, rows, n, D, scale, s.Q, D, K, D, 0, S, n); // scaled scores
        blas.dgemm(false, true, rows, n, D, 1, s.dO, D, V, D, 0, dP, n); // dP = dO·Vᵀ
        for (let i = 0; i < rows; i++) {
          const t = t0 + i, o = i * n, oo = (b * T + t) * H * D + h * D;
          const lo = firstKey(t, window) - k0, hi = t - k0;
          const l = lse[(b * H + h) * T + t];
          let delta = 0;
          for (let d = 0; d < D; d++) delta += dOut[oo + d] * out[oo + d];
          for (let j = lo; j <= hi; j++) {
            const th = cap === undefined ? 0 : Math.tanh(S[o + j] / cap);
            const p = Math.exp((cap === undefined ? S[o + j] : cap * th) - l);
            S[o + j] = p;
            dP[o + j] = p * (dP[o + j] - delta) * scale * (1 - th * th); // dS of the raw score
          }
          S.fill(0, o, o + lo);
          dP.fill(0, o, o + lo);
          S.fill(0, o + hi + 1, o + n);
          dP.fill(0, o + hi + 1, o + n);
        }
        blas.dgemm(false, false, rows, D, n, 1, dP, n, K, D, 0, s.O, D); // dQ = dS·K
        blas.dgemm(true, false, n, D, rows, 1, dP, n, s.Q, D, 1, dK, D); // dK += dSᵀ·Q
        blas.dgemm(true, false, n, D, rows, 1, S, n, s.dO, D, 1, dV, D); // dV += Pᵀ·dO
        for (let i = 0; i < rows; i++) {
          const o = (b * T + t0 + i) * H * D + h * D;
          for (let d = 0; d < D; d++) dq[o + d] = s.O[i * D + d];
        }
      }
    }
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * KV * D + kh * D;
      for (let d = 0; d < D; d++) {
        dk[o + d] = s.dK[t * D + d];
        dv[o + d] = s.dV[t * D + d];
      }
    }
  }
}
