/**
 * Vision-language checkpoints (spec/MODELS.md § 9) on the tiny transformers 5.17 fixtures of
 * tests/fixtures/models/{qwen2_5_vl,gemma3,mllama}: the text decoder's forward matches transformers'
 * text-only logits; SignRound quantizes the text blocks only, the vision tower and projector (of any
 * dtype and shape) and the processor files come out byte for byte, `block_name_to_quantize` names the
 * text blocks, and the folder loads back to the tuned model; Llama 3.2 Vision is refused; the older
 * Qwen2.5-VL config layout (text fields at the root, M-RoPE in rope_scaling) parses to the same decoder.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { UnsupportedError } from "../src/errors.ts";
import { createExporters } from "../src/export/registry.ts";
import type { ExportContext } from "../src/export/exporter.ts";
import { type Checkpoint, openCheckpoint, overlaySource } from "../src/io/checkpoint.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { SafetensorsWriter } from "../src/io/safetensors/writer.ts";
import { blockLinears } from "../src/model/block_layout.ts";
import { blockPrefix, parseModelConfig } from "../src/model/config.ts";
import { locateTextTower } from "../src/model/multimodal.ts";
import { LoadedModel, type WeightSource } from "../src/model/transformer.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertThrows,
  fixture,
  maxRelError,
  withTempDir,
} from "./assert.ts";
import { quantizeStories } from "./stories_quantize.ts";

const VLMS = [
  { name: "qwen2_5_vl", blocks: "model.layers", vision: /^visual\./ },
  {
    name: "gemma3",
    blocks: "language_model.model.layers",
    vision: /^(vision_tower|multi_modal_projector)\./,
  },
];

async function logitsOf(
  be: CpuBackend,
  spec: LoadedModel["spec"],
  src: WeightSource,
  ids: Int32Array,
  batch = 1,
) {
  using m = await LoadedModel.load(be, spec, src, { positions: 64 });
  using h = m.hidden(ids, { batch, seqLen: ids.length / batch });
  using lg = m.logits(h);
  return await be.read(lg);
}

// f32 only, as tests/model_families_test.ts explains (transformers computes RoPE angles in f32).
const bound = 1e-5;
for (const { name } of VLMS) {
  Deno.test(`${name}: text-only f32 logits match transformers (max|Δ|/max|ref| ≤ ${bound})`, async () => {
    const dir = fixture(`models/${name}`);
    using r = await SafetensorsReader.open(`${dir}/reference.safetensors`);
    const ids = await r.readInt32("ids");
    using ckpt = await openCheckpoint(dir);
    using be = new CpuBackend({ precision: "f32" });
    const T = 48, V = ckpt.spec.vocab;
    const eAll = maxRelError(
      await logitsOf(be, ckpt.spec, ckpt.weights, ids.subarray(0, T)),
      await r.readF32("logits"),
    );
    const l3 = await logitsOf(be, ckpt.spec, ckpt.weights, ids, 3);
    const last = new Float32Array(3 * V);
    for (let b = 0; b < 3; b++) last.set(l3.subarray(((b + 1) * T - 1) * V, (b + 1) * T * V), b * V);
    const eLast = maxRelError(last, await r.readF32("last_logits"));
    console.log(`  ${name}: logits ${eAll.toExponential(2)}, last ${eLast.toExponential(2)}`);
    assert(eAll <= bound && eLast <= bound, `${name}: ${eAll}, ${eLast} > ${bound}`);
  });
}

/** Files a processor save writes besides preprocessor_config.json (odd spacing: a re-serialisation shows). */
const EXTRA_FILES: Record<string, string> = {
  "processor_config.json": '{"processor_class":  "AutoProcessor" ,"image_seq_length":4}',
  "video_preprocessor_config.json": '{ "fps": 2.0,\n"do_sample_frames" : false }',
  "chat_template.jinja": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}\n",
};

