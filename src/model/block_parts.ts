/**
 * Helpers of block.ts shared by its forward and backward: the attention geometry of a layer (scale,
 * soft-cap, sliding window), the RoPE tables it uses, and the fused-Linear slices of Phi-3.
 */
import type { AttentionShape, Backend, Tensor } from "../backend/backend.ts";
import { UnsupportedError } from "../errors.ts";
import type { LinearName, ModelSpec } from "./config.ts";
import type { MoeSaved } from "./moe.ts";

/** A transform of Linear inputs x ↦ x̃ (the Linear computes x̃·Wᵀ), with its backward. */
export interface InputTransform {
  /** Whether Linear `name`'s input is transformed. */
  applies(name: LinearName): boolean;
  /** x̃ for Linear `name`: a new tensor the caller disposes. */
  forward(name: LinearName, x: Tensor): Tensor;
  /** dL/dx from dL/dx̃ for Linear `name` (a new tensor); may record gradients of its own parameters. */
  backward(name: LinearName, x: Tensor, dXt: Tensor): Tensor;
}

/** Which Linear weight gradients to compute (the rest of the backward runs regardless). */
export type NeedGrad = (name: LinearName) => boolean;

/** How blockBackward hands out results and memory. */
export interface BackwardOptions {
  /**
   * Receives each weight gradient as soon as it is computed, and owns it (the returned map stays
   * empty): a caller that reduces dL/dW at once holds one Linear's gradient at a time, not seven.
   */
  onGrad?: (name: LinearName, dW: Tensor) => void;
  /**
   * Free each saved intermediate right after its last read (the caller must not use `s` again,
   * except `s.x`): the MLP's gate, up and product go before the attention backward allocates.
   */
  release?: boolean;
  /**
   * Also compute the block input's gradient dL/dx (through q/k/v's matmuls and input transform, the
   * input RMSNorm backward and the residual) and hand it over (the callee owns it). AutoScheme's
   * scoring pass chains blocks backwards with it (spec/AUTOSCHEME.md § 3.3); when absent, nothing
   * of it is computed or kept.
   */
  onInputGrad?: (dx: Tensor) => void;
}

/** Intermediate tensors the backward pass reads; dispose with disposeSaved. */
export interface SavedBlock {
  x: Tensor;
  h1: Tensor;
  qPre?: Tensor;
  kPre?: Tensor;
  q: Tensor;
  k: Tensor;
  v: Tensor;
  attn: Tensor;
  lse: Tensor;
  x2: Tensor;
  h2: Tensor;
  /** Dense MLP intermediates (absent in MoE layers). */
  gate?: Tensor;
  up?: Tensor;
  act?: Tensor;
  /** Gemma: the attention and MLP outputs before their post-norms. */
  o?: Tensor;
  d?: Tensor;
  /** MoE layers: what moeBackward reads. */
  moe?: MoeSaved;
  /** Transformed Linear inputs x̃ (BlockWeights.inputTransform), by Linear. */
  transformed?: Partial<Record<LinearName, Tensor>>;
}

/** RoPE tables on the backend, `[positions, rotaryDim/2]` each. */
export interface RopeTensors {
  cos: Tensor;
  sin: Tensor;
  /** Tables of sliding-window layers when their base differs (Gemma 3's local θ). */
  local?: { cos: Tensor; sin: Tensor };
  /** LongRoPE's long-factor tables, used when a forward covers more than the original length. */
  long?: { cos: Tensor; sin: Tensor };
}

/** Row geometry: the input is `[batch·seqLen, hidden]`. */
export interface Geometry {
  batch: number;
  seqLen: number;
}

/** Whether layer `layer` is a sliding-window layer. */
export function isSliding(spec: ModelSpec, layer: number): boolean {
  if (spec.slidingWindow === undefined) return false;
  return spec.layerTypes ? spec.layerTypes[layer] === "sliding" : true;
}

