/**
 * GGUF of a vision-language checkpoint's text model (spec/MODELS.md § 9.4) on the tiny fixtures
 * tests/fixtures/models/{gemma3,qwen2_5_vl}: Gemma 3 (Gemma3ForConditionalGeneration, tied
 * embeddings, tensors under `language_model.model.`) is written as plain GGUF gemma3, with the same
 * tensor names, shapes and types as the gemma3_text fixture's export; Qwen2.5-VL as llama.cpp's
 * qwen2vl (`rope.dimension_sections` from mrope_section). Neither file has a vision tower or
 * projector tensor, every text tensor of the checkpoint is in it; llama.cpp (node-llama-cpp's CPU
 * build) computes transformers' text-only logits from it, and our reader reads it back as the plain
 * text model. The missing mmproj is warned (exporter and the run's log).
 *
 * Bounds as gguf_families_test.ts: F32 ≤ 2e-5 relative per position against transformers, ≤ 3e-3
 * for Gemma (ggml's f16 GeLU table), mean KL ≤ 1e-6. qwen2vl F32: ≤ 1e-3 (measured 2.0e-4, KL 3e-9):
 * llama.cpp's M-RoPE graph, not the weights: the same tensors written as GGUF qwen2 measured 1.5e-6; our forward on the F32 file read back ≤ 2e-5;
 * Q8_0 against our forward on the dequantized file: median ≤ 5%, mean KL ≤ 0.01, top-1 ≥ 90%.
 */
import { assert, assertEquals, assertThrows, fixture } from "./assert.ts";
import { UnsupportedError } from "../src/errors.ts";
import type { ExportContext } from "../src/export/exporter.ts";
import { GgufExporter } from "../src/export/gguf.ts";
import { createExporters } from "../src/export/registry.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { hfToGgufName } from "../src/formats/gguf/names.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { plainTextName } from "../src/model/multimodal.ts";
import type { WeightSource } from "../src/model/transformer.ts";
import { quantize } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { exportModel, llamaCppUnavailable, runLlamaCpp } from "./consumers/helpers.ts";
import { compare, fmt, ourLogits } from "./consumers/family_logits.ts";
import { join } from "./consumers/path.ts";
import { checkFamilyTensors } from "./gguf_families_layout.ts";

const UNAVAILABLE = await llamaCppUnavailable();
const W4G32 = { bits: 4, groupSize: 32, sym: true, dataType: "int" as const };
const T = 48, F32_BOUND = 2e-5, GEMMA_F32_BOUND = 3e-3, MROPE_F32_BOUND = 1e-3, Q_MEDIAN = 0.05, Q_KL = 0.01;
const mmproj = (arch: string) => new RegExp(`only the text model is written \\(GGUF ${arch}\\).*no mmproj`);

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

const CASES = [
  { vlm: "gemma3", arch: "gemma3", text: "gemma3_text", prefix: "language_model.model.", tied: true },
  { vlm: "qwen2_5_vl", arch: "qwen2vl", text: undefined, prefix: "model.", tied: false },
];