/**
 * The fixture copied to `dir`, with the extra processor files and two vision tensors a float-only
 * copy path would lose: an I64 buffer and a BF16 tensor of a conv-like 4-D shape.
 */
async function preparedFixture(name: string, dir: string, vision: string): Promise<string> {
  const src = fixture(`models/${name}`), out = `${dir}/${name}`;
  await Deno.mkdir(out);
  for await (const e of Deno.readDir(src)) {
    if (e.name !== "model.safetensors") await Deno.copyFile(`${src}/${e.name}`, `${out}/${e.name}`);
  }
  for (const [f, text] of Object.entries(EXTRA_FILES)) await Deno.writeTextFile(`${out}/${f}`, text);
  using r = await SafetensorsReader.open(src);
  const w = new SafetensorsWriter(out, { maxShardSize: 1e9 });
  for (const n of r.names()) await w.add(n, r.info(n).dtype, r.info(n).shape, await r.readBytes(n));
  await w.add(
    `${vision}.position_ids`,
    "I64",
    [1, 5],
    new Uint8Array(new BigInt64Array([0n, 1n, 2n, 3n, 4n]).buffer),
  );
  await w.add(
    `${vision}.extra_conv.weight`,
    "BF16",
    [2, 3, 2, 2],
    Uint8Array.from({ length: 48 }, (_, i) => i * 5),
  );
  await w.finish({ format: "pt" });
  return out;
}

/**
 * auto_gptq: the same text blocks named, the vision tensors kept under their names (float ones as
 * float16, as save_quantized_as_autogptq saves the model; others as stored), the processor files
 * copied, and the tuned weights loaded back exactly.
 */
async function checkAutoGptq(
  dir: string,
  fp: Checkpoint,
  visionNames: string[],
  blocks: string,
  fake: Map<string, Float32Array>,
): Promise<void> {
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  assertEquals(cfg.quantization_config.block_name_to_quantize, blocks);
  assertEquals(await Deno.readTextFile(`${dir}/processor_config.json`), EXTRA_FILES["processor_config.json"]);
  using q = await openCheckpoint(dir);
  for (const n of visionNames) {
    const a = fp.reader.info(n), b = q.reader.info(n);
    assertEquals([b.dtype, b.shape], [a.dtype === "I64" ? "I64" : "F16", a.shape], n);
    if (a.dtype !== "F32") continue;
    const x = await fp.reader.readF32(n), y = await q.reader.readF32(n);
    assert(x.every((v, i) => Math.f16round(v) === y[i]), `${n}: not the float16 rounding`);
  }
  for (const [n, v] of fake) assertEquals(maxRelError(await q.weights.readF32(n), v), 0, n);
}

