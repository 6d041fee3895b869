/**
 * GGUF proven by a real consumer: llama.cpp (node-llama-cpp's prebuilt CPU build) loads every file
 * we write, and its logits agree with our own forward pass over the same file read back by our
 * reader (dequantized weights). Skips, printing why, when tests/consumers/install.sh has not run.
 *
 * Tolerance: with F32 weights llama.cpp and our forward agree to ~4e-6 (f32 rounding), which pins
 * metadata, tensor names, the q/k row permutation and the tokenizer. For quantized weights llama.cpp's
 * CPU matmul quantizes the activations to 8 bits (Q8_0 blocks for the 32-wide types, Q8_K for the
 * K-quants; F16 for F16 weights), which our f32 forward does not, so logits differ by that rounding:
 * we require max |Δlogit| ≤ 4% of the largest |logit|, the same top-1 token, and KL(ours‖llama) ≤ 0.01
 * nats at the last position of three prompts, plus perplexities within 1.5%.
 */
import { assert, assertEquals } from "./assert.ts";
import { GgufExporter } from "../src/export/gguf.ts";
import type { Exporter } from "../src/export/exporter.ts";
import { GGUF_FORMAT_NAMES } from "../src/formats/gguf/presets.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import {
  exportModel,
  lastLogits,
  llamaCppUnavailable,
  perplexityOf,
  STORIES,
  storiesEvalIds,
} from "./consumers/helpers.ts";
import { compareLogits, printRows } from "./consumers/logits.ts";
import { QWEN3_TOKENIZER, tinyQwen, widenStories } from "./consumers/models.ts";
import { join } from "./consumers/path.ts";

const UNAVAILABLE = await llamaCppUnavailable();
const W4G32 = { bits: 4, groupSize: 32, sym: true, dataType: "int" as const };
const PROMPTS = [
  "Once upon a time",
  "Lily and Ben are friends. They like to play in the park.",
  "The little dog was very happy because",
];

function pathOf(e: Exporter): string {
  return (e as GgufExporter).path;
}

