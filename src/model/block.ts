/**
 * One decoder block, forward and backward, written once against the Backend ops:
 *
 *   h1 = rmsnorm(x)·ln1;  q,k,v = h1·Wᵀ (+bias);  [q,k = rmsnorm_head(q,k)];  rope(q,k)
 *   a  = attention(q,k,v);  o = a·Woᵀ;  x2 = x + o          [Gemma: x + rmsnorm(o)·ln_pa]
 *   h2 = rmsnorm(x2)·ln2;  m = act(h2·Wgᵀ) ∘ (h2·Wuᵀ);  d = m·Wdᵀ;  y = x2 + d   [Gemma: + rmsnorm(d)·ln_pf]
 *
 * with the family's parts as data in the ModelSpec (spec/MODELS.md): Phi-3's fused qkv/gate_up
 * (one Linear each, computed as row slices), partial rotary, Gemma's GeGLU, soft-capping, sandwich
 * norms and sliding-window layers, and mixture-of-experts MLPs (moe.ts) in place of the dense one.
 *
 * The Linear weights come in as tensors (SignRound's fake-quantized ones, evaluation's plain or
 * dequantized ones): nothing here knows about quantization. Schemes that quantize activations hand
 * in an {@link InputTransform} applied to each Linear's input (and its backward).
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import { UnsupportedError } from "../errors.ts";
import {
  attentionShape,
  type BackwardOptions,
  fusedInputGrad,
  fusedLinear,
  fusedParts,
  fusedWeightGrad,
  gatedAct,
  gatedActBackward,
  type Geometry,
  type InputTransform,
  type NeedGrad,
  ropeFor,
  type RopeTensors,
  type SavedBlock,
} from "./block_parts.ts";
import { isMoeLayer, moeConfigOf } from "./block_layout.ts";
import type { LinearName, ModelSpec } from "./config.ts";
import { disposeMoeSaved, moeBackward, moeForward, type MoeSaved } from "./moe.ts";

export type {
  BackwardOptions,
  Geometry,
  InputTransform,
  NeedGrad,
  RopeTensors,
  SavedBlock,
} from "./block_parts.ts";

/** The tensors of one block on a backend. */
export interface BlockWeights {
  /** The block's index (selects sliding-window layers and MoE vs dense MLPs); 0 when absent. */
  layer?: number;
  inputNorm: Tensor;
  /** The norm before the MLP (Llama `post_attention_layernorm`, Gemma `pre_feedforward_layernorm`). */
  postNorm: Tensor;
  /** Gemma: norms of the attention output and of the MLP output. */
  postAttnNorm?: Tensor;
  postFfnNorm?: Tensor;
  /** Every Linear weight by name, the 16-bit MoE router included. */
  linear: Record<LinearName, Tensor>;
  /** q/k/v biases (Qwen2). */
  bias?: { q: Tensor; k: Tensor; v: Tensor };
  /** Per-head q/k RMSNorm weights `[headDim]` (Qwen3). */
  qNorm?: Tensor;
  kNorm?: Tensor;
  /** Applied to the inputs of the Linears it names (activation fake quantization). */
  inputTransform?: InputTransform;
}

