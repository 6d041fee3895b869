/**
 * One Llama-family decoder block, forward and backward, written once against the Backend ops:
 *
 *   h1 = rmsnorm(x)·ln1;  q,k,v = h1·Wᵀ (+bias);  [q,k = rmsnorm_head(q,k)];  rope(q,k)
 *   a  = attention(q,k,v);  x2 = x + a·Woᵀ
 *   h2 = rmsnorm(x2)·ln2;  m = silu(h2·Wgᵀ) ∘ (h2·Wuᵀ);  y = x2 + m·Wdᵀ
 *
 * The Linear weights come in as tensors, so SignRound passes the fake-quantized ones and evaluation
 * the plain or dequantized ones; nothing here knows about quantization. Schemes that quantize
 * activations hand in an {@link InputTransform} applied to each Linear's input (and its backward).
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { LinearName, ModelSpec } from "./config.ts";

/** The tensors of one block on a backend. */
export interface BlockWeights {
  inputNorm: Tensor;
  postNorm: Tensor;
  linear: Record<LinearName, Tensor>;
  /** q/k/v biases (Qwen2). */
  bias?: { q: Tensor; k: Tensor; v: Tensor };
  /** Per-head q/k RMSNorm weights `[headDim]` (Qwen3). */
  qNorm?: Tensor;
  kNorm?: Tensor;
  /** Applied to the inputs of the Linears it names (activation fake quantization). */
  inputTransform?: InputTransform;
}

/** A transform of Linear inputs x ↦ x̃ (the Linear computes x̃·Wᵀ), with its backward. */
export interface InputTransform {
  /** Whether Linear `name`'s input is transformed. */
  applies(name: LinearName): boolean;
  /** x̃ for Linear `name`: a new tensor the caller disposes. */
  forward(name: LinearName, x: Tensor): Tensor;
  /** dL/dx from dL/dx̃ for Linear `name` (a new tensor); may record gradients of its own parameters. */
  backward(name: LinearName, x: Tensor, dXt: Tensor): Tensor;
}

/** RoPE tables on the backend, `[positions, headDim/2]` each. */
export interface RopeTensors {
  cos: Tensor;
  sin: Tensor;
}

/** Row geometry: the input is `[batch·seqLen, hidden]`. */
export interface Geometry {
  batch: number;
  seqLen: number;
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
  gate: Tensor;
  up: Tensor;
  act: Tensor;
  /** Transformed Linear inputs x̃ (BlockWeights.inputTransform), by Linear. */
  transformed?: Partial<Record<LinearName, Tensor>>;
}

/** Called with the input of each Linear (for importance statistics); must not keep the tensor. */
export type LinearInputObserver = (name: LinearName, input: Tensor) => void;

function linear(be: Backend, x: Tensor, w: Tensor): Tensor {
  return be.matmul(x, w, { transB: true });
}

function attentionShape(spec: ModelSpec, geo: Geometry) {
  return {
    batch: geo.batch,
    seqLen: geo.seqLen,
    nHeads: spec.nHeads,
    nKvHeads: spec.nKvHeads,
    headDim: spec.headDim,
    scale: 1 / Math.sqrt(spec.headDim),
  };
}

/**
 * Forward one block. With `save` the intermediates for blockBackward are returned (the caller
 * disposes them with disposeSaved); without it they are freed as soon as possible.
 */
