/**
 * Test models made on the fly:
 *
 * - `widenStories`: stories260K with every Linear's input width a multiple of 256, computing exactly
 *   the same function, so the K-quants (Q2_K … Q6_K, blocks of 256 inputs) apply to a real trained
 *   model instead of falling back to Q5_0/Q8_0 as they must for 64 inputs. hidden 64 → 256 with zero
 *   columns, 8 → 32 heads and 4 → 16 kv heads (the new heads are all-zero, their attention output is
 *   0), intermediate 172 → 256 (zero rows/columns: silu(0)·0 = 0). RMSNorm over 256 dims sees a mean
 *   square 4× smaller, so the norm weights are halved and eps divided by 4: x/√(m/4 + ε/4)·g/2 =
 *   x/√(m + ε)·g on the real dims.
 * - `tinyQwen`: a random Qwen2 or Qwen3 of two blocks with the real Qwen3 tokenizer (byte-level BPE,
 *   151,669 tokens) and config vocab 151,936, for the "gpt2" tokenizer, padding and architecture keys.
 */
import { SafetensorsReader } from "../../src/io/safetensors/reader.ts";
import { SafetensorsWriter } from "../../src/io/safetensors/writer.ts";
import { encodeFloats } from "../../src/tensor/dtype.ts";
import { REPO, STORIES } from "./helpers.ts";
import { join } from "./path.ts";

const SIDE_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
];

