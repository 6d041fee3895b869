/**
 * GGUF of a vision-language checkpoint's text model (spec/MODELS.md § 9.4) on the tiny Gemma 3 fixture
 * (tests/fixtures/models/gemma3, Gemma3ForConditionalGeneration, tied embeddings, tensors under
 * `language_model.model.`): the file is plain GGUF gemma3, with the same tensor names, shapes and
 * types as the gemma3_text fixture's export and no vision tower or projector tensor; llama.cpp
 * (node-llama-cpp's CPU build) computes transformers' text-only logits from it, and our reader reads
 * it back as the plain gemma3 text model. The missing mmproj is warned (exporter and the run's log);
 * Qwen2.5-VL (llama.cpp's qwen2vl, not written) is refused.
 *
 * Bounds as gguf_families_test.ts for gemma3_text: F32 ≤ 3e-3 relative per position (ggml's f16
 * GeLU table) and mean KL ≤ 1e-6 against transformers; our forward on the F32 file read back ≤ 2e-5;
 * Q8_0 against our forward on the dequantized file: median ≤ 5%, mean KL ≤ 0.01, top-1 ≥ 90%.
 */
import { assert, assertEquals, assertRejects, assertThrows, fixture } from "./assert.ts";
import { UnsupportedError } from "../src/errors.ts";
import type { ExportContext } from "../src/export/exporter.ts";
import { GgufExporter } from "../src/export/gguf.ts";
import { createExporters } from "../src/export/registry.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import type { WeightSource } from "../src/model/transformer.ts";
import { quantize } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { exportModel, llamaCppUnavailable, runLlamaCpp } from "./consumers/helpers.ts";
import { compare, fmt, ourLogits } from "./consumers/family_logits.ts";
import { join } from "./consumers/path.ts";
import { checkFamilyTensors } from "./gguf_families_layout.ts";

const UNAVAILABLE = await llamaCppUnavailable();
const W4G32 = { bits: 4, groupSize: 32, sym: true, dataType: "int" as const };
const T = 48, F32_BOUND = 2e-5, GEMMA_F32_BOUND = 3e-3, Q_MEDIAN = 0.05, Q_KL = 0.01;
const MMPROJ = /only the text model is written \(GGUF gemma3\).*no mmproj/;

/** gguf:q8_0 forced F32 and gguf:q8_0 of `model`, into `out`. */
async function exportBoth(model: string, out: string) {
  const common = { model, scheme: W4G32, nsamples: 4, seqlen: 32, formats: "gguf:q8_0" };
  const f32 = await exportModel({ ...common, out: join(out, "f32"), forceType: "F32" });
  const q = await exportModel({ ...common, out: join(out, "q8") });
  return [...f32.exporters, ...q.exporters] as GgufExporter[];
}

/** name → [type, ne] of every tensor of a GGUF file. */
async function layout(file: string): Promise<Map<string, string>> {
  using g = await GgufFile.open(file);
  return new Map(g.tensors.map((t) => [t.name, `${t.type} [${[...t.ne]}]`]));
}

