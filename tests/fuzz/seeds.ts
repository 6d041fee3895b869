/**
 * The real inputs the fuzzer starts from, prepared once per harness run: the stories260K folder
 * (safetensors, config, tokenizer files), its bf16 twin, a sharded copy, quantized folders and GGUF
 * files made by quantizing it (auto_round, auto_gptq, auto_awq, llm_compressor; gguf q4_0, q4_k_m,
 * q8_0), the calibration fixtures (jsonl, json, txt, parquet) plus an `input_ids` safetensors file,
 * chat templates and layer_config documents.
 */
import { CpuBackend } from "../../src/backend/cpu/cpu_backend.ts";
import { SafetensorsReader } from "../../src/io/safetensors/reader.ts";
import { SafetensorsWriter } from "../../src/io/safetensors/writer.ts";
import { Tokenizer } from "../../src/io/tokenizer.ts";
import { silentLog } from "../../src/log.ts";
import { quantize } from "../../src/quant/quantize.ts";
import { resolveScheme } from "../../src/quant/scheme.ts";
import { SEED_TEMPLATES } from "./jinja.ts";

const FIXTURES = new URL("../fixtures/", import.meta.url).pathname;
const QWEN3_CONFIG = new URL("../../../shared/models/qwen3-tokenizer/tokenizer_config.json", import.meta.url)
  .pathname;

/** Files of a model folder the program reads (README, reference data and eval text left out). */
export const MODEL_FILES = [
  "config.json",
  "model.safetensors",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
];

/** layer_config documents as users write them (auto-round's README and our tests). */
export const SEED_LAYER_CONFIGS = [
  `{"model.layers.0.self_attn.q_proj": {"bits": 8}, "mlp.gate": {"bits": 2, "group_size": 32}, "layers.1..*proj$": "W8A16"}`,
  `{"mlp.down_proj": {"bits": 8}}`,
  `{"self_attn": {"bits": 2, "group_size": 32, "sym": false}, "model.layers.4.mlp.up_proj": {"bits": 16}}`,
  `{"layers.[0-2].mlp": {"bits": 3, "group_size": -1, "data_type": "int"}, "o_proj": "W4A16"}`,
  `{"^model.layers.(0|4)..*$": {"bits": 8, "group_size": 64, "act_bits": 16}}`,
  // Shell-style: a backslash JSON does not allow, which AutoRound (and parseLayerConfigArg) repairs.
  `{"layers\\.[0-2]\\.self_attn": {"bits": 8}}`,
];

/** Where the prepared seeds live under the harness's seed folder. */
export const SEED_LAYOUT = {
  stories: "stories260K",
  bf16: "stories260K-bf16",
  sharded: "sharded",
  quantized: [
    "q-sym/auto_round",
    "q-sym/auto_gptq",
    "q-asym/auto_round",
    "q-asym/llm_compressor",
    "q-awq/auto_awq",
  ],
  gguf: [
    "q-sym/gguf-q4_0/stories260K-Q4_0.gguf",
    "q-asym/gguf-q4_k_m/stories260K-Q4_K_M.gguf",
    "q-awq/gguf-q8_0/stories260K-Q8_0.gguf",
  ],
  calib: [
    "calib/docs.jsonl",
    "calib/docs_dict.json",
    "calib/docs_list.json",
    "calib/docs.txt",
    "calib/docs.parquet",
    "calib/tinystories.jsonl",
    "calib/input_ids.safetensors",
  ],
  templates: "templates.json",
} as const;

async function copyFolder(from: string, to: string, names: readonly string[]): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const n of names) await Deno.copyFile(`${from}/${n}`, `${to}/${n}`);
}

async function quantizeSeed(root: string, out: string, formats: string[], asym: boolean, layerConfig = {}) {
  using be = new CpuBackend();
  await quantize({
    model: `${root}/${SEED_LAYOUT.stories}`,
    outputDir: `${root}/${out}`,
    formats,
    scheme: resolveScheme("W4A16", { groupSize: 32, sym: !asym }),
    layerConfig,
    iters: 0,
    nsamples: 4,
    seqlen: 32,
    batchSize: 4,
    dataset: `${FIXTURES}/stories260K/eval.txt`,
    maxShardSize: 5e9,
    backend: be,
  }, silentLog);
}

