/**
 * Shared pieces of the mixture-of-experts tests: seeded random MoE weights, a plain float64
 * reference of the MoE MLP written from spec/MODELS.md § 2.1 with loops over tokens and slots (no
 * code shared with src/model/moe.ts), and a harness that runs moeForward/moeBackward with a `lin`
 * that records what it is asked and an optional column-scaling input transform x̃ = x ⊙ d.
 */
import type { Backend, Tensor } from "../src/backend/backend.ts";
import { expertLinear, type MoeConfig, moeLinearNames, type MoeNames } from "../src/model/moe.ts";

/** mulberry32: seeded, so a failure reproduces. */
export function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
export const rand = (r: () => number, n: number, s = 1) =>
  Float64Array.from({ length: n }, () => (r() * 2 - 1) * s);

/** Host weights `[rows, cols]` by relative name. */
export type HostWeights = Record<string, { w: Float64Array; rows: number; cols: number }>;

/** Random weights for `cfg` with hidden size H. */
export function randomWeights(r: () => number, cfg: MoeConfig, H: number): HostWeights {
  const W: HostWeights = {};
  const put = (name: string, rows: number, cols: number, s: number) =>
    W[name] = { w: rand(r, rows * cols, s), rows, cols };
  put(cfg.linearNames.router, cfg.nExperts, H, 1);
  for (let e = 0; e < cfg.nExperts; e++) {
    put(expertLinear(cfg, e, "gate"), cfg.expertInter, H, 0.5);
    put(expertLinear(cfg, e, "up"), cfg.expertInter, H, 0.5);
    put(expertLinear(cfg, e, "down"), H, cfg.expertInter, 0.5);
  }
  const s = cfg.linearNames.shared;
  if (s) {
    put(s.gate, cfg.sharedInter!, H, 0.5);
    put(s.up, cfg.sharedInter!, H, 0.5);
    put(s.down, H, cfg.sharedInter!, 0.5);
    put(s.gateLinear, 1, H, 0.5);
  }
  return W;
}

export function config(names: MoeNames, renorm: boolean, E = 4, k = 2, Im = 6, Is?: number): MoeConfig {
  return { nExperts: E, topK: k, renorm, expertInter: Im, sharedInter: Is, linearNames: names };
}

/** x·Wᵀ for one row x. */
function matVec(W: HostWeights[string], x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(W.rows);
  for (let i = 0; i < W.rows; i++) {
    let s = 0;
    for (let c = 0; c < W.cols; c++) s += W.w[i * W.cols + c] * x[c];
    y[i] = s;
  }
  return y;
}

/** (silu(x·Wgᵀ) ∘ (x·Wuᵀ))·Wdᵀ for one row. */
function mlpRow(W: HostWeights, [g, u, d]: string[], x: ArrayLike<number>): Float64Array {
  const a = matVec(W[g], x), b = matVec(W[u], x);
  return matVec(W[d], a.map((v, i) => v / (1 + Math.exp(-v)) * b[i]));
}

/** The float64 reference MoE MLP of h2 `[T, H]`, and the token count of each expert. */
export function referenceMoe(cfg: MoeConfig, W: HostWeights, h2: Float64Array, T: number) {
  const H = h2.length / T, E = cfg.nExperts, out = new Float64Array(T * H);
  const counts = new Array(E).fill(0);
  for (let t = 0; t < T; t++) {
    const x = h2.subarray(t * H, (t + 1) * H);
    const logits = matVec(W[cfg.linearNames.router], x);
    const m = Math.max(...logits);
    const ex = logits.map((l) => Math.exp(l - m));
    const z = ex.reduce((a, b) => a + b, 0);
    const p = ex.map((v) => v / z);
    const order = [...p.keys()].sort((a, b) => p[b] - p[a] || a - b).slice(0, cfg.topK);
    const sel = order.reduce((a, e) => a + p[e], 0);
    for (const e of order) {
      counts[e]++;
      const w = cfg.renorm ? p[e] / sel : p[e];
      const y = mlpRow(W, ["gate", "up", "down"].map((k) => expertLinear(cfg, e, k as "gate")), x);
      for (let c = 0; c < H; c++) out[t * H + c] += w * y[c];
    }
    const s = cfg.linearNames.shared;
    if (s) {
      const y = mlpRow(W, [s.gate, s.up, s.down], x);
      const g = 1 / (1 + Math.exp(-matVec(W[s.gateLinear], x)[0]));
      for (let c = 0; c < H; c++) out[t * H + c] += g * y[c];
    }
  }
  return { out, counts };
}

/** What a harness run saw: Linear calls, observations, weight gradients (host copies). */
export interface Trace {
  linCalls: string[];
  observed: string[];
  grads: Map<string, Float64Array>;
  inputGrads: string[];
}

/** Host values of a tensor at the backend's precision (the f64 CPU backend's storage unrounded). */
export function hostOf(be: Backend, t: Tensor): Float64Array {
  return Float64Array.from(be.readSync!(t));
}

/**
 * The callbacks moeForward/moeBackward take, over uploaded weights, with x̃ = x ⊙ d_K (d_K a fixed
 * vector per input width K) when `scaleInputs` is set: its backward is dL/dx = dL/dx̃ ⊙ d_K.
 */
export function harness(be: Backend, W: HostWeights, scaleInputs = false) {
  const weights: Record<string, Tensor> = {};
  for (const [n, { w, rows, cols }] of Object.entries(W)) weights[n] = be.upload(w, [rows, cols]);
  const trace: Trace = { linCalls: [], observed: [], grads: new Map(), inputGrads: [] };
  const transformed = new Map<string, Tensor>();
  const diag = (K: number) => {
    const D = new Float64Array(K * K);
    for (let i = 0; i < K; i++) D[i * K + i] = 0.5 + (i % 3) * 0.4;
    return be.upload(D, [K, K]);
  };
  const scaled = (x: Tensor) => {
    using D = diag(x.size / x.shape[0]);
    return be.matmul(x, D);
  };
  let save = false;
  const lin = (name: string, x: Tensor) => {
    trace.linCalls.push(name);
    if (!scaleInputs) return be.matmul(x, weights[name], { transB: true });
    const xt = scaled(x);
    const y = be.matmul(xt, weights[name], { transB: true });
    if (save) transformed.set(name, xt);
    else xt[Symbol.dispose]();
    return y;
  };
  const observe = (name: string) => void trace.observed.push(name);
  const weightGrad = (name: string, dOut: Tensor, input: Tensor) => {
    if (trace.grads.has(name)) throw new Error(`second weight gradient of ${name}`);
    using dW = be.matmul(dOut, transformed.get(name) ?? input, { transA: true });
    trace.grads.set(name, hostOf(be, dW));
  };
  const inputGrad = (name: string, _x: Tensor, dXt: Tensor) => {
    trace.inputGrads.push(name);
    if (!scaleInputs) return dXt;
    const dx = scaled(dXt);
    dXt[Symbol.dispose]();
    return dx;
  };
  return {
    weights,
    trace,
    /** moeForward's options; with `saving` the transformed inputs are kept for weightGrad. */
    fwd(saving = false) {
      save = saving;
      return { lin, observe, save: saving };
    },
    bwd: { weightGrad, inputGrad },
    [Symbol.dispose]() {
      for (const t of [...Object.values(weights), ...transformed.values()]) t[Symbol.dispose]();
    },
  };
}

/** Every MoE Linear name of a config, router included. */
export function allNames(cfg: MoeConfig): string[] {
  return [cfg.linearNames.router, ...moeLinearNames(cfg)];
}