Deno.test({
  name:
    "GGUF of Gemma 3 (VLM): plain gemma3 text model, no vision tensors, llama.cpp gives transformers' logits",
  async fn() {
    const dir = fixture("models/gemma3");
    const tmp = await Deno.makeTempDir({ prefix: "gguf_vlm_" });
    try {
      const files = await exportBoth(dir, join(tmp, "vlm"));
      for (const e of files) {
        assertEquals(e.warnings.length, 1, e.warnings.join());
        assert(MMPROJ.test(e.warnings[0]), e.warnings[0]);
      }
      // The same layout as the text-only gemma3_text fixture's export (same text config).
      const text = await exportBoth(fixture("models/gemma3_text"), join(tmp, "text"));
      for (const [i, e] of files.entries()) {
        const got = await layout(e.path), want = await layout(text[i].path);
        assertEquals([...got].sort(), [...want].sort(), `${e.path}: tensors`);
        assert([...got.keys()].every((n) => /^(token_embd|output_norm|blk\.\d+)\./.test(n)), "vision tensor");
        assertEquals(e.records.filter((r) => !r.hfName.startsWith("model.")), [], "unmapped names");
      }
      using ckpt = await openCheckpoint(dir);
      const spec = ckpt.spec, V = spec.vocab;
      assertEquals([spec.multimodal, spec.textPrefix, spec.tieEmbeddings], [
        "gemma3",
        "language_model.model.",
        true,
      ]);
      // Values (the Gemma +1 on norms included) against the checkpoint under its stored names.
      const w = { readF32: (n: string) => ckpt.weights.readF32(n.replace(/^model\./, spec.textPrefix)) };
      for (const e of files) {
        using g = await GgufFile.open(e.path);
        assertEquals(g.str("general.architecture"), "gemma3");
        await checkFamilyTensors(g, spec, w as unknown as WeightSource, e.path.endsWith("F32.gguf"));
      }
      // Read back by our reader: the plain gemma3 text model.
      {
        using m = await openGgufModel(files[0].path);
        assertEquals([m.spec.modelType, m.spec.multimodal, m.spec.textPrefix], [
          "gemma3_text",
          undefined,
          "model.",
        ]);
        assertEquals([m.spec.nLayers, m.spec.hidden, m.spec.vocab], [spec.nLayers, spec.hidden, V]);
      }
      if (UNAVAILABLE) return console.log(`llama.cpp part skipped: ${UNAVAILABLE}`);
      const r = await SafetensorsReader.open(`${dir}/reference.safetensors`);
      const ids = await r.readInt32("ids"), refAll = await r.readF32("logits");
      r.close();
      const seqs = [0, 1, 2].map((s) => [...ids.subarray(s * T, (s + 1) * T)]);
      const res = await runLlamaCpp(files.map((e) => ({ model: e.path, sequences: seqs })));
      const llama = res.map((x) => x.logits!.map((rows) => Float32Array.from(rows.flat())));
      const vsRef = compare([llama[0][0]], [refAll], V);
      const ours = await Promise.all(files.map((e) => ourLogits(e.path, ids, T)));
      const back = compare([ours[0][0]], [refAll], V);
      const f32 = compare(llama[0], ours[0], V), q8 = compare(llama[1], ours[1], V);
      console.log(
        `\n| file | vs | median rel | max rel | mean KL | max KL | same top-1 |\n|---|---|---|---|---|---|---|\n` +
          `| F32 | transformers, seq 0 | ${fmt(vsRef)} |\n| F32 (ours, read back) | transformers | ${
            fmt(back)
          } |\n` +
          `| F32 | ours on the file | ${fmt(f32)} |\n| Q8_0 | ours on the dequantized file | ${fmt(q8)} |`,
      );
      assert(vsRef.rel <= GEMMA_F32_BOUND && vsRef.meanKl <= 1e-6, `F32 vs transformers: ${fmt(vsRef)}`);
      assert(back.rel <= F32_BOUND, `read back vs transformers: ${fmt(back)}`);
      assert(f32.rel <= GEMMA_F32_BOUND && f32.meanKl <= 1e-6, `F32 llama.cpp vs ours: ${fmt(f32)}`);
      assert(q8.median <= Q_MEDIAN && q8.meanKl <= Q_KL && q8.top1 >= 0.9, `Q8_0: ${fmt(q8)}`);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test("GGUF of Gemma 3 (VLM): the run logs that the vision tower is not written (no mmproj)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "gguf_vlm_log_" });
  const warned: string[] = [];
  try {
    await quantize({
      model: fixture("models/gemma3"),
      outputDir: join(tmp, "q"),
      formats: ["gguf:q8_0"],
      scheme: resolveScheme("W4A16", { groupSize: 32 }),
      iters: 0,
      nsamples: 4,
      seqlen: 32,
      batchSize: 4,
      dataset: fixture("tinystories-calib.jsonl"),
      maxShardSize: 5e9,
    }, { info() {}, debug() {}, warn: (m: string) => void warned.push(m) });
    assertEquals(warned.filter((m) => MMPROJ.test(m)).length, 1, warned.join("\n"));
    const files = [...Deno.readDirSync(join(tmp, "q"))].map((e) => e.name).filter((n) => n.endsWith(".gguf"));
    assertEquals(files, ["gemma3-Q8_0.gguf"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("GGUF of Qwen2.5-VL (llama.cpp qwen2vl) is refused before anything is written", async () => {
  using ckpt = await openCheckpoint(fixture("models/qwen2_5_vl"));
  const ctx = { spec: ckpt.spec } as ExportContext;
  assertThrows(
    () => createExporters(["gguf:q4_k_m"], "/nonexistent/out", ctx),
    UnsupportedError,
    "qwen2_5_vl",
  );
  const tmp = await Deno.makeTempDir({ prefix: "gguf_vlm_qwen_" });
  try {
    await assertRejects(
      () =>
        quantize({
          model: fixture("models/qwen2_5_vl"),
          outputDir: join(tmp, "q"),
          formats: ["gguf:q8_0"],
          scheme: resolveScheme("W4A16", { groupSize: 32 }),
          iters: 0,
          nsamples: 4,
          seqlen: 32,
          batchSize: 4,
          dataset: fixture("tinystories-calib.jsonl"),
          maxShardSize: 5e9,
        }, { info() {}, debug() {}, warn() {} }),
      UnsupportedError,
      "only Gemma 3",
    );
    assertEquals([...Deno.readDirSync(tmp)].length, 0, "no output left");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
