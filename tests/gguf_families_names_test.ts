/**
 * GGUF naming, type mixes and refusals of the issue-18 families without llama.cpp (spec/MODELS.md
 * § 8; llama.cpp src/models/*.cpp and src/llama-quant.cpp): per-architecture names both ways, expert
 * stacking bookkeeping, the 8-expert and fused-qkv type rules, and what llama.cpp would compute
 * differently from the checkpoint (warned) or cannot run (refused).
 */
import { assert, assertEquals, assertThrows, fixture } from "./assert.ts";
import { expertHfName, expertSlot, ggufToHfName, hfToGgufName } from "../src/formats/gguf/names.ts";
import { ggufFamilyWarnings } from "../src/formats/gguf/families.ts";
import { ggufFormat, GgufTypeSelector } from "../src/formats/gguf/presets.ts";
import { ExpertStacker } from "../src/export/gguf_experts.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { UnsupportedError } from "../src/errors.ts";

const L = "model.layers.2.";

Deno.test("GGUF names: Gemma's post_attention_layernorm is post_attention_norm, its pre-MLP norm ffn_norm", () => {
  for (const arch of ["gemma2", "gemma3"]) {
    assertEquals(
      hfToGgufName(`${L}post_attention_layernorm.weight`, arch),
      "blk.2.post_attention_norm.weight",
    );
    assertEquals(hfToGgufName(`${L}pre_feedforward_layernorm.weight`, arch), "blk.2.ffn_norm.weight");
    assertEquals(hfToGgufName(`${L}post_feedforward_layernorm.weight`, arch), "blk.2.post_ffw_norm.weight");
    assertEquals(ggufToHfName("blk.2.ffn_norm.weight", arch), `${L}pre_feedforward_layernorm.weight`);
    assertEquals(
      ggufToHfName("blk.2.post_attention_norm.weight", arch),
      `${L}post_attention_layernorm.weight`,
    );
  }
  // Llama-style: post_attention_layernorm is the pre-MLP norm.
  assertEquals(hfToGgufName(`${L}post_attention_layernorm.weight`, "qwen3moe"), "blk.2.ffn_norm.weight");
});

Deno.test("GGUF names: Phi-3 keeps qkv and gate_up fused (attn_qkv, ffn_up of 2·I rows)", () => {
  assertEquals(hfToGgufName(`${L}self_attn.qkv_proj.weight`, "phi3"), "blk.2.attn_qkv.weight");
  assertEquals(hfToGgufName(`${L}mlp.gate_up_proj.weight`, "phi3"), "blk.2.ffn_up.weight");
  assertEquals(ggufToHfName("blk.2.ffn_up.weight", "phi3"), `${L}mlp.gate_up_proj.weight`);
  assertEquals(ggufToHfName("blk.2.ffn_up.weight", "llama"), `${L}mlp.up_proj.weight`);
});

Deno.test("GGUF names: routers, shared expert and stacked experts of qwen2moe/qwen3moe/Mixtral", () => {
  assertEquals(hfToGgufName(`${L}mlp.gate.weight`, "qwen2moe"), "blk.2.ffn_gate_inp.weight");
  assertEquals(
    hfToGgufName(`${L}mlp.shared_expert.down_proj.weight`, "qwen2moe"),
    "blk.2.ffn_down_shexp.weight",
  );
  assertEquals(
    hfToGgufName(`${L}mlp.shared_expert_gate.weight`, "qwen2moe"),
    "blk.2.ffn_gate_inp_shexp.weight",
  );
  assertEquals(hfToGgufName(`${L}block_sparse_moe.gate.weight`, "mixtral"), "blk.2.ffn_gate_inp.weight");
  assertEquals(ggufToHfName("blk.2.ffn_gate_inp.weight", "mixtral"), `${L}block_sparse_moe.gate.weight`);
  // Mixtral's w1/w3/w2 are gate/up/down.
  assertEquals(expertSlot(`${L}block_sparse_moe.experts.5.w3.weight`, "mixtral"), {
    stacked: "blk.2.ffn_up_exps.weight",
    expert: 5,
    layer: 2,
    proj: "up",
  });
  assertEquals(hfToGgufName(`${L}mlp.experts.7.down_proj.weight`, "qwen3moe"), "blk.2.ffn_down_exps.weight");
  assertEquals(
    expertHfName("blk.2.ffn_down_exps.weight", 7, "qwen3moe"),
    `${L}mlp.experts.7.down_proj.weight`,
  );
  assertEquals(
    expertHfName("blk.2.ffn_gate_exps.weight", 1, "mixtral"),
    `${L}block_sparse_moe.experts.1.w1.weight`,
  );
  assertEquals(expertSlot(`${L}mlp.experts.7.down_proj.weight`, "llama"), undefined);
});