for (const c of CASES) {
  Deno.test({
    name:
      `GGUF of ${c.vlm} (VLM): text model as GGUF ${c.arch}, no vision tensors, llama.cpp gives transformers' logits`,
    async fn() {
      const dir = fixture(`models/${c.vlm}`);
      const tmp = await Deno.makeTempDir({ prefix: "gguf_vlm_" });
      try {
        const files = await exportBoth(dir, join(tmp, "vlm"));
        for (const e of files) {
          assertEquals(e.warnings.length, 1, e.warnings.join());
          assert(mmproj(c.arch).test(e.warnings[0]), e.warnings[0]);
        }
        using ckpt = await openCheckpoint(dir);
        const spec = ckpt.spec, V = spec.vocab;
        assertEquals([spec.multimodal, spec.textPrefix, spec.tieEmbeddings], [c.vlm, c.prefix, c.tied]);
        // Every text tensor of the checkpoint, under its GGUF name with its shape, and nothing else.
        const want = new Map<string, string>();
        const st = await SafetensorsReader.open(dir);
        const names = st.names();
        st.close();
        for (const n of names) {
          const plain = plainTextName(spec, n);
          if (!plain) continue;
          want.set(hfToGgufName(plain, c.arch)!, `[${[...ckpt.weights.shape(n)].reverse()}]`);
        }
        assert(want.size > 0 && !want.has(undefined as unknown as string), `${[...want.keys()]}`);
        for (const e of files) {
          const got = await layout(e.path);
          assertEquals(new Map([...got].map(([k, v]) => [k, v.replace(/^\S+ /, "")])), want, e.path);
          assertEquals(e.records.filter((r) => !/^(model\.|lm_head\.)/.test(r.hfName)), [], "unmapped names");
        }
        // Gemma 3: the same layout (types included) as the text-only gemma3_text fixture's export.
        if (c.text) {
          const text = await exportBoth(fixture(`models/${c.text}`), join(tmp, "text"));
          for (const [i, e] of files.entries()) {
            assertEquals([...await layout(e.path)].sort(), [...await layout(text[i].path)].sort(), e.path);
          }
        }
        // Values (the Gemma +1 on norms included) against the checkpoint under its stored names.
        const w = { readF32: (n: string) => ckpt.weights.readF32(n.replace(/^model\./, spec.textPrefix)) };
        for (const e of files) {
          using g = await GgufFile.open(e.path);
          assertEquals(g.str("general.architecture"), c.arch);
          if (c.arch === "qwen2vl") {
            assertEquals(g.array("qwen2vl.rope.dimension_sections"), [...spec.mropeSection!, 0]);
          }
          await checkFamilyTensors(g, spec, w as unknown as WeightSource, e.path.endsWith("F32.gguf"));
        }
        // Read back by our reader: the plain text model.
        {
          using m = await openGgufModel(files[0].path);
          assertEquals([m.spec.multimodal, m.spec.textPrefix, m.spec.modelType], [
            undefined,
            "model.",
            spec.modelType,
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
          `\n${c.vlm} → ${c.arch}\n| file | vs | median rel | max rel | mean KL | max KL | same top-1 |\n` +
            `|---|---|---|---|---|---|---|\n| F32 | transformers, seq 0 | ${fmt(vsRef)} |\n` +
            `| F32 (ours, read back) | transformers | ${fmt(back)} |\n| F32 | ours on the file | ${
              fmt(f32)
            } |\n` +
            `| Q8_0 | ours on the dequantized file | ${fmt(q8)} |`,
        );
        const bound = spec.act === "gelu_tanh"
          ? GEMMA_F32_BOUND
          : c.arch === "qwen2vl"
          ? MROPE_F32_BOUND
          : F32_BOUND;
        assert(vsRef.rel <= bound && vsRef.meanKl <= 1e-6, `F32 vs transformers: ${fmt(vsRef)}`);
        assert(back.rel <= F32_BOUND, `read back vs transformers: ${fmt(back)}`);
        assert(f32.rel <= bound && f32.meanKl <= 1e-6, `F32 llama.cpp vs ours: ${fmt(f32)}`);
        assert(q8.median <= Q_MEDIAN && q8.meanKl <= Q_KL && q8.top1 >= 0.9, `Q8_0: ${fmt(q8)}`);
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  });
}

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
    assertEquals(warned.filter((m) => mmproj("gemma3").test(m)).length, 1, warned.join("\n"));
    const files = [...Deno.readDirSync(join(tmp, "q"))].map((e) => e.name).filter((n) => n.endsWith(".gguf"));
    assertEquals(files, ["gemma3-Q8_0.gguf"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("GGUF of Qwen2.5-VL without mrope_section is refused (qwen2vl needs rope.dimension_sections)", async () => {
  const cfg = JSON.parse(await Deno.readTextFile(fixture("models/qwen2_5_vl/config.json")));
  const ctx = (c: Record<string, unknown>) => ({ spec: parseModelConfig(c, "config.json") }) as ExportContext;
  const noSections = structuredClone(cfg);
  delete noSections.text_config.rope_parameters.mrope_section;
  assertThrows(
    () => createExporters(["gguf:q8_0"], "/nonexistent/out", ctx(noSections)),
    UnsupportedError,
    "mrope_section",
  );
  assertEquals(parseModelConfig(cfg, "config.json").mropeSection, [2, 3, 3]);
  assertEquals(parseModelConfig(cfg, "config.json").traits.ggufArch, "qwen2vl");
});
