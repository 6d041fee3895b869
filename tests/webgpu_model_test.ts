// The whole stories260K model (tests/fixtures/stories260K) on WebGPU through LoadedModel: last-position
// logits against the CPU backend and reference.json's float64 forward, and perplexity on a slice of
// eval.txt (documentStream, 8 windows of 128 tokens) against the CPU, in f32 and f16 compute.
import type { Backend } from "../src/backend/backend.ts";
import { createBackend } from "../src/backend/select.ts";
import { documentStream, windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { stderrLog } from "../src/log.ts";
import { cpu, expectClose, gpuTest, openGpu, reportErrors } from "./webgpu_helpers.ts";

const DIR = new URL("./fixtures/stories260K/", import.meta.url).pathname;
const be = await openGpu();

interface Reference {
  prompts: { text: string; ids: number[]; last_logits: number[] }[];
}

async function load(b: Backend, dtype: "f32" | "f16"): Promise<LoadedModel> {
  using ckpt = await openCheckpoint(DIR);
  return await LoadedModel.load(b, ckpt.spec, ckpt.weights, { positions: 256, dtype });
}

async function lastLogits(m: LoadedModel, ids: number[]): Promise<Float32Array> {
  using h = m.hidden(Int32Array.from(ids), { batch: 1, seqLen: ids.length });
  using last = m.be.rows(h, ids.length - 1, 1);
  using lg = m.logits(last);
  return await m.be.read(lg);
}

// f32: only summation order differs from the CPU. f16: weights and activations rounded to f16 at
// every op (11-bit mantissa) through 5 layers; measured ≈ 2e-3 against the f32 CPU.
const LOGIT_BOUND = { f32: 1e-5, f16: 1e-2 };
const PPL_BOUND = { f32: 1e-5, f16: 2e-3 };

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(
    `stories260K ${dtype} last-position logits match the CPU (≤ ${LOGIT_BOUND[dtype]}) and the f64 reference`,
    be,
    async (be) => {
      const ref: Reference = JSON.parse(await Deno.readTextFile(DIR + "reference.json"));
      using gm = await load(be, dtype);
      using cm = await load(cpu, "f32");
      for (const [i, p] of ref.prompts.entries()) {
        const got = await lastLogits(gm, p.ids);
        expectClose(`model ${dtype} logits vs CPU f32`, got, await lastLogits(cm, p.ids), LOGIT_BOUND[dtype]);
        expectClose(
          `model ${dtype} logits vs f64 reference (prompt ${i})`,
          got,
          p.last_logits,
          LOGIT_BOUND[dtype],
        );
      }
    },
  );

  gpuTest(
    `stories260K ${dtype} perplexity on 8 windows of 128 tokens of eval.txt matches the CPU (≤ ${
      PPL_BOUND[dtype]
    })`,
    be,
    async (be) => {
      using ckpt = await openCheckpoint(DIR);
      const tok = await Tokenizer.fromDir(ckpt.dir);
      const ids = documentStream(await Deno.readTextFile(DIR + "eval.txt"), (l) => tok.encode(l)).subarray(
        0,
        8 * 128,
      );
      using gm = await load(be, dtype);
      using cm = await load(cpu, "f32");
      const g = await windowedPerplexity(gm, ids, { seqlen: 128, batch: 4 });
      const c = await windowedPerplexity(cm, ids, { seqlen: 128, batch: 4 });
      console.log(`  ${dtype}: ppl ${g.ppl.toFixed(6)} (CPU ${c.ppl.toFixed(6)})`);
      expectClose(`model ${dtype} perplexity`, [g.ppl], [c.ppl], PPL_BOUND[dtype]);
      expectClose(`model ${dtype} window NLL sums`, g.windowNllSums, c.windowNllSums, PPL_BOUND[dtype]);
    },
  );
}

gpuTest("createBackend('webgpu') gives a WebGPU backend; computeDType is selectable", be, async () => {
  using b = await createBackend("webgpu", stderrLog({ quiet: true }));
  if (b.name !== "webgpu") throw new Error(`got ${b.name}`);
  const { WebGpuBackend } = await import("../src/backend/webgpu/mod.ts");
  using f32 = await WebGpuBackend.create({ computeDType: "f32" });
  if (f32.computeDType !== "f32") throw new Error("computeDType option ignored");
});

reportErrors("webgpu_model_test");
