/**
 * GGUF of the issue-18 families proven by llama.cpp (node-llama-cpp's CPU build): each tiny fixture
 * of tests/fixtures/models/ exported as F32, gguf:q8_0 and gguf:q4_k_m, loaded by llama.cpp, and its
 * logits at every position of the fixture's three 48-token sequences compared with
 * - transformers' float64 reference (reference.safetensors; F32 file only): names, stacking, the
 *   Gemma +1, metadata and forced types all have to be right for llama.cpp to compute the model;
 * - our forward over the same file read back by our reader (dequantized weights; every file).
 *
 * Bounds. F32: max|Δlogit| / max|logit| ≤ 2e-5 for both comparisons (f32 accumulation orders;
 * measured ≤ 5e-6, see the printed table). Quantized: llama.cpp's CPU matmul quantizes activations
 * to Q8_0/Q8_1 blocks for Q8_0/Q5_0 weights, which our f32 forward does not, so logits differ by
 * that rounding; the bound is 3% of the largest logit (measured ≤ 1%), KL ≤ 1e-3 nats per
 * position and the same top-1 token at ≥ 95% of the positions (near-ties of random models flip).
 * Every input size of these fixtures is 32 or 64, so q4_k_m's K-quants fall back to Q5_0/Q8_0
 * (presets.ts fitToInput) — K-quant blocks are proven on stories260K (gguf_llamacpp_test.ts);
 * stacking is byte concatenation, the same for every type.
 *
 * Fixture choices (spec/MODELS.md § 10.6): qwen2_moe is the norm_topk_prob=false fixture (llama.cpp's
 * qwen2moe never renormalises; qwen2_moe_norm is the warning case), gemma2/gemma3 fixtures set
 * query_pre_attn_scalar = head_dim (llama.cpp derives the scale from the layer count), hidden 64
 * (√64 = 8 exact: llama.cpp does not round the embedding scale), the default sliding patterns, and the
 * Phi-3 fixtures have no sliding window (llama.cpp disables Phi-3 SWA). phi3_longrope's sequences (48)
 * exceed original_max_position_embeddings (32), so transformers uses the long factors; llama.cpp
 * picks them from the context size, which the runner sets to the sequence length (≥ 32 + 1).
 */
import { assert, assertEquals, fixture } from "./assert.ts";
import { GgufExporter } from "../src/export/gguf.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { exportModel, llamaCppUnavailable, runLlamaCpp } from "./consumers/helpers.ts";
import { argmax, kl } from "./consumers/logits.ts";
import { join } from "./consumers/path.ts";
import { checkFamilyTensors } from "./gguf_families_layout.ts";

const UNAVAILABLE = await llamaCppUnavailable();
const W4G32 = { bits: 4, groupSize: 32, sym: true, dataType: "int" as const };
const T = 48, F32_BOUND = 2e-5, Q_BOUND = 0.03, KL_BOUND = 1e-3;

const FAMILIES: [string, string][] = [
  ["qwen2_moe", "qwen2moe"],
  ["qwen3_moe", "qwen3moe"],
  ["mixtral", "llama"],
  ["gemma2", "gemma2"],
  ["gemma3_text", "gemma3"],
  ["gemma3_text_linear", "gemma3"],
  ["phi3", "phi3"],
  ["phi3_longrope", "phi3"],
];

/** All-position logits of each sequence under our forward, `[3][T·V]`. */
async function ourLogits(file: string, ids: Int32Array): Promise<Float32Array[]> {
  using be = new CpuBackend();
  using m = await openGgufModel(file);
  using model = await LoadedModel.load(be, m.spec, m.weights, { positions: 64 });
  const out: Float32Array[] = [];
  for (let s = 0; s < 3; s++) {
    using h = model.hidden(ids.subarray(s * T, (s + 1) * T), { batch: 1, seqLen: T });
    using lg = model.logits(h);
    out.push(await be.read(lg));
  }
  return out;
}

interface Cmp {
  rel: number;
  kl: number;
  top1: number;
}