for (const { name, blocks, vision } of VLMS) {
  Deno.test(`${name}: SignRound W4G32 quantizes the text blocks only; vision tensors and processor files copied byte for byte; auto_round and auto_gptq load back`, async () => {
    await withTempDir("vlm-", async (tmp) => {
      const visionRoot = name === "gemma3" ? "vision_tower" : "visual";
      const model = await preparedFixture(name, tmp, visionRoot);
      using be = new CpuBackend();
      const run = await quantizeStories(be, {
        model,
        formats: ["auto_round", "auto_gptq"],
        scheme: resolveScheme("W4A16", { groupSize: 32 }),
        iters: 10,
        nsamples: 8,
        seqlen: 32,
      });
      const dir = `${run.dir}/auto_round`;
      try {
        using fp = await openCheckpoint(model);
        const spec = fp.spec;
        assertEquals(blockPrefix(0, spec), `${blocks}.0.`);
        for (const b of run.blocks) {
          assert(b.lossBest! < b.lossStart!, `block ${b.block}: ${b.lossStart} → ${b.lossBest}`);
        }
        // Every Linear of every text block is quantized (all dims are multiples of 32), nothing else.
        const expected = Array.from(
          { length: spec.nLayers },
          (_, i) => blockLinears(spec, i).map((l) => `${blocks}.${i}.${l.name}.weight`),
        ).flat();
        assertEquals([...run.fake.keys()].sort(), expected.sort());
        using out = await SafetensorsReader.open(dir);
        const qweights = out.names().filter((n) => n.endsWith(".qweight"));
        assertEquals(qweights.length, expected.length);
        assert(qweights.every((n) => n.startsWith(`${blocks}.`)), `quantized outside the text blocks`);
        // Vision tower and projector: same names, dtypes, shapes and bytes.
        const visionNames = fp.reader.names().filter((n) => vision.test(n));
        assert(visionNames.length > 10, `${visionNames.length} vision tensors`);
        assert(visionNames.some((n) => fp.reader.info(n).shape.length >= 4), "a conv weight is among them");
        for (const n of visionNames) {
          assert(out.has(n), `${n} missing from the output`);
          const a = fp.reader.info(n), b = out.info(n);
          assertEquals([b.dtype, b.shape], [a.dtype, a.shape], n);
          const x = await fp.reader.readBytes(n), y = await out.readBytes(n);
          assert(x.length === y.length && x.every((v, i) => v === y[i]), `${n}: bytes differ`);
        }
        assertEquals(out.info(`${visionRoot}.position_ids`).dtype, "I64");
        // Processor and tokenizer files byte for byte.
        for (const f of ["preprocessor_config.json", ...Object.keys(EXTRA_FILES), "tokenizer.json"]) {
          assertEquals(
            await Deno.readTextFile(`${dir}/${f}`),
            await Deno.readTextFile(`${model}/${f}`),
            f,
          );
        }
        // config.json keeps the VLM structure, with quantization_config added.
        const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
        assertEquals(cfg.model_type, name);
        assertEquals(cfg.text_config, fp.config.text_config);
        assertEquals(cfg.vision_config, fp.config.vision_config);
        assertEquals(cfg.quantization_config.block_name_to_quantize, blocks);
        // Loads back to the tuned model: the fake-quantized weights, biases as stored (float16).
        using q = await openCheckpoint(dir);
        assertEquals(q.spec.textPrefix, spec.textPrefix);
        const tuned = new Map(run.fake);
        for (const n of run.fake.keys()) {
          const bias = n.replace(/weight$/, "bias");
          if (fp.weights.has(bias)) tuned.set(bias, (await fp.weights.readF32(bias)).map(Math.f16round));
        }
        const ids = Int32Array.from({ length: 40 }, (_, i) => 3 + (i * 37) % 500);
        const mem = await logitsOf(be, spec, overlaySource(fp.weights, tuned), ids);
        const e = maxRelError(await logitsOf(be, q.spec, q.weights, ids), mem);
        const eFp = maxRelError(await logitsOf(be, spec, fp.weights, ids), mem);
        console.log(`  ${name}: loaded vs in-memory tuned ${e}, fp vs tuned ${eFp.toExponential(2)}`);
        assertEquals(e, 0);
        assert(eFp > 1e-4, "the quantized model differs from the fp one");
        await checkAutoGptq(`${run.dir}/auto_gptq`, fp, visionNames, blocks, run.fake);
      } finally {
        await run.cleanup();
      }
    });
  });
}

Deno.test("mllama: refused with the reason (cross-attention layers need image calibration)", async () => {
  const dir = fixture("models/mllama");
  const e = await assertRejects(() => openCheckpoint(dir), UnsupportedError, "cross-attention");
  for (const words of ["Llama 3.2 Vision", "image dataset", "not supported"]) {
    assert(e.message.includes(words), `"${e.message}" lacks "${words}"`);
  }
  await withTempDir("vlm-", async (tmp) => {
    using be = new CpuBackend();
    await assertRejects(
      () => quantizeStories(be, { model: dir, outputDir: `${tmp}/q` }),
      UnsupportedError,
      "mllama",
    );
    assertEquals([...Deno.readDirSync(tmp)].length, 0, "no output left");
  });
});

