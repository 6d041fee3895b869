/**
 * Mixture-of-experts routing on the host (spec/MODELS.md § 2.1–2.2): softmax of the router logits
 * over the E experts, top-k, optional renormalisation, the per-expert lists of routed rows, and the
 * backward of the routing weights into the logits. The logits come from Backend.readSync: a
 * Float32Array is routed in f32 as auto-round does (softmax and renorm rounded to f32), a
 * Float64Array (the CPU backend in f64, for gradient checks) in f64.
 */

/** Where each token's k slots go and with what weight. */
export interface Routing {
  /** Tokens (rows of h2). */
  T: number;
  /** Experts. */
  E: number;
  /** Experts per token. */
  k: number;
  /** `[T·E]` softmax of the logits (f32-rounded when routed in f32). */
  probs: Float64Array;
  /** `[T·k]` expert of slot (t, j), by descending probability; ties: lower expert index first. */
  idx: Int32Array;
  /** `[T·k]` routing weight of slot (t, j): its probability, renormalised over the k slots if asked. */
  weights: Float64Array;
  /**
   * Smallest gap between a token's k-th and (k+1)-th probability (Infinity when k = E): how far the
   * logits may move before top-k changes (tests keep their perturbations well inside it).
   */
  margin: number;
  /** Per expert: the tokens routed to it (ascending) and their slots t·k + j (empty: no tokens). */
  experts: { rows: Int32Array; slots: Int32Array }[];
}

/**
 * Route T tokens: p = softmax(logits[t, :]) in f32 (f64 for a Float64Array), the k largest in
 * descending order (ties: lower index), w = p/Σp over the k when `renorm`.
 *
 * @example
 * ```ts
 * const r = routeTokens(new Float32Array([2, 0, 1]), 1, 3, 2, true);
 * r.idx; // Int32Array [0, 2]
 * ```
 */
export function routeTokens(
  logits: Float32Array | Float64Array,
  T: number,
  E: number,
  k: number,
  renorm: boolean,
): Routing {
  if (logits.length !== T * E) throw new Error(`routeTokens: ${logits.length} logits for ${T}×${E}`);
  if (!(k >= 1 && k <= E)) throw new Error(`routeTokens: top-${k} of ${E} experts`);
  const round = logits instanceof Float64Array ? (v: number) => v : Math.fround;
  const probs = new Float64Array(T * E), idx = new Int32Array(T * k), weights = new Float64Array(T * k);
  const taken = new Uint8Array(E);
  let margin = Infinity;
  for (let t = 0; t < T; t++) {
    const l = logits.subarray(t * E, (t + 1) * E), p = probs.subarray(t * E, (t + 1) * E);
    let max = -Infinity, sum = 0;
    for (let e = 0; e < E; e++) max = Math.max(max, l[e]);
    for (let e = 0; e < E; e++) sum += p[e] = Math.exp(l[e] - max);
    for (let e = 0; e < E; e++) p[e] = round(p[e] / sum);
    taken.fill(0);
    // k passes of a strict-greater scan: the lowest index wins a tie.
    for (let j = 0; j < k; j++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (!taken[e] && (best < 0 || p[e] > p[best])) best = e;
      taken[best] = 1;
      idx[t * k + j] = best;
      weights[t * k + j] = p[best];
    }
    let next = -Infinity;
    for (let e = 0; e < E; e++) if (!taken[e]) next = Math.max(next, p[e]);
    margin = Math.min(margin, weights[t * k + k - 1] - next);
    if (renorm) {
      let s = 0;
      for (let j = 0; j < k; j++) s += weights[t * k + j];
      s = round(s);
      for (let j = 0; j < k; j++) weights[t * k + j] = round(weights[t * k + j] / s);
    }
  }
  return { T, E, k, probs, idx, weights, margin, experts: expertLists(idx, T, E, k) };
}

/** Per expert, its tokens (ascending) and slots. */
function expertLists(idx: Int32Array, T: number, E: number, k: number): Routing["experts"] {
  const count = new Int32Array(E);
  for (const e of idx) count[e]++;
  const lists = Array.from(count, (n) => ({ rows: new Int32Array(n), slots: new Int32Array(n) }));
  const fill = new Int32Array(E);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = idx[t * k + j], at = fill[e]++;
      lists[e].rows[at] = t;
      lists[e].slots[at] = t * k + j;
    }
  }
  return lists;
}

/**
 * dL/dlogits `[T·E]` from dL/dw `[T·k]` (spec § 2.2): through renorm (w = p_S/Σp_S) when on, then
 * the softmax Jacobian over all E experts (unselected probabilities take part, their dL/dp is 0).
 * The cast of w to the block dtype passes the gradient unchanged, as autograd's does.
 */
export function routingBackward(r: Routing, renorm: boolean, dw: ArrayLike<number>): Float64Array {
  const { T, E, k, probs, idx } = r;
  const dLogits = new Float64Array(T * E);
  const dp = new Float64Array(k);
  for (let t = 0; t < T; t++) {
    let s = 0, c = 0;
    for (let j = 0; j < k; j++) s += probs[t * E + idx[t * k + j]];
    // renorm: ∂w_j/∂p_i = (δ_ij − w_j)/S, so dL/dp_i = (g_i − Σ_j g_j·w_j)/S
    if (renorm) { for (let j = 0; j < k; j++) c += dw[t * k + j] * probs[t * E + idx[t * k + j]] / s; }
    for (let j = 0; j < k; j++) dp[j] = renorm ? (dw[t * k + j] - c) / s : dw[t * k + j];
    // softmax: dL/dl_e = p_e·(dL/dp_e − Σ_i p_i·dL/dp_i)
    let dot = 0;
    for (let j = 0; j < k; j++) dot += dp[j] * probs[t * E + idx[t * k + j]];
    for (let e = 0; e < E; e++) dLogits[t * E + e] = -probs[t * E + e] * dot;
    for (let j = 0; j < k; j++) {
      const e = idx[t * k + j];
      dLogits[t * E + e] += probs[t * E + e] * dp[j];
    }
  }
  return dLogits;
}
