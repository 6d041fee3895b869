/**
 * Fuzz targets over model files: safetensors (single files and sharded indexes, read the way inspect
 * and the loaders read them), config.json (eval, generate, inspect and quantize of the folder), GGUF
 * files (eval and inspect) and quantized output folders given to eval (quantization_config fields,
 * packed tensor shapes and dtypes).
 */
import { SafetensorsReader } from "../../src/io/safetensors/reader.ts";
import { mutateGguf } from "./gguf.ts";
import { mutateJsonText } from "./json.ts";
import type { Rng } from "./rng.ts";
import { mutateSafetensors } from "./safetensors.ts";
import { SEED_LAYOUT } from "./seeds.ts";
import {
  evalArgs,
  type FuzzCase,
  type FuzzContext,
  type FuzzTarget,
  generateArgs,
  quantizeArgs,
  runCommand,
  writeCase,
} from "./target.ts";

/** Keys of config.json that shape the model. */
const CONFIG_KEYS = [
  "model_type",
  "hidden_size",
  "intermediate_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "head_dim",
  "vocab_size",
  "max_position_embeddings",
  "rms_norm_eps",
  "rope_theta",
  "rope_scaling",
  "tie_word_embeddings",
  "torch_dtype",
  "bos_token_id",
  "eos_token_id",
  "sliding_window",
  "architectures",
];

/** Keys of the quantization_config variants the loader reads. */
const QC_KEYS = [
  "quantization_config",
  "quant_method",
  "bits",
  "group_size",
  "sym",
  "packing_format",
  "extra_config",
  "dynamic",
  "desc_act",
  "checkpoint_format",
  "version",
  "zero_point",
  "w_bit",
  "q_group_size",
  "config_groups",
  "targets",
  "weights",
  "num_bits",
  "strategy",
  "symmetric",
  "format",
  "ignore",
];

const PACKED = /\.(qweight|qzeros|scales|g_idx|weight_packed|weight_scale|weight_zero_point|weight_shape)$/;

/** safetensors: one file, or a sharded checkpoint (index + shards). */
export const safetensorsTarget: FuzzTarget = {
  name: "safetensors",
  async build(rng, ctx, dir) {
    if (rng.chance(0.15)) { // a sharded checkpoint: damage the index or one shard
      const names = [...ctx.seeds.files.keys()].filter((k) => k.startsWith(`${SEED_LAYOUT.sharded}/`));
      const victim = rng.pick(names);
      const base = victim.slice(victim.lastIndexOf("/") + 1);
      const m = base.endsWith(".json")
        ? mutateJsonText(rng, ctx.seeds.text(victim), ["weight_map", "metadata"])
        : mutateSafetensors(rng, ctx.seeds.bytes(victim));
      await writeCase(ctx, dir, { [base]: m.bytes }, SEED_LAYOUT.sharded);
      return { path: dir, mode: "open", steps: [base, ...m.steps], dir };
    }
    const seed = rng.pick([
      `${SEED_LAYOUT.stories}/model.safetensors`,
      `${SEED_LAYOUT.stories}/model.safetensors`,
      `${SEED_LAYOUT.bf16}/model.safetensors`,
      `${SEED_LAYOUT.quantized[0]}/model.safetensors`,
      `${SEED_LAYOUT.quantized[1]}/model.safetensors`,
      `${SEED_LAYOUT.quantized[3]}/model.safetensors`,
    ]);
    const m = mutateSafetensors(rng, ctx.seeds.bytes(seed));
    await writeCase(ctx, dir, { "model.safetensors": m.bytes });
    return {
      path: `${dir}/model.safetensors`,
      mode: rng.chance(0.2) ? "inspect" : "open",
      steps: [seed, ...m.steps],
      dir,
    };
  },
  async run(c) {
    if (c.mode === "inspect") return await runCommand(["inspect", c.path, "--tensors"]);
    // What the loaders do: open, then read every tensor in the dtype its consumer reads it as.
    using st = await SafetensorsReader.open(c.path);
    for (const name of st.names()) {
      const info = st.info(name);
      if (info.dtype === "I32") await st.readInt32(name);
      else if (["F32", "F16", "BF16", "F64"].includes(info.dtype)) await st.readF32(name);
      else await st.readBytes(name);
    }
  },
  cli: (c) => ["inspect", c.path],
};