Deno.test("expert stacking: bytes in expert order whatever the arrival order; one type per tensor", () => {
  const s = new ExpertStacker(3);
  assertEquals(s.add("t", 2, "Q8_0", [32, 1], Uint8Array.of(2)), undefined);
  assertEquals(s.add("t", 0, "Q8_0", [32, 1], Uint8Array.of(0)), undefined);
  assertThrows(() => s.checkComplete(), Error, "only 2 of 3");
  const done = s.add("t", 1, "Q8_0", [32, 1], Uint8Array.of(1))!;
  assertEquals([...done.bytes], [0, 1, 2]);
  assertEquals(done.ne, [32, 1, 3]);
  s.checkComplete();
  s.add("u", 0, "Q8_0", [32, 1], Uint8Array.of(0));
  assertThrows(() => s.add("u", 1, "Q4_0", [32, 1], Uint8Array.of(0)), Error, "share one type");
});

Deno.test("type mix: 8 experts put attn_v/attn_k in Q8_0 and attn_output in Q5_K; fused qkv Q5_K under q4_k_m", () => {
  const f = ggufFormat("q4_k_m")!;
  const moe = new GgufTypeSelector(f, { nLayers: 4, nHeads: 8, nKvHeads: 2, tied: false, nExpert: 8 });
  assertEquals(moe.linear("blk.1.attn_v.weight", 1, 256), "Q8_0");
  assertEquals(moe.linear("blk.1.attn_k.weight", 1, 256), "Q8_0");
  assertEquals(moe.linear("blk.1.attn_output.weight", 1, 256), "Q5_K");
  assertEquals(moe.linear("blk.1.ffn_up_exps.weight", 1, 256), "Q4_K");
  const four = new GgufTypeSelector(f, { nLayers: 4, nHeads: 8, nKvHeads: 2, tied: false, nExpert: 4 });
  assertEquals(four.linear("blk.1.attn_k.weight", 1, 256), "Q4_K");
  assertEquals(four.linear("blk.1.attn_output.weight", 1, 256), "Q4_K");
  const f16 = new GgufTypeSelector(ggufFormat("f16")!, {
    nLayers: 4,
    nHeads: 8,
    nKvHeads: 2,
    tied: false,
    nExpert: 8,
  });
  assertEquals(f16.linear("blk.1.attn_k.weight", 1, 256), "F16");
  const dense = new GgufTypeSelector(f, { nLayers: 4, nHeads: 8, nKvHeads: 8, tied: false });
  assertEquals(dense.linear("blk.1.attn_qkv.weight", 1, 256), "Q5_K");
});

async function configOf(family: string, patch: Record<string, unknown> = {}) {
  const cfg = JSON.parse(await Deno.readTextFile(fixture(`models/${family}/config.json`)));
  return parseModelConfig({ ...cfg, ...patch }, `${family}/config.json`);
}

Deno.test("GGUF family checks: norm_topk_prob against llama.cpp's fixed choice is warned", async () => {
  assertEquals(ggufFamilyWarnings(await configOf("qwen2_moe")), []);
  assertEquals(ggufFamilyWarnings(await configOf("qwen3_moe")), []);
  assertEquals(ggufFamilyWarnings(await configOf("mixtral")), []);
  const w2 = ggufFamilyWarnings(await configOf("qwen2_moe_norm"));
  assert(w2.length === 1 && /norm_topk_prob=true.*never renormalises/.test(w2[0]), w2.join());
  const w3 = ggufFamilyWarnings(await configOf("qwen3_moe", { norm_topk_prob: false }));
  assert(w3.length === 1 && /always renormalises/.test(w3[0]), w3.join());
});

Deno.test("GGUF family checks: dense layers in a qwen MoE are refused; Gemma scale and Phi-3 window warned", async () => {
  assertThrows(
    () => ggufFamilyWarnings(parseModelConfigSync("qwen3_moe", { mlp_only_layers: [0] })),
    UnsupportedError,
    "no dense-MLP layers",
  );
  for (const family of ["gemma2", "gemma3_text", "phi3", "phi3_longrope"]) {
    assertEquals(ggufFamilyWarnings(await configOf(family)), [], family);
  }
  const g = ggufFamilyWarnings(await configOf("gemma2", { query_pre_attn_scalar: 64 }));
  assert(g.some((x) => /query_pre_attn_scalar/.test(x)), g.join());
  const p = ggufFamilyWarnings(await configOf("phi3", { sliding_window: 16 }));
  assert(p.some((x) => /disables Phi-3's sliding window/.test(x)), p.join());
});

function parseModelConfigSync(family: string, patch: Record<string, unknown>) {
  const cfg = JSON.parse(Deno.readTextFileSync(fixture(`models/${family}/config.json`)));
  return parseModelConfig({ ...cfg, ...patch }, `${family}/config.json`);
}
