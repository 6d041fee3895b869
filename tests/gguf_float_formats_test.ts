/**
 * gguf:f32, gguf:f16, gguf:bf16: plain conversions as llama.cpp's convert_hf_to_gguf.py writes them
 * (conversion/base.py prepare_tensors: every 2-D `.weight` in the file's type, 1-D tensors and norms
 * F32; general.file_type ALL_F32 = 0, MOSTLY_F16 = 1, MOSTLY_BF16 = 32 from gguf-py LlamaFileType),
 * checked against the checkpoint's own values, against llama.cpp's logits, and as input of
 * llama.cpp's llama-quantize (built by ../shared/tools/ggml/build.sh into /tmp/ggml; skipped, with the
 * reason printed, where it is absent, as on CI).
 */
import { assert, assertEquals } from "./assert.ts";
import type { GgufExporter } from "../src/export/gguf.ts";
import { parseFormats, resolveRunScheme } from "../src/export/registry.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { roundToDType } from "../src/tensor/dtype.ts";
import { exportModel, llamaCppUnavailable, runLlamaCpp, STORIES } from "./consumers/helpers.ts";
import { argmax, compareLogits, kl, printRows } from "./consumers/logits.ts";
import { widenStories } from "./consumers/models.ts";
import { join } from "./consumers/path.ts";

const W4G32 = { bits: 4, groupSize: 32, sym: true, dataType: "int" as const };
const PROMPTS = ["Once upon a time", "The little dog was very happy because"];
const LLAMA_QUANTIZE = "/tmp/ggml/llama.cpp/build/bin/llama-quantize";

Deno.test("--format gguf:f32/f16/bf16 parse, need no scheme, mix with quantized formats, refuse tuning alone", () => {
  const f = parseFormats("gguf:F16,gguf:bf16,gguf:f32");
  assertEquals(f.map((x) => [x.name, x.gguf!.base, x.gguf!.fileType]), [
    ["gguf:f16", "F16", 1],
    ["gguf:bf16", "BF16", 32],
    ["gguf:f32", "F32", 0],
  ]);
  assert(!resolveRunScheme(f, undefined, W4G32, 0).packs);
  // Next to a quantized GGUF format the run follows that one's base, as without the conversion.
  const mixed = resolveRunScheme(parseFormats("gguf:f16,gguf:q4_k_m"), undefined, W4G32, 0);
  assertEquals(mixed.describe, "GGUF:Q4_K_M (per-tensor type mix)");
  let refused = "";
  try {
    resolveRunScheme(f, undefined, W4G32, 200);
  } catch (e) {
    refused = (e as Error).message;
  }
  assert(/converts without quantizing; use --iters 0/.test(refused), refused);
});