Deno.test({
  name:
    "llama.cpp: stories260K in every gguf format loads, logits match our forward, same tokens, sensible text",
  ignore: false,
  async fn() {
    if (UNAVAILABLE) return console.log(`skipped: ${UNAVAILABLE}`);
    const out = await Deno.makeTempDir({ prefix: "gguf_all_" });
    try {
      // gguf:mxfp4 stores an MXFP4 run (tests/gguf_mxfp4_test.ts), not this W4G32 one.
      const formats = GGUF_FORMAT_NAMES.filter((n) => n !== "q6_k_s" && n !== "mxfp4").map((n) => `gguf:${n}`)
        .join(",");
      const run = await exportModel({ model: STORIES, formats, out, scheme: W4G32 });
      const files = run.exporters.map(pathOf);
      const tok = await Tokenizer.fromDir(STORIES);
      const { rows, res } = await compareLogits(files, tok, PROMPTS, {
        tokenize: PROMPTS,
        generate: { prompt: "Once upon a time", maxTokens: 30 },
      });
      printRows("stories260K, every GGUF format (AutoRound's type assignment; 64/172 inputs)", rows);
      for (const [i, r] of rows.entries()) {
        assert(r.relDiff <= 0.04, `${r.file}: max |Δlogit| ${r.maxDiff} is ${(r.relDiff * 100).toFixed(2)}%`);
        assert(r.kl <= 0.01, `${r.file}: KL ${r.kl}`);
        assert(r.top1, `${r.file}: different top-1 token`);
        // llama.cpp's SPM tokenizer (scores from the merges) gives the HF tokenizer's ids.
        assertEquals(res[i].tokens, PROMPTS.map((p) => tok.encode(p, { addSpecialTokens: false })), r.file);
        const text = res[i].generated!.text;
        assert(
          /^,? ?there was a/.test(text) && text.split(" ").length >= 10,
          `${r.file}: generated "${text}"`,
        );
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "llama.cpp: an F32 GGUF of stories260K gives the float model's logits (conversion exact to f32 rounding)",
  async fn() {
    if (UNAVAILABLE) return console.log(`skipped: ${UNAVAILABLE}`);
    const out = await Deno.makeTempDir({ prefix: "gguf_f32_" });
    try {
      const run = await exportModel({
        model: STORIES,
        formats: "gguf:q8_0",
        out,
        scheme: W4G32,
        forceType: "F32",
      });
      const tok = await Tokenizer.fromDir(STORIES);
      const { rows } = await compareLogits(run.exporters.map(pathOf), tok, PROMPTS);
      printRows("stories260K, all weights F32", rows);
      assert(rows[0].maxDiff < 1e-4, `max |Δlogit| ${rows[0].maxDiff}`);
      // And the file read back by us is the float model itself.
      const ref = JSON.parse(await Deno.readTextFile(join(STORIES, "reference.json")));
      using m = await openGgufModel(pathOf(run.exporters[0]));
      const ours = await lastLogits(m.spec, m.weights, ref.prompts[0].ids);
      let d = 0;
      for (let i = 0; i < ours.length; i++) {
        d = Math.max(d, Math.abs(ours[i] - ref.prompts[0].last_logits[i]));
      }
      assert(d < 1e-4, `F32 GGUF vs reference.json: ${d}`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "llama.cpp: K-quant block types (Q2_K…Q6_K) on stories260K widened to 256 inputs; logits and perplexity agree",
  async fn() {
    if (UNAVAILABLE) return console.log(`skipped: ${UNAVAILABLE}`);
    const tmp = await Deno.makeTempDir({ prefix: "gguf_wide_" });
    try {
      const wide = await widenStories(join(tmp, "wide"));
      const formats = [
        "q2_k_s",
        "q3_k_s",
        "q3_k_m",
        "q3_k_l",
        "q4_k_s",
        "q4_k_m",
        "q5_k_s",
        "q5_k_m",
        "q6_k",
      ];
      const run = await exportModel({
        model: wide,
        formats: formats.map((f) => `gguf:${f}`).join(","),
        out: join(tmp, "out"),
        scheme: W4G32,
      });
      const files = run.exporters.map(pathOf);
      const tok = await Tokenizer.fromDir(wide);
      const ids = (await storiesEvalIds()).subarray(0, 2 * 256);
      const { rows, res } = await compareLogits(files, tok, PROMPTS, {
        perplexity: { ids: [...ids], seqlen: 256 },
      });
      printRows("stories260K widened (256 inputs): K-quants without fallback", rows);
      console.log("| file | ppl ours | ppl llama.cpp |\n|---|---|---|");
      for (const [i, r] of rows.entries()) {
        const base = formats[i].slice(0, 2).toUpperCase() + "_K";
        assert(r.types.includes(base), `${r.file} holds ${r.types}, not ${base}`);
        assert(r.relDiff <= 0.04, `${r.file}: ${(r.relDiff * 100).toFixed(2)}%`);
        assert(r.kl <= 0.01, `${r.file}: KL ${r.kl}`);
        assert(r.top1, `${r.file}: different top-1 token`);
        using m = await openGgufModel(files[i]);
        const ours = await perplexityOf(m.spec, m.weights, ids);
        const theirs = res[i].perplexity!.ppl;
        console.log(`| ${r.file} | ${ours.toFixed(4)} | ${theirs.toFixed(4)} |`);
        assert(
          Math.abs(ours - theirs) / theirs < 0.015,
          `${r.file}: ppl ours ${ours} vs llama.cpp ${theirs}`,
        );
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "llama.cpp: Qwen2 and Qwen3 (byte-level BPE 'gpt2' vocabulary, [PAD] rows, biases / q-k norms) load and agree",
  async fn() {
    if (UNAVAILABLE) return console.log(`skipped: ${UNAVAILABLE}`);
    try {
      await Deno.stat(join(QWEN3_TOKENIZER, "tokenizer.json"));
    } catch {
      return console.log(`skipped: no Qwen3 tokenizer at ${QWEN3_TOKENIZER}`);
    }
    const tmp = await Deno.makeTempDir({ prefix: "gguf_qwen_" });
    try {
      const prompts = ["Hello, world! 你好", "The quick brown fox jumps over the lazy dog."];
      for (const arch of ["qwen2", "qwen3"] as const) {
        const dir = await tinyQwen(join(tmp, arch), arch);
        const f32 = await exportModel({
          model: dir,
          formats: "gguf:q8_0",
          out: join(tmp, `${arch}-f32`),
          scheme: W4G32,
          forceType: "F32",
          nsamples: 4,
        });
        const q8 = await exportModel({
          model: dir,
          formats: "gguf:q8_0",
          out: join(tmp, `${arch}-q8`),
          scheme: W4G32,
          nsamples: 4,
        });
        const tok = await Tokenizer.fromDir(dir);
        const files = [pathOf(f32.exporters[0]), pathOf(q8.exporters[0])];
        const { rows, res } = await compareLogits(files, tok, prompts, { tokenize: prompts });
        printRows(`tiny ${arch} with the Qwen3 tokenizer`, rows);
        assert(rows[0].maxDiff < 1e-3, `${arch} F32: max |Δlogit| ${rows[0].maxDiff}`);
        assert(
          rows[1].relDiff <= 0.04 && rows[1].kl <= 0.01 && rows[1].top1,
          `${arch} Q8_0: ${JSON.stringify(rows[1])}`,
        );
        assertEquals(
          res[0].tokens,
          prompts.map((p) => tok.encode(p, { addSpecialTokens: false })),
          `${arch} tokens`,
        );
        assertEquals(res[0].info?.vocabSize, 151936);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