// GGUF writes the text model only: tests/gguf_vlm_test.ts.
Deno.test("VLM: formats that cannot keep the vision tower 16-bit (auto_awq, llm_compressor) are refused", async () => {
  using ckpt = await openCheckpoint(fixture("models/gemma3"));
  const ctx = { spec: ckpt.spec } as ExportContext;
  for (const f of ["auto_awq", "llm_compressor"]) {
    assertThrows(() => createExporters([f], "/nonexistent/out", ctx), UnsupportedError, "vision-language");
  }
});

/** The older Qwen2.5-VL config.json: text fields at the root, M-RoPE in rope_scaling. */
const OLD_QWEN25_VL = {
  architectures: ["Qwen2_5_VLForConditionalGeneration"],
  model_type: "qwen2_5_vl",
  hidden_size: 64,
  intermediate_size: 128,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 3,
  vocab_size: 512,
  max_position_embeddings: 128000,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  rope_scaling: { type: "mrope", mrope_section: [2, 3, 3] },
  sliding_window: 32768,
  use_sliding_window: false,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
  hidden_act: "silu",
  vision_start_token_id: 151652,
  image_token_id: 151655,
  vision_config: { depth: 32, hidden_size: 1280, model_type: "qwen2_5_vl", out_hidden_size: 64 },
};

Deno.test("qwen2_5_vl: the older config layout (text fields at the root, mrope rope_scaling) parses as a qwen2 decoder", () => {
  const spec = parseModelConfig(OLD_QWEN25_VL, "config.json");
  const { vision_config: _, vision_start_token_id: _s, image_token_id: _i, ...text } = OLD_QWEN25_VL;
  const plain = parseModelConfig(
    { ...text, model_type: "qwen2", architectures: ["Qwen2ForCausalLM"] },
    "c.json",
  );
  assertEquals(spec.modelType, "qwen2");
  assertEquals(spec.multimodal, "qwen2_5_vl");
  assertEquals(spec.traits.qkvBias, true);
  assertEquals(spec.ropeScaling, { type: "none" });
  assertEquals(spec.ropeTheta, 1e6);
  assertEquals([spec.hidden, spec.nLayers, spec.nHeads, spec.nKvHeads, spec.vocab], [64, 3, 4, 2, 512]);
  assertEquals(spec.slidingWindow, undefined);
  assertEquals([spec.torchDtype, spec.tieEmbeddings], ["bfloat16", true]);
  assertEquals([spec.textPrefix, spec.lmHeadName], ["model.", "lm_head.weight"]);
  // The same decoder; GGUF writes it as llama.cpp's qwen2vl with the M-RoPE sections (gguf_vlm_test.ts).
  const { architecture: _a, multimodal: _m, mropeSection, traits, ...vlmRest } = spec;
  const { architecture: _b, multimodal: _n, ...plainRest } = plain;
  assertEquals([mropeSection, traits.ggufArch], [[2, 3, 3], "qwen2vl"]);
  assertEquals({ ...vlmRest, traits: { ...traits, ggufArch: "qwen2" } }, plainRest);
  // The same decoder under text_config (newer layout) wins over stale root fields.
  const nested = parseModelConfig({
    ...OLD_QWEN25_VL,
    hidden_size: 999,
    text_config: { ...text, model_type: "qwen2_5_vl_text" },
  }, "c.json");
  assertEquals(nested.hidden, 64);
  // transformers ≥ 4.52 module names are found from the checkpoint's tensor names.
  const has = (n: string) => n === "model.language_model.embed_tokens.weight";
  assertEquals(locateTextTower(spec, has, "m").textPrefix, "model.language_model.");
  assertEquals(locateTextTower(plain, has, "m").textPrefix, "model.", "a text model keeps its layout");
});