Deno.test("gguf:f32/f16/bf16: convert_hf_to_gguf's tensor types and file types, values = the checkpoint's rounded to the type", async () => {
  const out = await Deno.makeTempDir({ prefix: "gguf_float_" });
  try {
    const run = await exportModel({ model: STORIES, formats: "gguf:f32,gguf:f16,gguf:bf16", out });
    using src = await SafetensorsReader.open(STORIES);
    const want = { F32: 0, F16: 1, BF16: 32 } as const;
    for (const e of run.exporters) {
      const path = (e as GgufExporter).path;
      using f = await GgufFile.open(path);
      const type = path.match(/-(F32|F16|BF16)\.gguf$/)![1] as keyof typeof want;
      assertEquals(f.num("general.file_type"), want[type], path);
      for (const t of f.tensors) {
        const expect = t.ne.length <= 1 || t.name.endsWith("_norm.weight") ? "F32" : type;
        assertEquals(t.type, expect, `${path}: ${t.name}`);
      }
      // The embedding (not permuted) holds exactly the checkpoint's values rounded to the type.
      const ours = await f.readF32("token_embd.weight");
      const theirs = roundToDType(await src.readF32("model.embed_tokens.weight"), type);
      assertEquals(ours.length, theirs.length);
      assert(ours.every((v, i) => v === theirs[i]), `${path}: token_embd differs from the checkpoint`);
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test({
  name: "llama.cpp: gguf:f32/f16/bf16 of stories260K load; logits agree with our forward of the same file",
  async fn() {
    const why = await llamaCppUnavailable();
    if (why) return console.log(`skipped: ${why}`);
    const out = await Deno.makeTempDir({ prefix: "gguf_float_llama_" });
    try {
      const run = await exportModel({ model: STORIES, formats: "gguf:f32,gguf:f16,gguf:bf16", out });
      const files = run.exporters.map((e) => (e as GgufExporter).path);
      const { rows } = await compareLogits(files, await Tokenizer.fromDir(STORIES), PROMPTS);
      printRows("stories260K float conversions", rows);
      for (const r of rows) {
        // F32: f32 rounding only. F16/BF16: llama.cpp's CPU matmul rounds the activations to the
        // weights' type, our forward keeps them f32 (bf16 keeps 8 bits of mantissa).
        const bound = r.file.endsWith("-F32.gguf") ? 1e-4 : r.file.endsWith("-F16.gguf") ? 0.01 : 0.04;
        assert(r.relDiff <= bound, `${r.file}: max |Δlogit| ${r.maxDiff} (${(r.relDiff * 100).toFixed(3)}%)`);
        assert(r.kl <= 0.01 && r.top1, `${r.file}: KL ${r.kl}, top-1 ${r.top1}`);
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "llama-quantize takes our gguf:f16 (stories260K widened to 256 inputs) to Q4_K_M; llama.cpp runs the result",
  async fn() {
    const why = await llamaCppUnavailable();
    if (why) return console.log(`skipped: ${why}`);
    try {
      await Deno.stat(LLAMA_QUANTIZE);
    } catch {
      return console.log(
        `skipped: no ${LLAMA_QUANTIZE} (bash ../shared/tools/ggml/build.sh /tmp/ggml builds it)`,
      );
    }
    const tmp = await Deno.makeTempDir({ prefix: "gguf_llama_quantize_" });
    try {
      const wide = await widenStories(join(tmp, "wide"));
      const run = await exportModel({ model: wide, formats: "gguf:f16", out: join(tmp, "out") });
      const f16 = (run.exporters[0] as GgufExporter).path, q4 = join(tmp, "q4_k_m.gguf");
      const r = await new Deno.Command(LLAMA_QUANTIZE, { args: [f16, q4, "Q4_K_M", "1"] }).output();
      const log = new TextDecoder().decode(r.stderr) + new TextDecoder().decode(r.stdout);
      assert(r.success, `llama-quantize failed:\n${log.slice(-2000)}`);
      using q = await GgufFile.open(q4);
      assertEquals(q.num("general.file_type"), 15, "MOSTLY_Q4_K_M"); // gguf-py LlamaFileType
      const types = new Set(q.tensors.map((t) => t.type));
      assert(types.has("Q4_K") && types.has("Q6_K"), `types ${[...types]}`);
      // llama.cpp runs the F16 file, llama-quantize's Q4_K_M and ours (AutoRound's opt-RTN Q4_K_M with
      // the calibration imatrix, from the same weights, printed for comparison): the 4-bit files keep
      // the F16 file's next token, at a KL a 4-bit model of this size shows (≤ 0.1 seen).
      const ours = await exportModel({ model: wide, formats: "gguf:q4_k_m", out: join(tmp, "ours") });
      const oursPath = (ours.exporters[0] as GgufExporter).path;
      const tok = await Tokenizer.fromDir(wide);
      const seqs = PROMPTS.map((p) => tok.encode(p));
      const [a, b, c] = await runLlamaCpp(
        [f16, q4, oursPath].map((model) => ({ model, sequences: seqs, lastOnly: true })),
      );
      for (let j = 0; j < seqs.length; j++) {
        const theirs = kl(a.logits![j][0], b.logits![j][0]), mine = kl(a.logits![j][0], c.logits![j][0]);
        console.log(
          `prompt ${j}: KL(F16 ‖ llama-quantize Q4_K_M) ${theirs.toFixed(4)}, KL(F16 ‖ ours) ${
            mine.toFixed(4)
          }`,
        );
        assert(theirs < 0.3 && mine < 0.3, `prompt ${j}: KL ${theirs} (llama-quantize), ${mine} (ours)`);
        assertEquals(argmax(a.logits![j][0]), argmax(b.logits![j][0]), `prompt ${j}: top-1`);
      }
      // And our reader opens llama-quantize's output.
      using m = await openGgufModel(q4);
      assertEquals(m.spec.nLayers, run.spec.nLayers);
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
