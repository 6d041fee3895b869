/**
 * Write a random-initialised Llama-family checkpoint with the project's own streaming writer, for
 * speed and memory benchmarks at realistic shapes (weights ~ N(0, 0.02²), norms 1).
 *
 *   deno run -A bench/make_random_llama.ts --out /tmp/llama1b --hidden 2048 --intermediate 5632 \
 *     --layers 22 --heads 32 --kv_heads 4 --vocab 32000 [--dtype bf16] [--max_shard_size 1GB]
 *     [--tokenizer DIR]   (tokenizer files to copy in; the vocab size is not checked)
 *
 * Host memory stays at one tensor: each is generated, written and dropped.
 */
import { parseSize, SafetensorsWriter } from "../src/io/safetensors/writer.ts";
import { blockWeightShapes } from "../src/model/block_layout.ts";
import { blockPrefix, parseModelConfig } from "../src/model/config.ts";
import { encodeFloats, type FloatDType } from "../src/tensor/dtype.ts";
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";
import { join } from "../src/std/path.ts";

const FLAGS: FlagSpec = {
  out: { type: "string" },
  hidden: { type: "string" },
  intermediate: { type: "string" },
  layers: { type: "string" },
  heads: { type: "string" },
  kv_heads: { type: "string" },
  head_dim: { type: "string" },
  vocab: { type: "string" },
  rope_theta: { type: "string" },
  model_type: { type: "string" },
  dtype: { type: "string" },
  max_shard_size: { type: "string" },
  tokenizer: { type: "string" },
  seed: { type: "string" },
};

/** mulberry32 uniforms → Box-Muller normals; deterministic for a seed. */
function normals(seed: number): (out: Float32Array, std: number) => void {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) + 0.5) / 4294967296;
  };
  return (out, std) => {
    for (let i = 0; i < out.length; i += 2) {
      const r = std * Math.sqrt(-2 * Math.log(uniform())), th = 2 * Math.PI * uniform();
      out[i] = r * Math.cos(th);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(th);
    }
  };
}

export async function makeRandomLlama(o: {
  out: string;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim?: number;
  vocab: number;
  ropeTheta?: number;
  modelType?: string;
  dtype?: FloatDType;
  maxShardSize?: number;
  tokenizerDir?: string;
  seed?: number;
}): Promise<{ bytes: number; params: number }> {
  const dtype = o.dtype ?? "BF16";
  const config = {
    architectures: [o.modelType === "qwen3" ? "Qwen3ForCausalLM" : "LlamaForCausalLM"],
    model_type: o.modelType ?? "llama",
    hidden_size: o.hidden,
    intermediate_size: o.intermediate,
    num_hidden_layers: o.layers,
    num_attention_heads: o.heads,
    num_key_value_heads: o.kvHeads,
    head_dim: o.headDim ?? o.hidden / o.heads,
    vocab_size: o.vocab,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: o.ropeTheta ?? 500000,
    hidden_act: "silu",
    tie_word_embeddings: false,
    torch_dtype: dtype === "BF16" ? "bfloat16" : dtype === "F16" ? "float16" : "float32",
    bos_token_id: 1,
    eos_token_id: 2,
  };
  await Deno.mkdir(o.out, { recursive: true });
  const spec = parseModelConfig(config, "generated");
  const writer = new SafetensorsWriter(o.out, { maxShardSize: o.maxShardSize ?? 2e9 });
  const fill = normals(o.seed ?? 1234);
  let bytes = 0, params = 0;
  const put = async (name: string, shape: number[], isNorm: boolean) => {
    const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
    if (isNorm) v.fill(1);
    else fill(v, 0.02);
    const data = encodeFloats(v, dtype);
    await writer.add(name, dtype, shape, data);
    bytes += data.byteLength;
    params += v.length;
  };
  await put("model.embed_tokens.weight", [spec.vocab, spec.hidden], false);
  for (let i = 0; i < spec.nLayers; i++) {
    for (const [rel, shape] of blockWeightShapes(spec, 0)) {
      await put(blockPrefix(i, spec) + rel, shape, rel.includes("norm"));
    }
  }
  await put("model.norm.weight", [spec.hidden], true);
  await put("lm_head.weight", [spec.vocab, spec.hidden], false);
  await writer.finish();
  await Deno.writeTextFile(join(o.out, "config.json"), JSON.stringify(config, null, 2) + "\n");
  if (o.tokenizerDir) {
    for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]) {
      try {
        await Deno.copyFile(join(o.tokenizerDir, f), join(o.out, f));
      } catch { /* optional file */ }
    }
  }
  return { bytes, params };
}

if (import.meta.main) {
  const { values: f } = parseFlags(Deno.args, FLAGS);
  const n = (k: string, d?: number) => (f[k] !== undefined ? Number(f[k]) : d!);
  const t0 = performance.now();
  const r = await makeRandomLlama({
    out: String(f.out ?? "/tmp/random-llama"),
    hidden: n("hidden", 2048),
    intermediate: n("intermediate", 5632),
    layers: n("layers", 22),
    heads: n("heads", 32),
    kvHeads: n("kv_heads", 4),
    headDim: f.head_dim !== undefined ? n("head_dim") : undefined,
    vocab: n("vocab", 32000),
    ropeTheta: n("rope_theta", 500000),
    modelType: f.model_type as string | undefined,
    dtype: ((f.dtype as string | undefined)?.toUpperCase() ?? "BF16") as FloatDType,
    maxShardSize: parseSize((f.max_shard_size as string | undefined) ?? "1GB"),
    tokenizerDir: f.tokenizer as string | undefined,
    seed: n("seed", 1234),
  });
  console.log(
    `wrote ${(r.params / 1e9).toFixed(3)}B params, ${(r.bytes / 1e9).toFixed(3)} GB in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    }s`,
  );
}