/** config.json of an fp folder: eval, generate, inspect or quantize. */
export const configTarget: FuzzTarget = {
  name: "config",
  async build(rng, ctx, dir) {
    const seed = rng.chance(0.8) ? SEED_LAYOUT.stories : SEED_LAYOUT.bf16;
    const m = mutateJsonText(rng, ctx.seeds.text(`${seed}/config.json`), CONFIG_KEYS);
    const model = `${dir}/model`;
    await Deno.mkdir(model);
    await writeCase(ctx, model, { "config.json": m.bytes }, seed);
    const mode = ["eval", "eval", "eval", "generate", "generate", "inspect", "quantize"][rng.int(7)];
    return { path: model, mode, steps: m.steps, dir };
  },
  run: (c, ctx) => runCommand(configTarget.cli(c, ctx)),
  cli(c, ctx) {
    if (c.mode === "eval") return evalArgs(c.path, ctx);
    if (c.mode === "generate") return generateArgs(c.path);
    if (c.mode === "inspect") return ["inspect", c.path];
    return quantizeArgs(c.path, c.dir);
  },
};

/** A GGUF file (with its tokenizer files beside it) given to eval, generate or inspect. */
export const ggufTarget: FuzzTarget = {
  name: "gguf",
  async build(rng, ctx, dir) {
    const seed = rng.pick(SEED_LAYOUT.gguf);
    const m = mutateGguf(rng, ctx.seeds.bytes(seed));
    const folder = seed.slice(0, seed.lastIndexOf("/"));
    const file = seed.slice(seed.lastIndexOf("/") + 1);
    await writeCase(ctx, dir, { [file]: m.bytes }, folder);
    const mode = ["eval", "eval", "generate", "inspect"][rng.int(4)];
    return { path: `${dir}/${file}`, mode, steps: [file, ...m.steps], dir };
  },
  run: (c, ctx) => runCommand(ggufTarget.cli(c, ctx)),
  cli(c, ctx) {
    if (c.mode === "eval") return evalArgs(c.path, ctx);
    if (c.mode === "generate") return generateArgs(c.path);
    return ["inspect", c.path, "--tensors"];
  },
};

/** A quantized output folder (config.json's quantization_config and the packed tensors) given to eval. */
export const quantizedTarget: FuzzTarget = {
  name: "quantized",
  async build(rng: Rng, ctx: FuzzContext, dir: string): Promise<FuzzCase> {
    const seed = rng.pick(SEED_LAYOUT.quantized);
    const files: Record<string, Uint8Array> = {};
    const steps: string[] = [seed];
    const which = rng.weighted([5, 4, 1]);
    if (which !== 1) {
      const m = mutateJsonText(rng, ctx.seeds.text(`${seed}/config.json`), QC_KEYS);
      files["config.json"] = m.bytes;
      steps.push(...m.steps.map((s) => `config.json ${s}`));
    }
    if (which !== 0) {
      const m = mutateSafetensors(rng, ctx.seeds.bytes(`${seed}/model.safetensors`), (n) => PACKED.test(n));
      files["model.safetensors"] = m.bytes;
      steps.push(...m.steps);
    }
    const model = `${dir}/model`;
    await Deno.mkdir(model);
    await writeCase(ctx, model, files, seed);
    return { path: model, mode: rng.chance(0.85) ? "eval" : "generate", steps, dir };
  },
  run: (c, ctx) => runCommand(quantizedTarget.cli(c, ctx)),
  cli: (c, ctx) => (c.mode === "eval" ? evalArgs(c.path, ctx) : generateArgs(c.path)),
};