/** Called with the input of each Linear (for importance statistics); must not keep the tensor. */
export type LinearInputObserver = (name: LinearName, input: Tensor) => void;

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
  const layer = w.layer ?? 0, posOffset = opts.posOffset ?? 0;
  const table = ropeFor(spec, rope, layer, posOffset + geo.seqLen);
  const ropeGeo = {
    batch: geo.batch,
    seqLen: geo.seqLen,
    headDim: spec.headDim,
    posOffset,
    rotaryDim: spec.rotaryDim,
  };
  const transformed: Partial<Record<LinearName, Tensor>> = {};
  /** The input Linear `name` multiplies (transformed when an InputTransform applies). */
  const input = (name: LinearName, x: Tensor): { x: Tensor; free: () => void } => {
    const tf = w.inputTransform?.applies(name) ? w.inputTransform.forward(name, x) : undefined;
    if (!tf) return { x, free: () => {} };
    if (save) transformed[name] = tf;
    return { x: tf, free: () => save || tf[Symbol.dispose]() };
  };
  const lin = (name: LinearName, x: Tensor) => {
    const i = input(name, x);
    const out = be.matmul(i.x, w.linear[name], { transB: true });
    i.free();
    return out;
  };
  const fused = (name: LinearName, x: Tensor) => {
    observe?.(name, x);
    const i = input(name, x);
    const out = fusedLinear(be, i.x, w.linear[name], fusedParts(spec, name));
    i.free();
    return out;
  };
  const h1 = be.rmsNorm(x, w.inputNorm, spec.rmsEps);
  let q: Tensor, k: Tensor, v: Tensor;
  if (spec.fused) [q, k, v] = fused("self_attn.qkv_proj", h1);
  else {
    observe?.("self_attn.q_proj", h1);
    q = lin("self_attn.q_proj", h1);
    k = lin("self_attn.k_proj", h1);
    v = lin("self_attn.v_proj", h1);
  }
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
  be.rope(q, table.cos, table.sin, { ...ropeGeo, nHeads: spec.nHeads });
  be.rope(k, table.cos, table.sin, { ...ropeGeo, nHeads: spec.nKvHeads });
  const { out: attn, lse } = be.attention(q, k, v, attentionShape(spec, geo, layer, posOffset));
  observe?.("self_attn.o_proj", attn);
  let o = lin("self_attn.o_proj", attn), oPre: Tensor | undefined;
  if (w.postAttnNorm) {
    oPre = o;
    o = be.rmsNorm(oPre, w.postAttnNorm, spec.rmsEps);
  }
  const x2 = be.add(x, o);
  o[Symbol.dispose]();
  const h2 = be.rmsNorm(x2, w.postNorm, spec.rmsEps);
  let gate: Tensor | undefined, up: Tensor | undefined, act: Tensor | undefined, moe: MoeSaved | undefined;
  let d: Tensor;
  if (isMoeLayer(spec, layer)) {
    if (!spec.moe) throw new UnsupportedError("MoE layer without a MoE spec");
    const r = moeForward(be, moeConfigOf(spec.moe), w.linear, h2, { save, lin, observe });
    d = r.out;
    moe = r.saved;
  } else {
    if (spec.fused) [gate, up] = fused("mlp.gate_up_proj", h2);
    else {
      observe?.("mlp.gate_proj", h2);
      gate = lin("mlp.gate_proj", h2);
      up = lin("mlp.up_proj", h2);
    }
    act = gatedAct(be, spec, gate, up);
    observe?.("mlp.down_proj", act);
    d = lin("mlp.down_proj", act);
  }
  let dPre: Tensor | undefined;
  if (w.postFfnNorm) {
    dPre = d;
    d = be.rmsNorm(dPre, w.postFfnNorm, spec.rmsEps);
  }
  const y = be.add(x2, d, d);
  if (save) {
    const saved: SavedBlock = { x, h1, qPre, kPre, q, k, v, attn, lse, x2, h2, gate, up, act, transformed };
    if (oPre) saved.o = oPre;
    if (dPre) saved.d = dPre;
    if (moe) saved.moe = moe;
    return { y, saved };
  }
  for (const t of [h1, q, k, v, attn, lse, x2, h2, gate, up, act, oPre, dPre]) t?.[Symbol.dispose]();
  return { y };
}