export function blockForward(
  be: Backend,
  spec: ModelSpec,
  w: BlockWeights,
  x: Tensor,
  geo: Geometry,
  rope: RopeTensors,
  opts: { save?: boolean; observe?: LinearInputObserver; posOffset?: number } = {},
): { y: Tensor; saved?: SavedBlock } {
  const { save = false, observe } = opts;
  const ropeGeo = { batch: geo.batch, seqLen: geo.seqLen, headDim: spec.headDim, posOffset: opts.posOffset };
  const transformed: Partial<Record<LinearName, Tensor>> = {};
  const lin = (name: LinearName, input: Tensor) => {
    const tf = w.inputTransform?.applies(name) ? w.inputTransform.forward(name, input) : undefined;
    const out = linear(be, tf ?? input, w.linear[name]);
    if (tf && save) transformed[name] = tf;
    else tf?.[Symbol.dispose]();
    return out;
  };
  const h1 = be.rmsNorm(x, w.inputNorm, spec.rmsEps);
  observe?.("self_attn.q_proj", h1);
  let q = lin("self_attn.q_proj", h1);
  let k = lin("self_attn.k_proj", h1);
  const v = lin("self_attn.v_proj", h1);
  if (w.bias) {
    be.addRowVector(q, w.bias.q);
    be.addRowVector(k, w.bias.k);
    be.addRowVector(v, w.bias.v);
  }
  let qPre: Tensor | undefined, kPre: Tensor | undefined;
  if (w.qNorm && w.kNorm) {
    qPre = q;
    kPre = k;
    // rmsNorm normalizes each run of w.size = headDim elements: per head.
    q = be.rmsNorm(qPre, w.qNorm, spec.rmsEps);
    k = be.rmsNorm(kPre, w.kNorm, spec.rmsEps);
    if (!save) {
      qPre[Symbol.dispose]();
      kPre[Symbol.dispose]();
      qPre = kPre = undefined;
    }
  }
  be.rope(q, rope.cos, rope.sin, { ...ropeGeo, nHeads: spec.nHeads });
  be.rope(k, rope.cos, rope.sin, { ...ropeGeo, nHeads: spec.nKvHeads });
  const { out: attn, lse } = be.attention(q, k, v, attentionShape(spec, geo));
  observe?.("self_attn.o_proj", attn);
  const o = lin("self_attn.o_proj", attn);
  const x2 = be.add(x, o);
  o[Symbol.dispose]();
  const h2 = be.rmsNorm(x2, w.postNorm, spec.rmsEps);
  observe?.("mlp.gate_proj", h2);
  const gate = lin("mlp.gate_proj", h2);
  const up = lin("mlp.up_proj", h2);
  const act = be.siluMul(gate, up);
  observe?.("mlp.down_proj", act);
  const d = lin("mlp.down_proj", act);
  const y = be.add(x2, d, d);
  if (save) {
    return { y, saved: { x, h1, qPre, kPre, q, k, v, attn, lse, x2, h2, gate, up, act, transformed } };
  }
  for (const t of [h1, q, k, v, attn, lse, x2, h2, gate, up, act]) t[Symbol.dispose]();
  return { y };
}