async function copySide(src: string, dst: string, files = SIDE_FILES): Promise<void> {
  for (const f of files) {
    try {
      await Deno.copyFile(join(src, f), join(dst, f));
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
}

/** Embed a [rows, cols] matrix into a zero [R, C] one at the top-left. */
function pad2(w: Float32Array, rows: number, cols: number, R: number, C: number): Float32Array {
  const out = new Float32Array(R * C);
  for (let r = 0; r < rows; r++) out.set(w.subarray(r * cols, (r + 1) * cols), r * C);
  return out;
}

/** Write stories260K widened to input widths of 256 into `dir` (F32). */
export async function widenStories(dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const cfg = JSON.parse(await Deno.readTextFile(join(STORIES, "config.json")));
  const H = 64, I = 172, H2 = 256, I2 = 256, D = 8;
  using r = await SafetensorsReader.open(STORIES);
  await using w = new SafetensorsWriter(dir, { maxShardSize: 1e9 });
  const put = (name: string, shape: number[], v: Float32Array) =>
    w.add(name, "F32", shape, encodeFloats(v, "F32"));
  const norm = async (name: string) => {
    const g = await r.readF32(name);
    const out = new Float32Array(H2);
    for (let i = 0; i < H; i++) out[i] = g[i] / 2;
    await put(name, [H2], out);
  };
  await put(
    "model.embed_tokens.weight",
    [512, H2],
    pad2(await r.readF32("model.embed_tokens.weight"), 512, H, 512, H2),
  );
  for (let b = 0; b < cfg.num_hidden_layers; b++) {
    const p = `model.layers.${b}.`;
    await norm(p + "input_layernorm.weight");
    await norm(p + "post_attention_layernorm.weight");
    const lin = async (n: string, rows: number, cols: number, R: number, C: number) =>
      await put(p + n + ".weight", [R, C], pad2(await r.readF32(p + n + ".weight"), rows, cols, R, C));
    await lin("self_attn.q_proj", 8 * D, H, 32 * D, H2);
    await lin("self_attn.k_proj", 4 * D, H, 16 * D, H2);
    await lin("self_attn.v_proj", 4 * D, H, 16 * D, H2);
    await lin("self_attn.o_proj", H, 8 * D, H2, 32 * D);
    await lin("mlp.gate_proj", I, H, I2, H2);
    await lin("mlp.up_proj", I, H, I2, H2);
    await lin("mlp.down_proj", H, I, H2, I2);
  }
  await norm("model.norm.weight");
  await w.finish();
  const wide = {
    ...cfg,
    hidden_size: H2,
    intermediate_size: I2,
    num_attention_heads: 32,
    num_key_value_heads: 16,
    head_dim: D,
    rms_norm_eps: cfg.rms_norm_eps / 4,
  };
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(wide, null, 2));
  await copySide(STORIES, dir);
  await Deno.copyFile(join(STORIES, "eval.txt"), join(dir, "eval.txt"));
  return dir;
}

/** Deterministic N(0, σ²)-ish values (xorshift + Irwin–Hall). */
function randn(n: number, sigma: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (u() + u() + u() + u() - 2) * Math.sqrt(3) * sigma;
  return out;
}

/** The Qwen3 tokenizer fixture folder (shared models). */
export const QWEN3_TOKENIZER = join(REPO, "..", "shared", "models", "qwen3-tokenizer");

/** A random two-block Qwen2/Qwen3 with the Qwen3 tokenizer, BF16 weights, written into `dir`. */
export async function tinyQwen(dir: string, arch: "qwen2" | "qwen3"): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const H = 64, I = 128, L = 2, NH = 4, NKV = 2, D = 16, V = 151936;
  await using w = new SafetensorsWriter(dir, { maxShardSize: 1e9 });
  let seed = 1;
  const put = (name: string, shape: number[], v: Float32Array) =>
    w.add(name, "BF16", shape, encodeFloats(v, "BF16"));
  const rnd = (name: string, shape: number[], sigma: number) =>
    put(name, shape, randn(shape.reduce((a, b) => a * b), sigma, seed++));
  const ones = (name: string, n: number) => put(name, [n], randn(n, 0.1, seed++).map((x) => 1 + x));
  await rnd("model.embed_tokens.weight", [V, H], 0.5);
  for (let b = 0; b < L; b++) {
    const p = `model.layers.${b}.`;
    await ones(p + "input_layernorm.weight", H);
    await ones(p + "post_attention_layernorm.weight", H);
    await rnd(p + "self_attn.q_proj.weight", [NH * D, H], 0.15);
    await rnd(p + "self_attn.k_proj.weight", [NKV * D, H], 0.15);
    await rnd(p + "self_attn.v_proj.weight", [NKV * D, H], 0.15);
    await rnd(p + "self_attn.o_proj.weight", [H, NH * D], 0.15);
    if (arch === "qwen2") {
      await rnd(p + "self_attn.q_proj.bias", [NH * D], 0.1);
      await rnd(p + "self_attn.k_proj.bias", [NKV * D], 0.1);
      await rnd(p + "self_attn.v_proj.bias", [NKV * D], 0.1);
    } else {
      await ones(p + "self_attn.q_norm.weight", D);
      await ones(p + "self_attn.k_norm.weight", D);
    }
    await rnd(p + "mlp.gate_proj.weight", [I, H], 0.15);
    await rnd(p + "mlp.up_proj.weight", [I, H], 0.15);
    await rnd(p + "mlp.down_proj.weight", [H, I], 0.1);
  }
  await ones("model.norm.weight", H);
  await w.finish();
  const cfg = {
    architectures: [arch === "qwen2" ? "Qwen2ForCausalLM" : "Qwen3ForCausalLM"],
    model_type: arch,
    hidden_size: H,
    intermediate_size: I,
    num_hidden_layers: L,
    num_attention_heads: NH,
    num_key_value_heads: NKV,
    head_dim: D,
    vocab_size: V,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-6,
    rope_theta: 1000000,
    hidden_act: "silu",
    attention_bias: arch === "qwen2",
    tie_word_embeddings: true,
    torch_dtype: "bfloat16",
    bos_token_id: 151643,
    eos_token_id: 151645,
  };
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(cfg, null, 2));
  await copySide(QWEN3_TOKENIZER, dir);
  return dir;
}

/**
 * A random two-block MoE whose every Linear input is 256 wide, so that the K-quants apply to the
 * stacked experts instead of falling back (the family fixtures are 64 wide): qwen2_moe (shared
 * expert, norm_topk_prob false, as llama.cpp's qwen2moe computes) or mixtral (8 experts: the
 * llama-quant.cpp 8-expert type rules, q/k permuted), F32, stories260K tokenizer, written into `dir`.
 */
