/**
 * Optional Backend ops of the model families beyond Llama (spec/MODELS.md): Gemma's GeGLU and logit
 * soft-capping, and the row gather/scatter and synchronous reads of mixture-of-experts routing. A
 * backend without one refuses the family with UnsupportedError (the CPU backend has them all).
 * Also the attention geometry with its family options (soft-capping, sliding window).
 */

/** Batch geometry of attention inputs laid out as `[B·T, heads·headDim]`. */
export interface AttentionShape {
  batch: number;
  seqLen: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Softmax scale, normally 1/sqrt(headDim). */
  scale: number;
  /**
   * Gemma 2 logit soft-capping: each score s = scale·q·k becomes cap·tanh(s/cap) before the mask
   * and softmax. Absent: no capping. Backends without it throw UnsupportedError when it is set.
   */
  softcap?: number;
  /**
   * Sliding window (Gemma 2/3 sliding layers, Mistral/Qwen2 configs): query t sees key j iff
   * j ≤ t and t − j < window (transformers' `kv_idx > q_idx - sliding_window`). Absent: causal only.
   * Backends without it throw UnsupportedError when it is set.
   */
  window?: number;
}

/** Geometry of a rope call: `[batch·seqLen, nHeads·headDim]` rows, positions from `posOffset`. */
export interface RopeGeo {
  batch: number;
  seqLen: number;
  nHeads: number;
  headDim: number;
  posOffset?: number;
  /**
   * Partial rotary (Phi-3 `partial_rotary_factor`): only the first `rotaryDim` (even, ≤ headDim)
   * elements of each head rotate, pairing i with i + rotaryDim/2; the rest pass through. The tables
   * are then `[maxPos, rotaryDim/2]`. Absent: headDim.
   */
  rotaryDim?: number;
}

/** Family ops a Backend may offer, over its tensor type (the Backend's `Tensor`). */
export interface FamilyOps<Tensor> {
  /** h = gelu_tanh(g) · u (Gemma's GeGLU; gelu_tanh(x) = x/2·(1 + tanh(√(2/π)(x + 0.044715x³)))). */
  geluTanhMul?(g: Tensor, u: Tensor): Tensor;
  /** Gradients of geluTanhMul for dh; `overwrite` as in siluMulBackward. */
  geluTanhMulBackward?(
    g: Tensor,
    u: Tensor,
    dh: Tensor,
    opts?: { overwrite?: boolean },
  ): { dg: Tensor; du: Tensor };
  /** x ← cap·tanh(x/cap), in place (Gemma's final logit soft-capping; evaluation only). */
  tanhSoftcap?(x: Tensor, cap: number): void;
  /**
   * Row gather for mixture-of-experts routing: out[i, :] = scale[i]·x[rows[i], :] (scale omitted:
   * 1), rows i32 `[n]`, scale f32 `[n]` → `[n, cols]` in x's dtype.
   */
  gatherRows?(x: Tensor, rows: Tensor, scale?: Tensor): Tensor;
  /**
   * Scatter-add: out[rows[i], :] += scale[i]·src[i, :] (in place; rows may repeat). `unique`: the
   * caller guarantees no row repeats (a GPU may then add all rows at once).
   */
  scatterAddRows?(out: Tensor, src: Tensor, rows: Tensor, scale?: Tensor, unique?: boolean): void;
  /** Per-row dot products: f32 `[n]` with out[i] = Σ_c a[i, c]·b[i, c] (a, b `[n, cols]`). */
  rowDots?(a: Tensor, b: Tensor): Tensor;
  /**
   * The tensor's values now, without waiting: only backends whose tensors live in host memory
   * (the CPU backend) have it. Mixture-of-experts routing reads the router's logits with it inside
   * the synchronous block forward. A backend computing in f64 (the CPU backend's gradient-check mode)
   * returns its Float64Array values, so host math on them keeps that precision.
   */
  readSync?(t: Tensor): Float32Array | Float64Array;
}
