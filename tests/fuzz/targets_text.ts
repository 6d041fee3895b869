/**
 * Fuzz targets over text-like inputs: the tokenizer files (tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, generation_config.json), chat templates (tokenizer_config's
 * `chat_template` and chat_template.jinja), calibration data (jsonl, json, txt, parquet, input_ids
 * safetensors, a folder) and `--layer_config` documents.
 */
import { loadCalibration } from "../../src/io/calib.ts";
import { Tokenizer } from "../../src/io/tokenizer.ts";
import { parseModelConfig } from "../../src/model/config.ts";
import { tokenizerMetadata } from "../../src/formats/gguf/metadata.ts";
import { checkFormats, parseFormats } from "../../src/export/registry.ts";
import { autoGptqQuantizationConfig, autoRoundQuantizationConfig } from "../../src/formats/gptq/config.ts";
import { compressedTensorsConfig, ctArgs } from "../../src/formats/compressed_tensors.ts";
import { layerSettings } from "../../src/formats/layout.ts";
import type { RunInfo } from "../../src/formats/run.ts";
import { parseLayerConfigArg, resolveLayerConfig } from "../../src/quant/layer_config.ts";
import { resolveScheme } from "../../src/quant/scheme.ts";
import { mutateBytes } from "./bytes.ts";
import { mutateTemplate } from "./jinja.ts";
import { mutateJsonText, writeJson } from "./json.ts";
import type { Rng } from "./rng.ts";
import { mutateSafetensors } from "./safetensors.ts";
import { SEED_LAYER_CONFIGS, SEED_LAYOUT } from "./seeds.ts";
import {
  evalArgs,
  type FuzzContext,
  type FuzzTarget,
  generateArgs,
  quantizeArgs,
  runCommand,
  utf8,
  writeCase,
} from "./target.ts";

const TOKENIZER_KEYS = [
  "model",
  "type",
  "vocab",
  "merges",
  "added_tokens",
  "normalizer",
  "pre_tokenizer",
  "post_processor",
  "decoder",
  "byte_fallback",
  "unk_token",
  "fuse_unk",
  "dropout",
  "continuing_subword_prefix",
  "ignore_merges",
  "special",
  "content",
  "id",
  "pretokenizers",
  "normalizers",
  "decoders",
  "pattern",
  "single",
  "pair",
  "special_tokens",
  "ids",
  "tokens",
];
const TOKENIZER_CONFIG_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "pad_token",
  "add_bos_token",
  "add_eos_token",
  "tokenizer_class",
  "added_tokens_decoder",
  "model_max_length",
  "additional_special_tokens",
  "content",
  "eos_token_id",
  "bos_token_id",
  "pad_token_id",
];
const SAMPLE = "Once upon a time, Lily saw a 🐈 — ünïcödé\n\tand <s> tokens </s>.";

/** The tokenizer files of a model folder, one of them mutated; used by generate, eval and the GGUF export. */
export const tokenizerTarget: FuzzTarget = {
  name: "tokenizer",
  async build(rng, ctx, dir) {
    const file = [
      "tokenizer.json",
      "tokenizer.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "generation_config.json",
    ][rng.int(6)];
    const m = mutateJsonText(
      rng,
      ctx.seeds.text(`${SEED_LAYOUT.stories}/${file}`),
      file === "tokenizer.json" ? TOKENIZER_KEYS : TOKENIZER_CONFIG_KEYS,
    );
    const model = `${dir}/model`;
    await Deno.mkdir(model);
    await writeCase(ctx, model, { [file]: m.bytes }, SEED_LAYOUT.stories);
    const mode = ["api", "api", "generate", "eval"][rng.int(4)];
    return { path: model, mode, steps: [file, ...m.steps], dir };
  },
  async run(c, ctx) {
    if (c.mode !== "api") return await runCommand(tokenizerTarget.cli(c, ctx));
    const tok = await Tokenizer.fromDir(c.path);
    const ids = tok.encode(SAMPLE);
    tok.encode(SAMPLE, { maxLength: 5 });
    tok.encode(SAMPLE, { addSpecialTokens: false, maxLength: 3 });
    tok.decode(ids, { skipSpecialTokens: true });
    tok.decode([...ids, 0, 1, 2, tok.vocabSize - 1]);
    tok.vocab();
    tok.merges();
    tok.scores();
    // The GGUF exporter's vocabulary, as `quantize --format gguf:*` writes it.
    const config = JSON.parse(ctx.seeds.text(`${SEED_LAYOUT.stories}/config.json`));
    await tokenizerMetadata(c.path, parseModelConfig(config, "config.json"), Tokenizer.fromDir);
  },
  cli: (c, ctx) => (c.mode === "eval" ? evalArgs(c.path, ctx) : generateArgs(c.path)),
};

