/**
 * The GGUF layout of the issue-18 families as spec/MODELS.md § 8 states it, checked on a written file
 * against the checkpoint it came from (used by gguf_families_test.ts): tensor names and ggml shapes
 * llama.cpp's loaders ask for (src/models/*.cpp create_tensor), expert stacking order, forced F32
 * types, the Gemma +1 on norms and the family metadata keys.
 */
import { assert, assertEquals } from "./assert.ts";
import type { GgufFile } from "../src/formats/gguf/file.ts";
import type { ModelSpec } from "../src/model/config.ts";
import type { WeightSource } from "../src/model/transformer.ts";

function tensor(g: GgufFile, name: string) {
  const t = g.tensors.find((x) => x.name === name);
  assert(t, `${g.path}: no tensor ${name}`);
  return t;
}

function shapeIs(g: GgufFile, name: string, ne: number[], type?: string) {
  const t = tensor(g, name);
  assertEquals([...t.ne], ne, `${name} ne`);
  if (type) assertEquals(t.type, type, `${name} type`);
}

async function equalTo(g: GgufFile, name: string, want: Float32Array, offset = 0) {
  const got = await g.readF32(name);
  const part = got.subarray(offset, offset + want.length);
  for (let i = 0; i < want.length; i++) {
    if (part[i] !== want[i]) throw new Error(`${name}[${offset + i}] is ${part[i]}, expected ${want[i]}`);
  }
}

/** Check a family GGUF `g` written from `spec`/`w`; `f32`: every weight F32 (values compared exactly). */
export async function checkFamilyTensors(g: GgufFile, spec: ModelSpec, w: WeightSource, f32: boolean) {
  const a = spec.traits.ggufArch, H = spec.hidden, moe = spec.moe;
  for (const t of g.tensors) {
    if (t.ne.length === 1 || /norm\.weight$|ffn_gate_inp/.test(t.name)) assertEquals(t.type, "F32", t.name);
    assert(!/experts\.|shared_expert|gate_up|qkv_proj/.test(t.name), `unmapped ${t.name}`);
  }
  for (let i = 0; i < spec.nLayers; i++) {
    const b = `blk.${i}.`, hf = `model.layers.${i}.`;
    if (moe) {
      const Im = moe.expertInter, E = moe.nExperts;
      shapeIs(g, `${b}ffn_gate_exps.weight`, [H, Im, E]);
      shapeIs(g, `${b}ffn_up_exps.weight`, [H, Im, E]);
      shapeIs(g, `${b}ffn_down_exps.weight`, [Im, H, E]);
      const router = moe.style === "mixtral" ? "block_sparse_moe.gate" : "mlp.gate";
      shapeIs(g, `${b}ffn_gate_inp.weight`, [H, E], "F32");
      await equalTo(g, `${b}ffn_gate_inp.weight`, await w.readF32(`${hf}${router}.weight`));
      if (f32) {
        // Expert order: expert e's rows are the e-th slice of the stacked tensor.
        const names = moe.style === "mixtral" ? ["w1", "w3", "w2"] : ["gate_proj", "up_proj", "down_proj"];
        const prefix = moe.style === "mixtral" ? "block_sparse_moe.experts" : "mlp.experts";
        for (const [j, proj] of ["gate", "up", "down"].entries()) {
          for (let e = 0; e < E; e++) {
            const x = await w.readF32(`${hf}${prefix}.${e}.${names[j]}.weight`);
            await equalTo(g, `${b}ffn_${proj}_exps.weight`, x, e * x.length);
          }
        }
      }
      if (moe.sharedInter) {
        const Is = moe.sharedInter;
        shapeIs(g, `${b}ffn_gate_shexp.weight`, [H, Is]);
        shapeIs(g, `${b}ffn_up_shexp.weight`, [H, Is]);
        shapeIs(g, `${b}ffn_down_shexp.weight`, [Is, H]);
        shapeIs(g, `${b}ffn_gate_inp_shexp.weight`, [H], "F32");
        await equalTo(
          g,
          `${b}ffn_gate_inp_shexp.weight`,
          await w.readF32(`${hf}mlp.shared_expert_gate.weight`),
        );
      }
    }
    if (spec.sandwichNorms) {
      // The name trap: Gemma's post_attention_layernorm is post_attention_norm, its pre-MLP norm ffn_norm.
      const norms: [string, string][] = [
        ["attn_norm", "input_layernorm"],
        ["post_attention_norm", "post_attention_layernorm"],
        ["ffn_norm", "pre_feedforward_layernorm"],
        ["post_ffw_norm", "post_feedforward_layernorm"],
      ];
      if (spec.traits.qkNorm) {
        norms.push(["attn_q_norm", "self_attn.q_norm"], ["attn_k_norm", "self_attn.k_norm"]);
      }
      for (const [gg, h] of norms) {
        const x = await w.readF32(`${hf}${h}.weight`);
        await equalTo(g, `${b}${gg}.weight`, Float32Array.from(x, (v) => v + 1));
      }
    }
    if (spec.fused) {
      const D = spec.headDim, I = spec.intermediate;
      shapeIs(g, `${b}attn_qkv.weight`, [H, (spec.nHeads + 2 * spec.nKvHeads) * D]);
      shapeIs(g, `${b}ffn_up.weight`, [H, 2 * I]);
      assert(!g.tensors.some((t) => t.name === `${b}ffn_gate.weight`), "phi3 has no ffn_gate");
      if (f32) await equalTo(g, `${b}ffn_up.weight`, await w.readF32(`${hf}mlp.gate_up_proj.weight`));
    }
  }
  if (spec.sandwichNorms) {
    const x = await w.readF32("model.norm.weight");
    await equalTo(g, "output_norm.weight", Float32Array.from(x, (v) => v + 1));
    assert(!g.tensors.some((t) => t.name === "output.weight"), "gemma: output is token_embd");
  }
  const k = (s: string) => g.num(`${a}.${s}`);
  if (moe) {
    assertEquals(k("expert_count"), moe.nExperts);
    assertEquals(k("expert_used_count"), moe.topK);
    if (moe.style === "qwen") assertEquals(k("expert_feed_forward_length"), moe.expertInter);
    assertEquals(k("expert_shared_feed_forward_length"), moe.sharedInter);
  }
  if (a === "gemma2" || a === "gemma3") {
    assertEquals(k("attention.sliding_window"), spec.slidingWindow);
    assertEquals(k("attn_logit_softcapping"), spec.attnSoftcap);
    assertEquals(k("final_logit_softcapping"), spec.finalSoftcap);
    assertEquals(k("attention.key_length"), spec.headDim);
    if (a === "gemma3") assertEquals(k("rope.freq_base_swa"), spec.localRopeTheta);
  }
  if (a === "phi3") {
    assertEquals(k("rope.dimension_count"), spec.rotaryDim ?? spec.headDim);
    assertEquals(k("attention.sliding_window"), 0);
    const r = spec.ropeScaling;
    if (r.type === "longrope") {
      assertEquals(k("rope.scaling.original_context_length"), r.originalMaxPositions);
      assert(Math.abs(k("rope.scaling.attn_factor")! - r.attentionFactor) < 1e-6, "attn_factor");
      shapeIs(g, "rope_factors_long.weight", [r.longFactor.length], "F32");
      await equalTo(g, "rope_factors_long.weight", Float32Array.from(r.longFactor));
      await equalTo(g, "rope_factors_short.weight", Float32Array.from(r.shortFactor));
    }
  }
}
