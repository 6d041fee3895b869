/**
 * Causal grouped-query attention of the CPU reference backend, forward and backward, in plain
 * TypeScript with f64 accumulation. The work is cut into units, one per (sequence b, kv head kh):
 * unit u = b·nKvHeads + kh owns the output rows of its query heads and the dk/dv rows of its kv
 * head, so disjoint unit ranges can run on different threads and give the same bits as one loop.
 */
import type { FArr } from "./kernels.ts";

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

/** Number of independent units of an attention call: B · nKvHeads. */
export function attentionUnits(g: AttnGeo): number {
  return g.batch * g.nKvHeads;
}

/** Causal GQA attention forward for units `[u0, u1)`; writes out and lse `[B, nH, T]`. */
export function attention(
  q: FArr,
  k: FArr,
  v: FArr,
  out: FArr,
  lse: FArr,
  g: AttnGeo,
  u0 = 0,
  u1 = attentionUnits(g),
): void {
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale } = g;
  const group = H / KV, R = group * T;
  const Qg = new Float64Array(R * D), Kc = new Float64Array(T * D), Vc = new Float64Array(T * D);
  const p = new Float64Array(T), acc = new Float64Array(D);
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / KV), kh = u % KV;
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

/**
 * Attention backward from the saved lse: P = exp(S − lse), dV = Pᵀ·dO, dP = dO·Vᵀ,
 * dS = P ∘ (dP − rowsum(dO ∘ O)), dQ = scale·dS·K, dK = scale·dSᵀ·Q (summed over the query heads
 * sharing a kv head), for units `[u0, u1)`.
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
  u0 = 0,
  u1 = attentionUnits(g),
): void {
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale } = g;
  const group = H / KV, R = group * T;
  const Qg = new Float64Array(R * D), Kc = new Float64Array(T * D), Vc = new Float64Array(T * D);
  const dKc = new Float64Array(T * D), dVc = new Float64Array(T * D), dOr = new Float64Array(D);
  const dQr = new Float64Array(D);
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / KV), kh = u % KV;
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