export async function wideMoe(
  dir: string,
  family: "qwen2_moe" | "mixtral",
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const H = 256,
    Im = 256,
    L = 2,
    NH = 4,
    NKV = 2,
    D = 64,
    V = 512,
    E = family === "mixtral" ? 8 : 4;
  await using w = new SafetensorsWriter(dir, { maxShardSize: 1e9 });
  let seed = 7;
  const put = (name: string, shape: number[], v: Float32Array) =>
    w.add(name, "F32", shape, encodeFloats(v, "F32"));
  const rnd = (name: string, shape: number[], sigma: number) =>
    put(name, shape, randn(shape.reduce((a, b) => a * b), sigma, seed++));
  const ones = (name: string, n: number) => put(name, [n], randn(n, 0.1, seed++).map((x) => 1 + x));
  await rnd("model.embed_tokens.weight", [V, H], 0.5);
  const [moe, proj] = family === "mixtral"
    ? ["block_sparse_moe", ["w1", "w3", "w2"]]
    : ["mlp", ["gate_proj", "up_proj", "down_proj"]];
  for (let b = 0; b < L; b++) {
    const p = `model.layers.${b}.`;
    await ones(p + "input_layernorm.weight", H);
    await ones(p + "post_attention_layernorm.weight", H);
    await rnd(p + "self_attn.q_proj.weight", [NH * D, H], 0.08);
    await rnd(p + "self_attn.k_proj.weight", [NKV * D, H], 0.08);
    await rnd(p + "self_attn.v_proj.weight", [NKV * D, H], 0.08);
    await rnd(p + "self_attn.o_proj.weight", [H, NH * D], 0.08);
    if (family === "qwen2_moe") {
      for (const x of ["q", "k", "v"]) {
        await rnd(
          `${p}self_attn.${x}_proj.bias`,
          [(x === "q" ? NH : NKV) * D],
          0.1,
        );
      }
      await rnd(p + "mlp.shared_expert.gate_proj.weight", [Im, H], 0.08);
      await rnd(p + "mlp.shared_expert.up_proj.weight", [Im, H], 0.08);
      await rnd(p + "mlp.shared_expert.down_proj.weight", [H, Im], 0.06);
      await rnd(p + "mlp.shared_expert_gate.weight", [1, H], 0.1);
    }
    await rnd(`${p}${moe}.gate.weight`, [E, H], 0.3);
    for (let e = 0; e < E; e++) {
      await rnd(`${p}${moe}.experts.${e}.${proj[0]}.weight`, [Im, H], 0.08);
      await rnd(`${p}${moe}.experts.${e}.${proj[1]}.weight`, [Im, H], 0.08);
      await rnd(`${p}${moe}.experts.${e}.${proj[2]}.weight`, [H, Im], 0.06);
    }
  }
  await ones("model.norm.weight", H);
  await rnd("lm_head.weight", [V, H], 0.1);
  await w.finish();
  const common = {
    hidden_size: H,
    num_hidden_layers: L,
    num_attention_heads: NH,
    num_key_value_heads: NKV,
    head_dim: D,
    vocab_size: V,
    max_position_embeddings: 256,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    hidden_act: "silu",
    tie_word_embeddings: false,
    torch_dtype: "float32",
    bos_token_id: 1,
    eos_token_id: 2,
    num_experts_per_tok: 2,
  };
  const cfg = family === "mixtral"
    ? {
      ...common,
      architectures: ["MixtralForCausalLM"],
      model_type: "mixtral",
      intermediate_size: Im,
      num_local_experts: E,
    }
    : {
      ...common,
      architectures: ["Qwen2MoeForCausalLM"],
      model_type: "qwen2_moe",
      intermediate_size: 512,
      moe_intermediate_size: Im,
      shared_expert_intermediate_size: Im,
      num_experts: E,
      norm_topk_prob: false,
      qkv_bias: true,
    };
  await Deno.writeTextFile(
    join(dir, "config.json"),
    JSON.stringify(cfg, null, 2),
  );
  await copySide(STORIES, dir);
  return dir;
}