/** Free the intermediates of a saved forward (not the input x, which the caller owns). */
export function disposeSaved(s: SavedBlock): void {
  for (const t of Object.values(s.transformed ?? {})) t[Symbol.dispose]();
  for (const [key, t] of Object.entries(s)) {
    if (key !== "x" && key !== "transformed" && t) (t as Tensor)[Symbol.dispose]();
  }
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

/**
 * Backward of one block from dL/dy, returning dL/dW for the Linear weights `need` selects. The
 * block input's gradient is computed only with `opts.onInputGrad`: SignRound tunes one block at a
 * time against fixed inputs, so nothing upstream of q/k/v needs it (NUMBERS.md notes this saves ≈4%
 * of the FLOPs).
 */
export function blockBackward(
  be: Backend,
  spec: ModelSpec,
  w: BlockWeights,
  s: SavedBlock,
  dy: Tensor,
  geo: Geometry,
  rope: RopeTensors,
  need: NeedGrad,
  opts: BackwardOptions = {},
): Map<LinearName, Tensor> {
  const grads = new Map<LinearName, Tensor>();
  const tf = s.transformed ?? {};
  const weightGrad = (name: LinearName, dOut: Tensor, input: Tensor) => {
    if (!need(name)) return;
    // dW = dOutᵀ · x̃ (the Linear saw the transformed input when there is one)
    const dW = be.matmul(dOut, tf[name] ?? input, { transA: true });
    if (opts.release) {
      tf[name]?.[Symbol.dispose]();
      delete tf[name];
    }
    if (opts.onGrad) opts.onGrad(name, dW);
    else grads.set(name, dW);
  };
  const saved = s as unknown as Record<string, Tensor | undefined>;
  const drop = (...keys: (keyof SavedBlock)[]) => {
    if (!opts.release) return;
    for (const key of keys) {
      saved[key]?.[Symbol.dispose]();
      delete saved[key];
    }
  };
  /** dL/dx from dL/dx̃ = dXt for Linear `name` whose input was x (dXt is consumed). */
  const throughTransform = (name: LinearName, x: Tensor, dXt: Tensor): Tensor => {
    if (!w.inputTransform?.applies(name)) return dXt;
    const dx = w.inputTransform.backward(name, x, dXt);
    dXt[Symbol.dispose]();
    return dx;
  };
  // y = x2 + act·Wdᵀ
  weightGrad("mlp.down_proj", dy, s.act);
  let dAct: Tensor;
  if (w.inputTransform?.applies("mlp.down_proj")) {
    dAct = throughTransform("mlp.down_proj", s.act, be.matmul(dy, w.linear["mlp.down_proj"]));
    drop("act");
  } else {
    drop("act"); // before dAct exists: the two widest tensors are never alive together
    dAct = be.matmul(dy, w.linear["mlp.down_proj"]);
  }
  // Releasing: dg and du may take gate's and up's memory (the MLP's two widest tensors).
  const { dg, du } = be.siluMulBackward(s.gate, s.up, dAct, { overwrite: opts.release });
  dAct[Symbol.dispose]();
  if (dg === s.gate) delete saved.gate; // now dg's, freed below with it
  if (du === s.up) delete saved.up;
  drop("gate", "up");
  weightGrad("mlp.gate_proj", dg, s.h2);
  weightGrad("mlp.up_proj", du, s.h2);
  let dh2: Tensor;
  if (w.inputTransform?.applies("mlp.gate_proj") || w.inputTransform?.applies("mlp.up_proj")) {
    dh2 = throughTransform("mlp.gate_proj", s.h2, be.matmul(dg, w.linear["mlp.gate_proj"]));
    const dUp = throughTransform("mlp.up_proj", s.h2, be.matmul(du, w.linear["mlp.up_proj"]));
    be.add(dh2, dUp, dh2);
    dUp[Symbol.dispose]();
  } else {
    dh2 = be.matmul(dg, w.linear["mlp.gate_proj"]);
    be.matmul(du, w.linear["mlp.up_proj"], { out: dh2, beta: 1 });
  }
  drop("h2");
  dg[Symbol.dispose]();
  du[Symbol.dispose]();
  // x2 = x + attn·Woᵀ, h2 = rmsnorm(x2): dx2 = dy + rmsnorm'(dh2)
  const dx2 = be.rmsNormBackward(s.x2, w.postNorm, dh2, spec.rmsEps);
  dh2[Symbol.dispose]();
  drop("x2");
  be.add(dx2, dy, dx2);
  weightGrad("self_attn.o_proj", dx2, s.attn);
  const dAttn = throughTransform("self_attn.o_proj", s.attn, be.matmul(dx2, w.linear["self_attn.o_proj"]));
  const inputGrad = opts.onInputGrad;
  if (!inputGrad) dx2[Symbol.dispose]();
  const needQkv = need("self_attn.q_proj") || need("self_attn.k_proj") || need("self_attn.v_proj");
  if (needQkv || inputGrad) {
    const shape = attentionShape(spec, geo);
    const { dq, dk, dv } = be.attentionBackward(s.q, s.k, s.v, s.attn, s.lse, dAttn, shape);
    drop("q", "k", "v", "attn", "lse");
    const ropeGeo = { batch: geo.batch, seqLen: geo.seqLen, headDim: spec.headDim };
    be.rope(dq, rope.cos, rope.sin, { ...ropeGeo, nHeads: spec.nHeads }, true);
    be.rope(dk, rope.cos, rope.sin, { ...ropeGeo, nHeads: spec.nKvHeads }, true);
    let dqIn = dq, dkIn = dk;
    if (w.qNorm && w.kNorm && s.qPre && s.kPre) {
      dqIn = be.rmsNormBackward(s.qPre, w.qNorm, dq, spec.rmsEps);
      dkIn = be.rmsNormBackward(s.kPre, w.kNorm, dk, spec.rmsEps);
      dq[Symbol.dispose]();
      dk[Symbol.dispose]();
      drop("qPre", "kPre");
    }
    weightGrad("self_attn.q_proj", dqIn, s.h1);
    weightGrad("self_attn.k_proj", dkIn, s.h1);
    weightGrad("self_attn.v_proj", dv, s.h1);
    if (inputGrad) {
      // x feeds h1 = rmsnorm(x) (→ q, k, v) and the residual: dx = dx2 + rmsnorm'(Σ dOut·W).
      const dh1 = throughTransform("self_attn.q_proj", s.h1, be.matmul(dqIn, w.linear["self_attn.q_proj"]));
      for (const [name, d] of [["self_attn.k_proj", dkIn], ["self_attn.v_proj", dv]] as const) {
        const part = throughTransform(name, s.h1, be.matmul(d, w.linear[name]));
        be.add(dh1, part, dh1);
        part[Symbol.dispose]();
      }
      const dx = be.rmsNormBackward(s.x, w.inputNorm, dh1, spec.rmsEps);
      dh1[Symbol.dispose]();
      be.add(dx, dx2, dx);
      dx2[Symbol.dispose]();
      inputGrad(dx);
    }
    for (const t of [dqIn, dkIn, dv]) t[Symbol.dispose]();
  }
  dAttn[Symbol.dispose]();
  drop("h1", "qPre", "kPre", "q", "k", "v", "attn", "lse");
  if (opts.release) {
    for (const t of Object.values(tf)) t[Symbol.dispose]();
    delete s.transformed;
  }
  return grads;
}