/** A chat template in tokenizer_config.json or chat_template.jinja, rendered by generate --chat or calibration. */
export const chatTemplateTarget: FuzzTarget = {
  name: "chat_template",
  async build(rng, ctx, dir) {
    const m = mutateTemplate(rng, rng.pick(ctx.seeds.templates));
    const model = `${dir}/model`;
    await Deno.mkdir(model);
    const files: Record<string, Uint8Array> = {};
    if (rng.chance(0.3)) files["chat_template.jinja"] = utf8(m.text);
    else {
      const cfg = JSON.parse(ctx.seeds.text(`${SEED_LAYOUT.stories}/tokenizer_config.json`));
      cfg.chat_template = rng.chance(0.1) ? [{ name: "default", template: m.text }] : m.text;
      files["tokenizer_config.json"] = utf8(writeJson(cfg));
    }
    await writeCase(ctx, model, files, SEED_LAYOUT.stories);
    return { path: model, mode: rng.chance(0.7) ? "generate" : "calib", steps: m.steps, dir };
  },
  async run(c, ctx) {
    if (c.mode === "generate") return await runCommand(chatTemplateTarget.cli(c, ctx));
    const tok = await Tokenizer.fromDir(c.path);
    await loadCalibration(`${ctx.seeds.root}/calib/docs.jsonl:apply_chat_template:num=2`, tok, {
      seqlen: 8,
      nsamples: 2,
      seed: 42,
    });
  },
  cli: (c) => generateArgs(c.path, true),
};

function parquetFooter(b: Uint8Array): [number, number] {
  const n = new DataView(b.buffer, b.byteOffset).getUint32(b.length - 8, true);
  return [Math.max(0, b.length - 8 - n), b.length];
}

/** Calibration data (`--dataset`): each file type, a folder, AutoRound's suffix options. */
export const calibTarget: FuzzTarget = {
  name: "calib",
  async build(rng, ctx, dir) {
    const seed = rng.pick(SEED_LAYOUT.calib);
    const name = seed.slice(seed.lastIndexOf("/") + 1);
    const bytes = ctx.seeds.bytes(seed);
    let m: { bytes: Uint8Array; steps: string[] };
    if (name.endsWith(".safetensors")) m = mutateSafetensors(rng, bytes);
    else if (name.endsWith(".parquet")) {
      m = mutateBytes(rng, bytes, rng.chance(0.7) ? parquetFooter(bytes) : undefined);
    } else if (name.endsWith(".json")) m = mutateJsonText(rng, ctx.seeds.text(seed), ["text"]);
    else if (name.endsWith(".jsonl") && rng.chance(0.6)) {
      const lines = ctx.seeds.text(seed).split("\n");
      const i = rng.int(lines.length);
      const l = lines[i].trim() ? mutateJsonText(rng, lines[i], ["text"]) : { bytes: utf8("{"), steps: [] };
      lines[i] = new TextDecoder().decode(l.bytes);
      m = { bytes: utf8(lines.join("\n")), steps: [`line ${i + 1}:`, ...l.steps] };
    } else m = mutateBytes(rng, bytes);
    const folder = rng.chance(0.1);
    const files: Record<string, Uint8Array> = { [name]: m.bytes };
    if (folder) files["other.jsonl"] = ctx.seeds.bytes("calib/docs.jsonl");
    await writeCase(ctx, `${dir}/data`, files);
    const opts = rng.pick(["", "", "", ":num=2", ":concat=true", ":split=train", ":num=1:concat"]);
    const path = folder ? `${dir}/data` : `${dir}/data/${name}`;
    return { path: path + opts, mode: String(rng.pick([8, 16, 32])), steps: [name + opts, ...m.steps], dir };
  },
  async run(c, ctx) {
    const tok = await Tokenizer.fromDir(`${ctx.seeds.root}/${SEED_LAYOUT.stories}`);
    await loadCalibration(c.path, tok, { seqlen: Number(c.mode), nsamples: 4, seed: 42 });
  },
  cli: (c, ctx) =>
    quantizeArgs(`${ctx.seeds.root}/${SEED_LAYOUT.stories}`, c.dir, ["--dataset", c.path]).filter((a) =>
      a !== "--disable_opt_rtn"
    ),
};