/** Free the intermediates of a saved forward (not the input x, which the caller owns). */
export function disposeSaved(s: SavedBlock): void {
  for (const t of Object.values(s.transformed ?? {})) t?.[Symbol.dispose]();
  if (s.moe) disposeMoeSaved(s.moe);
  for (const [key, t] of Object.entries(s)) {
    if (key !== "x" && key !== "transformed" && key !== "moe" && t) (t as Tensor)[Symbol.dispose]();
  }
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
  const layer = w.layer ?? 0;
  const tf = s.transformed ?? {};
  const emit = (name: LinearName, dW: Tensor) => {
    if (opts.release) {
      tf[name]?.[Symbol.dispose]();
      delete tf[name];
    }
    if (opts.onGrad) opts.onGrad(name, dW);
    else grads.set(name, dW);
  };
  const weightGrad = (name: LinearName, dOut: Tensor, input: Tensor) => {
    // dW = dOutᵀ · x̃ (the Linear saw the transformed input when there is one)
    if (need(name)) emit(name, be.matmul(dOut, tf[name] ?? input, { transA: true }));
  };
  const fusedGrad = (name: LinearName, dOuts: Tensor[], input: Tensor) => {
    if (need(name)) {
      emit(name, fusedWeightGrad(be, w.linear[name], tf[name] ?? input, dOuts, fusedParts(spec, name)));
    }
  };
  const saved = s as unknown as Record<string, Tensor | undefined>;
  const drop = (...keys: (keyof SavedBlock)[]) => {
    if (!opts.release) return;
    for (const key of keys) {
      if (key === "moe") continue;
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
  // y = x2 + [postFfnNorm](d)
  let dd = dy;
  if (w.postFfnNorm) {
    dd = be.rmsNormBackward(s.d!, w.postFfnNorm, dy, spec.rmsEps);
    drop("d");
  }
  let dh2: Tensor;
  if (s.moe) {
    dh2 = moeBackward(be, moeConfigOf(spec.moe!), w.linear, s.moe, dd, {
      weightGrad,
      inputGrad: throughTransform,
      release: opts.release,
    });
  } else {
    const act = s.act!, gate = s.gate!, up = s.up!;
    weightGrad("mlp.down_proj", dd, act);
    let dAct: Tensor;
    if (w.inputTransform?.applies("mlp.down_proj")) {
      dAct = throughTransform("mlp.down_proj", act, be.matmul(dd, w.linear["mlp.down_proj"]));
      drop("act");
    } else {
      drop("act"); // before dAct exists: the two widest tensors are never alive together
      dAct = be.matmul(dd, w.linear["mlp.down_proj"]);
    }
    // Releasing: dg and du may take gate's and up's memory (the MLP's two widest tensors).
    const { dg, du } = gatedActBackward(be, spec, gate, up, dAct, { overwrite: opts.release });
    dAct[Symbol.dispose]();
    if (dg === gate) delete saved.gate; // now dg's, freed below with it
    if (du === up) delete saved.up;
    drop("gate", "up");
    if (spec.fused) {
      const name = "mlp.gate_up_proj", parts = fusedParts(spec, name);
      fusedGrad(name, [dg, du], s.h2);
      dh2 = throughTransform(name, s.h2, fusedInputGrad(be, w.linear[name], [dg, du], parts));
    } else {
      weightGrad("mlp.gate_proj", dg, s.h2);
      weightGrad("mlp.up_proj", du, s.h2);
      if (w.inputTransform?.applies("mlp.gate_proj") || w.inputTransform?.applies("mlp.up_proj")) {
        dh2 = throughTransform("mlp.gate_proj", s.h2, be.matmul(dg, w.linear["mlp.gate_proj"]));
        const dUp = throughTransform("mlp.up_proj", s.h2, be.matmul(du, w.linear["mlp.up_proj"]));
        be.add(dh2, dUp, dh2);
        dUp[Symbol.dispose]();
      } else {
        dh2 = be.matmul(dg, w.linear["mlp.gate_proj"]);
        be.matmul(du, w.linear["mlp.up_proj"], { out: dh2, beta: 1 });
      }
    }
    dg[Symbol.dispose]();
    du[Symbol.dispose]();
  }
  if (dd !== dy) dd[Symbol.dispose]();
  drop("h2");
  if (s.moe && opts.release) {
    disposeMoeSaved(s.moe);
    delete s.moe;
  }
  // x2 = x + [postAttnNorm](o), h2 = rmsnorm(x2): dx2 = dy + rmsnorm'(dh2)
  const dx2 = be.rmsNormBackward(s.x2, w.postNorm, dh2, spec.rmsEps);
  dh2[Symbol.dispose]();
  drop("x2");
  be.add(dx2, dy, dx2);
  let dO = dx2;
  if (w.postAttnNorm) {
    dO = be.rmsNormBackward(s.o!, w.postAttnNorm, dx2, spec.rmsEps);
    drop("o");
  }
  weightGrad("self_attn.o_proj", dO, s.attn);
  const dAttn = throughTransform("self_attn.o_proj", s.attn, be.matmul(dO, w.linear["self_attn.o_proj"]));
  if (dO !== dx2) dO[Symbol.dispose]();
  const inputGrad = opts.onInputGrad;
  if (!inputGrad) dx2[Symbol.dispose]();
  const needQkv = spec.fused
    ? need("self_attn.qkv_proj")
    : need("self_attn.q_proj") || need("self_attn.k_proj") || need("self_attn.v_proj");
  if (needQkv || inputGrad) {
    const shape = attentionShape(spec, geo, layer);
    const { dq, dk, dv } = be.attentionBackward(s.q, s.k, s.v, s.attn, s.lse, dAttn, shape);
    drop("q", "k", "v", "attn", "lse");
    const table = ropeFor(spec, rope, layer, geo.seqLen);
    const ropeGeo = {
      batch: geo.batch,
      seqLen: geo.seqLen,
      headDim: spec.headDim,
      rotaryDim: spec.rotaryDim,
    };
    be.rope(dq, table.cos, table.sin, { ...ropeGeo, nHeads: spec.nHeads }, true);
    be.rope(dk, table.cos, table.sin, { ...ropeGeo, nHeads: spec.nKvHeads }, true);
    let dqIn = dq, dkIn = dk;
    if (w.qNorm && w.kNorm && s.qPre && s.kPre) {
      dqIn = be.rmsNormBackward(s.qPre, w.qNorm, dq, spec.rmsEps);
      dkIn = be.rmsNormBackward(s.kPre, w.kNorm, dk, spec.rmsEps);
      dq[Symbol.dispose]();
      dk[Symbol.dispose]();
      drop("qPre", "kPre");
    }
    const qkv = "self_attn.qkv_proj";
    if (spec.fused) fusedGrad(qkv, [dqIn, dkIn, dv], s.h1);
    else {
      weightGrad("self_attn.q_proj", dqIn, s.h1);
      weightGrad("self_attn.k_proj", dkIn, s.h1);
      weightGrad("self_attn.v_proj", dv, s.h1);
    }
    if (inputGrad) {
      // x feeds h1 = rmsnorm(x) (→ q, k, v) and the residual: dx = dx2 + rmsnorm'(Σ dOut·W).
      let dh1: Tensor;
      if (spec.fused) {
        dh1 = throughTransform(
          qkv,
          s.h1,
          fusedInputGrad(be, w.linear[qkv], [dqIn, dkIn, dv], fusedParts(spec, qkv)),
        );
      } else {
        dh1 = throughTransform("self_attn.q_proj", s.h1, be.matmul(dqIn, w.linear["self_attn.q_proj"]));
        for (const [name, d] of [["self_attn.k_proj", dkIn], ["self_attn.v_proj", dv]] as const) {
          const part = throughTransform(name, s.h1, be.matmul(d, w.linear[name]));
          be.add(dh1, part, dh1);
          part[Symbol.dispose]();
        }
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
    for (const t of Object.values(tf)) t?.[Symbol.dispose]();
    delete s.transformed;
  }
  return grads;
}
