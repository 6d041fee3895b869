/**
 * Causal grouped-query attention of the CPU reference backend, forward and backward, in plain
 * TypeScript with f64 accumulation, with Gemma 2's score soft-capping and a sliding window as options
 * (AttentionShape in backend.ts). The work is cut into units, one per (sequence b, kv head kh):
 * unit u = b·nKvHeads + kh owns the output rows of its query heads and the dk/dv rows of its kv
 * head, so disjoint unit ranges can run on different threads and give the same bits as one loop.
 */
import type { AttentionShape } from "../family_ops.ts";
import type { FArr } from "./kernels.ts";

/** Geometry of one attention call (the Backend's AttentionShape). */
export type AttnGeo = AttentionShape;

/** The first key query t sees: 0, or t − window + 1 under a sliding window. */
export function firstKey(t: number, window: number | undefined): number {
  return window === undefined ? 0 : Math.max(0, t - window + 1);
}

/**
 * Checks the options a caller may set: a window is a positive integer, a cap a positive finite
 * number (a window of 0 would leave a query no key, a cap of 0 divides by zero).
 */
export function checkAttnOptions(g: AttnGeo): string | undefined {
  const { softcap, window } = g;
  if (window !== undefined && !(Number.isInteger(window) && window >= 1)) {
    return `attention window must be a positive integer, got ${window}`;
  }
  if (softcap !== undefined && !(Number.isFinite(softcap) && softcap > 0)) {
    return `attention softcap must be a positive number, got ${softcap}`;
  }
  return undefined;
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
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale, softcap: cap, window } = g;
  const group = H / KV, R = group * T;
  const Qg = new Float64Array(R * D), Kc = new Float64Array(T * D), Vc = new Float64Array(T * D);
  const p = new Float64Array(T), acc = new Float64Array(D);
  for (let u = u0; u < u1; u++) {
    const b = Math.floor(u / KV), kh = u % KV;
    gatherHeads(q, k, v, g, b, kh, Qg, Kc, Vc);
    for (let r = 0; r < R; r++) {
      const t = r % T, qo = r * D, lo = firstKey(t, window);
      let m = -Infinity;
      for (let s = lo; s <= t; s++) {
        let dot = 0;
        for (let d = 0, ko = s * D; d < D; d++) dot += Qg[qo + d] * Kc[ko + d];
        p[s] = cap === undefined ? dot * scale : cap * Math.tanh(dot * scale / cap);
        if (p[s] > m) m = p[s];
      }
      let sum = 0;
      acc.fill(0);
      for (let s = lo; s <= t; s++) {
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
 * sharing a kv head), for units `[u0, u1)`. Under a soft cap S = cap·tanh(S_raw/cap), so dS_raw =
 * dS·(1 − tanh²(S_raw/cap)).
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
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale, softcap: cap, window } = g;
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
      for (let s = firstKey(t, window); s <= t; s++) {
        const ko = s * D;
        let dot = 0, dp = 0;
        for (let d = 0; d < D; d++) {
          dot += Qg[qo + d] * Kc[ko + d];
          dp += dOr[d] * Vc[ko + d];
        }
        let pr: number, ds: number;
        if (cap === undefined) {
          pr = Math.exp(dot * scale - l);
          ds = pr * (dp - delta) * scale;
        } else {
          const th = Math.tanh(dot * scale / cap);
          pr = Math.exp(cap * th - l);
          ds = pr * (dp - delta) * scale * (1 - th * th);
        }
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