const LAYER_KEYS = ["bits", "group_size", "sym", "data_type", "act_bits"];
const REGEX_EDITS = [
  "(",
  ")",
  "[",
  "]",
  "\\",
  "*",
  "+",
  "?",
  "{2,}",
  "^",
  "$",
  "|",
  ".*",
  "(?<n>",
  "\\d+",
  "(.*)*",
  "(a|a)+$",
];

function parseOrUndefined(text: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** `--layer_config` (inline JSON or a file): resolved against stories260K and written into each format's config, then read back. */
export const layerConfigTarget: FuzzTarget = {
  name: "layer_config",
  async build(rng: Rng, ctx: FuzzContext, dir: string) {
    const seed = rng.pick(SEED_LAYER_CONFIGS);
    let text: string;
    let steps: string[];
    const obj = parseOrUndefined(seed);
    if (obj && rng.chance(0.3)) { // edit a key as a regex
      const keys = Object.keys(obj);
      const k = rng.pick(keys), at = rng.int(k.length + 1), ins = rng.pick(REGEX_EDITS);
      const nk = k.slice(0, at) + ins + k.slice(at + (rng.chance(0.3) ? 1 : 0));
      const out: Record<string, unknown> = {};
      for (const key of keys) out[key === k ? nk : key] = obj[key];
      text = JSON.stringify(out);
      steps = [`key ${JSON.stringify(k)} -> ${JSON.stringify(nk)}`];
    } else {
      const m = obj ? mutateJsonText(rng, seed, LAYER_KEYS) : mutateBytes(rng, utf8(seed));
      text = new TextDecoder().decode(m.bytes);
      steps = m.steps;
    }
    // Always written as a file too: the CLI sample passes the file (argv cannot hold a NUL byte).
    await writeCase(ctx, dir, { "layer_config.json": utf8(text) });
    const arg = rng.chance(0.4) ? `${dir}/layer_config.json` : text;
    return { path: arg, mode: rng.chance(0.1) ? "quantize" : "plan", steps, dir };
  },
  async run(c, ctx) {
    if (c.mode === "quantize") return await runCommand(layerConfigTarget.cli(c, ctx));
    const model = JSON.parse(ctx.seeds.text(`${SEED_LAYOUT.stories}/config.json`));
    const spec = parseModelConfig(model, "config.json");
    const scheme = resolveScheme("W4A16", { groupSize: 32 });
    const user = await parseLayerConfigArg(c.path);
    const layers = resolveLayerConfig(spec, scheme, user, ["layers.4.mlp.down_proj"]);
    checkFormats(parseFormats("auto_round,auto_gptq,llm_compressor"), layers, scheme);
    const run: RunInfo = {
      scheme,
      layers,
      iters: 0,
      nsamples: 4,
      seqlen: 16,
      batchSize: 4,
      gradientAccumulateSteps: 1,
      enableMinmaxTuning: true,
      enableQuantedInput: false,
      lowGpuMemUsage: false,
      amp: false,
      dataset: "fuzz",
    };
    // What the exporters write, read back as the loader reads it.
    const configs = [
      autoRoundQuantizationConfig(run, "auto_round:auto_gptq"),
      autoGptqQuantizationConfig(run),
    ];
    const ct = compressedTensorsConfig(run);
    for (const name of layers.layers.keys()) {
      for (const qc of configs) layerSettings(JSON.parse(JSON.stringify(qc)), name);
      ctArgs(JSON.parse(JSON.stringify(ct)), name);
    }
  },
  cli: (c, ctx) =>
    quantizeArgs(`${ctx.seeds.root}/${SEED_LAYOUT.stories}`, c.dir, [
      "--layer_config",
      `${c.dir}/layer_config.json`,
      "--format",
      "auto_round,auto_gptq",
    ]),
};