/** Write every seed into `root` (a fresh folder). Takes a few seconds: three small quantize runs. */
export async function prepareSeeds(root: string): Promise<void> {
  await copyFolder(`${FIXTURES}/stories260K`, `${root}/${SEED_LAYOUT.stories}`, MODEL_FILES);
  await copyFolder(`${FIXTURES}/stories260K-bf16`, `${root}/${SEED_LAYOUT.bf16}`, MODEL_FILES);
  // A sharded copy: the index plus several shards, as transformers writes big checkpoints.
  {
    using st = await SafetensorsReader.open(`${root}/${SEED_LAYOUT.stories}/model.safetensors`);
    const w = new SafetensorsWriter(`${root}/${SEED_LAYOUT.sharded}`, {
      maxShardSize: 300_000,
      headerReserve: 0,
    });
    for (const n of st.names()) {
      const i = st.info(n);
      await w.add(n, i.dtype, i.shape, await st.readBytes(n));
    }
    await w.finish({ format: "pt" });
  }
  await quantizeSeed(root, "q-sym", ["auto_round", "auto_gptq", "gguf:q4_0"], false);
  await quantizeSeed(root, "q-asym", ["auto_round", "llm_compressor", "gguf:q4_k_m"], true, {
    "mlp.down_proj": { bits: 8 },
    "model.layers.1.self_attn.o_proj": { bits: 2, group_size: 64 },
  });
  await quantizeSeed(root, "q-awq", ["auto_awq", "gguf:q8_0"], true);

  const evalLines = (await Deno.readTextFile(`${FIXTURES}/stories260K/eval.txt`)).split("\n").slice(0, 2);
  await Deno.writeTextFile(`${root}/eval.txt`, evalLines.join("\n") + "\n");
  const calib = `${root}/calib`;
  await copyFolder(`${FIXTURES}/calib`, calib, [
    "docs.jsonl",
    "docs_dict.json",
    "docs_list.json",
    "docs.txt",
    "docs.parquet",
  ]);
  const lines = (await Deno.readTextFile(`${FIXTURES}/tinystories-calib.jsonl`)).split("\n").slice(0, 24);
  await Deno.writeTextFile(`${calib}/tinystories.jsonl`, lines.join("\n") + "\n");
  // Ready token rows, as `--dataset rows.safetensors` takes them: I64 [8, 64].
  const tok = await Tokenizer.fromDir(`${root}/${SEED_LAYOUT.stories}`);
  const ids = new BigInt64Array(8 * 64);
  lines.slice(0, 8).forEach((l, r) => {
    const row = tok.encode(JSON.parse(l).text, { maxLength: 64 });
    row.forEach((id, c) => (ids[r * 64 + c] = BigInt(id)));
  });
  const w = new SafetensorsWriter(calib, { maxShardSize: 1e9, prefix: "input_ids", headerReserve: 0 });
  await w.add("input_ids", "I64", [8, 64], new Uint8Array(ids.buffer));
  await w.finish({ format: "pt" });

  const templates = [...SEED_TEMPLATES];
  try {
    templates.push(JSON.parse(await Deno.readTextFile(QWEN3_CONFIG)).chat_template);
  } catch { /* the shared Qwen3 tokenizer is optional */ }
  await Deno.writeTextFile(`${root}/${SEED_LAYOUT.templates}`, JSON.stringify(templates));
}

/** The seeds in memory (bytes of every file a mutator starts from). */
export interface Seeds {
  root: string;
  files: Map<string, Uint8Array>;
  templates: string[];
  /** Relative path of a seed file → its bytes; throws for an unknown one (a harness bug). */
  bytes(rel: string): Uint8Array;
  text(rel: string): string;
}

/** Read the prepared seeds of `root`. */
export async function loadSeeds(root: string): Promise<Seeds> {
  const files = new Map<string, Uint8Array>();
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(`${root}/${rel}`)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(p);
      else files.set(p, await Deno.readFile(`${root}/${p}`));
    }
  };
  await walk("");
  const dec = new TextDecoder();
  const bytes = (rel: string) => {
    const b = files.get(rel);
    if (!b) throw new Error(`fuzz harness: no seed file ${rel}`);
    return b;
  };
  return {
    root,
    files,
    templates: JSON.parse(dec.decode(bytes(SEED_LAYOUT.templates))),
    bytes,
    text: (rel) => dec.decode(bytes(rel)),
  };
}