/** The attention of layer `layer` for `geo` (positions start at `posOffset`). */
export function attentionShape(spec: ModelSpec, geo: Geometry, layer = 0, posOffset = 0): AttentionShape {
  const shape: AttentionShape = {
    batch: geo.batch,
    seqLen: geo.seqLen,
    nHeads: spec.nHeads,
    nKvHeads: spec.nKvHeads,
    headDim: spec.headDim,
    scale: spec.attnScale ?? 1 / Math.sqrt(spec.headDim),
  };
  if (spec.attnSoftcap !== undefined) shape.softcap = spec.attnSoftcap;
  // A window no shorter than the positions covered masks nothing: leave it out (every backend runs).
  if (isSliding(spec, layer) && spec.slidingWindow! < geo.seqLen + posOffset) {
    shape.window = spec.slidingWindow;
  }
  if (shape.window !== undefined && posOffset > 0) {
    throw new UnsupportedError(
      `sliding-window attention with cached positions (generation) is not supported`,
    );
  }
  return shape;
}

/** cos/sin tables for layer `layer` and a forward over positions [0, end). */
export function ropeFor(spec: ModelSpec, rope: RopeTensors, layer: number, end: number) {
  if (rope.local && isSliding(spec, layer)) return rope.local;
  if (rope.long && spec.ropeScaling.type === "longrope" && end > spec.ropeScaling.originalMaxPositions) {
    return rope.long;
  }
  return rope;
}

/** Row ranges of Phi-3's fused weights: [name of the part, first row, rows]. */
export function fusedParts(spec: ModelSpec, name: LinearName): [string, number, number][] {
  const { nHeads, nKvHeads, headDim: D, intermediate: I } = spec;
  if (name === "self_attn.qkv_proj") {
    return [["q", 0, nHeads * D], ["k", nHeads * D, nKvHeads * D], [
      "v",
      (nHeads + nKvHeads) * D,
      nKvHeads * D,
    ]];
  }
  if (name === "mlp.gate_up_proj") return [["gate", 0, I], ["up", I, I]];
  throw new Error(`${name} is not fused`);
}

/** x·W_partᵀ for each row range of a fused weight (the same values as one product, then split). */
export function fusedLinear(be: Backend, x: Tensor, w: Tensor, parts: [string, number, number][]): Tensor[] {
  return parts.map(([, start, n]) => {
    using wp = be.rows(w, start, n);
    return be.matmul(x, wp, { transB: true });
  });
}

/** dW of a fused Linear: each part's dOutᵀ·x written into its rows. */
export function fusedWeightGrad(
  be: Backend,
  w: Tensor,
  x: Tensor,
  dOuts: Tensor[],
  parts: [string, number, number][],
): Tensor {
  const dW = be.full(w.shape, 0, dOuts[0].dtype);
  parts.forEach(([, start, n], i) => {
    using rows = be.rows(dW, start, n);
    be.matmul(dOuts[i], x, { transA: true, out: rows, beta: 0 });
  });
  return dW;
}

/** Σ dOut_part·W_part: the gradient reaching a fused Linear's input. */
export function fusedInputGrad(
  be: Backend,
  w: Tensor,
  dOuts: Tensor[],
  parts: [string, number, number][],
): Tensor {
  let acc: Tensor | undefined;
  parts.forEach(([, start, n], i) => {
    using wp = be.rows(w, start, n);
    if (!acc) acc = be.matmul(dOuts[i], wp);
    else be.matmul(dOuts[i], wp, { out: acc, beta: 1 });
  });
  return acc!;
}

/** The gated activation of the family: silu(g)·u, or Gemma's gelu_tanh(g)·u. */
export function gatedAct(be: Backend, spec: ModelSpec, g: Tensor, u: Tensor): Tensor {
  if (spec.act !== "gelu_tanh") return be.siluMul(g, u);
  if (!be.geluTanhMul) throw new UnsupportedError(`the ${be.name} backend has no GeGLU (use --device cpu)`);
  return be.geluTanhMul(g, u);
}

/** Backward of gatedAct. */
export function gatedActBackward(
  be: Backend,
  spec: ModelSpec,
  g: Tensor,
  u: Tensor,
  dh: Tensor,
  opts: { overwrite?: boolean },
): { dg: Tensor; du: Tensor } {
  if (spec.act !== "gelu_tanh") return be.siluMulBackward(g, u, dh, opts);
  if (!be.geluTanhMulBackward) {
    throw new UnsupportedError(`the ${be.name} backend has no GeGLU (use --device cpu)`);
  }
  return be.geluTanhMulBackward(g, u, dh, opts);
}