/** max|a−b|/max|b| over all rows, worst KL(b‖a) of a row, share of rows with the same argmax. */
function compare(a: ArrayLike<number>[], b: ArrayLike<number>[], V: number): Cmp {
  let d = 0, s = 0, worst = 0, same = 0, rows = 0;
  for (let i = 0; i < a.length; i++) {
    for (let j = 0; j < a[i].length; j++) {
      d = Math.max(d, Math.abs(a[i][j] - b[i][j]));
      s = Math.max(s, Math.abs(b[i][j]));
    }
    for (let r = 0; r * V < a[i].length; r++) {
      const x = Array.prototype.slice.call(a[i], r * V, (r + 1) * V);
      const y = Array.prototype.slice.call(b[i], r * V, (r + 1) * V);
      worst = Math.max(worst, kl(y, x));
      same += argmax(x) === argmax(y) ? 1 : 0;
      rows++;
    }
  }
  return { rel: d / s, kl: worst, top1: same / rows };
}

const fmt = (c: Cmp) => `${c.rel.toExponential(2)} | ${c.kl.toExponential(2)} | ${(c.top1 * 100).toFixed(0)}%`;

for (const [family, arch] of FAMILIES) {
  Deno.test({
    name: `llama.cpp: ${family} as GGUF ${arch} (F32, Q8_0, Q4_K_M) gives transformers' and our logits`,
    async fn() {
      if (UNAVAILABLE) return console.log(`skipped: ${UNAVAILABLE}`);
      const dir = fixture(`models/${family}`);
      const r = await SafetensorsReader.open(`${dir}/reference.safetensors`);
      const ids = await r.readInt32("ids"), refAll = await r.readF32("logits");
      const refLast = await r.readF32("last_logits");
      r.close();
      const tmp = await Deno.makeTempDir({ prefix: `gguf_${family}_` });
      try {
        const common = { model: dir, scheme: W4G32, nsamples: 4, seqlen: 32 };
        const f32 = await exportModel({ ...common, formats: "gguf:q8_0", out: join(tmp, "f32"), forceType: "F32" });
        const q = await exportModel({ ...common, formats: "gguf:q8_0,gguf:q4_k_m", out: join(tmp, "q") });
        const exporters = [...f32.exporters, ...q.exporters] as GgufExporter[];
        const files = exporters.map((e) => e.path);
        for (const e of exporters) assertEquals(e.warnings, [], `${family}: warnings`);
        using ckpt = await openCheckpoint(dir);
        const V = ckpt.spec.vocab;
        // Names, shapes, types and values of the family's own tensors, read back with our reader.
        for (const file of files) {
          using g = await GgufFile.open(file);
          await checkFamilyTensors(g, ckpt.spec, ckpt.weights, file.endsWith("F32.gguf"));
        }
        const seqs = [0, 1, 2].map((s) => [...ids.subarray(s * T, (s + 1) * T)]);
        const res = await runLlamaCpp(files.map((model) => ({ model, sequences: seqs })));
        const llama = res.map((x) => x.logits!.map((rows) => Float32Array.from(rows.flat())));
        console.log(`\n${family} → ${arch}\n| file | vs | max rel | worst KL | same top-1 |\n|---|---|---|---|---|`);
        // F32: llama.cpp against transformers (sequence 0 everywhere, the three last positions).
        const lastOf = (x: Float32Array[]) => x.map((s) => s.subarray((T - 1) * V));
        const refRows = [0, 1, 2].map((s) => refLast.subarray(s * V, (s + 1) * V));
        const tAll = compare([llama[0][0]], [refAll], V), tLast = compare(lastOf(llama[0]), refRows, V);
        console.log(`| F32 | transformers, seq 0 all positions | ${fmt(tAll)} |`);
        console.log(`| F32 | transformers, last positions | ${fmt(tLast)} |`);
        assert(tAll.rel <= F32_BOUND && tLast.rel <= F32_BOUND, `${family} F32 vs transformers: ${tAll.rel}, ${tLast.rel}`);
        for (const [i, file] of files.entries()) {
          const ours = await ourLogits(file, ids);
          const c = compare(llama[i], ours, V);
          const name = file.split("-").pop()!;
          console.log(`| ${name} | ours on the dequantized file | ${fmt(c)} |`);
          if (i === 0) {
            assert(c.rel <= F32_BOUND, `${family} F32 llama.cpp vs ours: ${c.rel}`);
            // Our reader gives back the checkpoint: our forward on it is transformers' model.
            const back = compare([ours[0]], [refAll], V);
            assert(back.rel <= F32_BOUND, `${family} F32 read back vs transformers: ${back.rel}`);
          } else {
            assert(c.rel <= Q_BOUND && c.kl <= KL_BOUND && c.top1 >= 0.95, `${family} ${name}: ${fmt(c)}`);
          }
        }
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  });
}
