/**
 * What a decoder block holds, per family and layer: its Linear layers (the quantizable ones, in
 * execution order, with [out, in] shapes) and every tensor the forward pass reads. Dense Llama
 * blocks have the seven of BLOCK_LINEARS; Phi-3 fuses qkv and gate_up; mixture-of-experts blocks have
 * one gate/up/down triple per expert (plus Qwen2-MoE's shared expert and its gate), and a router
 * that is read but never quantized (spec/MODELS.md § 6).
 */
import { blockPrefix, type LinearName, type ModelSpec } from "./config.ts";
import type { MoeSpec } from "./families.ts";
import { embedName, finalNormName } from "./multimodal.ts";
import { MIXTRAL_NAMES, type MoeConfig, moeLinearNames, QWEN2_MOE_NAMES, QWEN3_MOE_NAMES } from "./moe.ts";

/** A Linear of a block: name relative to the block prefix, [out, in]. */
export interface BlockLinear {
  name: LinearName;
  out: number;
  in: number;
  /** A MoE router: read by the forward, never quantized (auto-round keeps `.gate` 16-bit). */
  router?: true;
}

/** The MoE MLP's configuration for moe.ts (names in the checkpoint's own spelling). */
export function moeConfigOf(moe: MoeSpec): MoeConfig {
  const linearNames = moe.style === "mixtral"
    ? MIXTRAL_NAMES
    : moe.sharedInter
    ? QWEN2_MOE_NAMES
    : QWEN3_MOE_NAMES;
  return { ...moe, linearNames };
}

/** Whether layer `i` has a mixture-of-experts MLP. */
export function isMoeLayer(spec: ModelSpec, i: number): boolean {
  return spec.moe !== undefined && !spec.moe.denseLayers.includes(i);
}

/** The Linears of block `i` in execution order: the quantizable ones, and a MoE block's router last. */
export function blockLinears(spec: ModelSpec, i: number): BlockLinear[] {
  const { hidden: H, intermediate: I, nHeads, nKvHeads, headDim: D } = spec;
  const out: BlockLinear[] = spec.fused
    ? [
      { name: "self_attn.qkv_proj", out: (nHeads + 2 * nKvHeads) * D, in: H },
      { name: "self_attn.o_proj", out: H, in: nHeads * D },
    ]
    : [
      { name: "self_attn.q_proj", out: nHeads * D, in: H },
      { name: "self_attn.k_proj", out: nKvHeads * D, in: H },
      { name: "self_attn.v_proj", out: nKvHeads * D, in: H },
      { name: "self_attn.o_proj", out: H, in: nHeads * D },
    ];
  const moe = spec.moe;
  if (moe && isMoeLayer(spec, i)) {
    const cfg = moeConfigOf(moe), shared = cfg.linearNames.shared;
    for (const name of moeLinearNames(cfg)) {
      const isShared = shared && name.startsWith("mlp.shared_expert");
      const width = isShared ? moe.sharedInter! : moe.expertInter;
      const down = name.endsWith(isShared ? shared.down : `.${cfg.linearNames.proj.down}`);
      if (shared && name === shared.gateLinear) out.push({ name, out: 1, in: H });
      else out.push(down ? { name, out: H, in: width } : { name, out: width, in: H });
    }
    out.push({ name: cfg.linearNames.router, out: moe.nExperts, in: H, router: true });
  } else if (spec.fused) {
    out.push({ name: "mlp.gate_up_proj", out: 2 * I, in: H }, { name: "mlp.down_proj", out: H, in: I });
  } else {
    out.push({ name: "mlp.gate_proj", out: I, in: H }, { name: "mlp.up_proj", out: I, in: H });
    out.push({ name: "mlp.down_proj", out: H, in: I });
  }
  return out;
}

/** Tensor names (relative to the block prefix) and shapes of block `i`. */
export function blockWeightShapes(spec: ModelSpec, i: number): [string, number[]][] {
  const { hidden: H, nHeads, nKvHeads, headDim: D } = spec;
  const out: [string, number[]][] = [["input_layernorm.weight", [H]], ["post_attention_layernorm.weight", [
    H,
  ]]];
  if (spec.sandwichNorms) {
    out.push(["pre_feedforward_layernorm.weight", [H]], ["post_feedforward_layernorm.weight", [H]]);
  }
  for (const l of blockLinears(spec, i)) out.push([`${l.name}.weight`, [l.out, l.in]]);
  if (spec.traits.qkvBias) {
    out.push(["self_attn.q_proj.bias", [nHeads * D]]);
    out.push(["self_attn.k_proj.bias", [nKvHeads * D]]);
    out.push(["self_attn.v_proj.bias", [nKvHeads * D]]);
  }
  if (spec.traits.qkNorm) {
    out.push(["self_attn.q_norm.weight", [D]]);
    out.push(["self_attn.k_norm.weight", [D]]);
  }
  return out;
}

/** Shape of every weight the forward pass reads, keyed by checkpoint tensor name. */
export function expectedWeights(spec: ModelSpec): Map<string, number[]> {
  const m = new Map<string, number[]>();
  m.set(embedName(spec), [spec.vocab, spec.hidden]);
  for (let i = 0; i < spec.nLayers; i++) {
    for (const [name, shape] of blockWeightShapes(spec, i)) m.set(blockPrefix(i, spec) + name, shape);
  }
  m.set(finalNormName(spec), [spec.hidden]);
  if (!spec.tieEmbeddings) m.set(spec.lmHeadName, [spec.vocab, spec.hidden]);
  return m;
}
