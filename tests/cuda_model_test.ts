/**
 * The whole stories260K model (tests/fixtures/stories260K) on the CUDA backend: last-position
 * logits in f32 against reference.json's float64 numpy forward, and per-token NLL / perplexity on a
 * slice of real text (the fixture's greedy continuations, 4 windows of 128 tokens) against the CPU
 * backend, in f32 (tight) and bf16 (one bf16 rounding per op, compounded over 5 layers).
 */
import type { Backend } from "../src/backend/backend.ts";
import { windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { cpu, cuda, cudaTest, expectClose } from "./cuda_helpers.ts";

const DIR = new URL("./fixtures/stories260K/", import.meta.url).pathname;

interface Reference {
  prompts: { ids: number[]; last_logits: number[] }[];
  greedy: { ids: number[] }[];
}

async function load(be: Backend, dtype: "f32" | "bf16"): Promise<LoadedModel> {
  using ckpt = await openCheckpoint(DIR);
  return await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 512, dtype });
}

const reference = async (): Promise<Reference> => JSON.parse(await Deno.readTextFile(DIR + "reference.json"));

cudaTest("stories260K last-position logits in f32 match the float64 reference", async () => {
  const ref = await reference();
  using m = await load(cuda("f32"), "f32");
  for (const [i, p] of ref.prompts.entries()) {
    const ids = Int32Array.from(p.ids);
    using h = m.hidden(ids, { batch: 1, seqLen: ids.length });
    using last = m.be.rows(h, ids.length - 1, 1);
    using logits = m.logits(last);
    expectClose(
      `stories260K logits prompt ${i} (f32 vs f64 reference)`,
      await m.be.read(logits),
      p.last_logits,
      1e-5,
    );
  }
});

cudaTest("stories260K perplexity on a text slice: CUDA vs CPU in f32 and bf16", async () => {
  const ref = await reference();
  const stream = Int32Array.from(ref.greedy.flatMap((g) => g.ids)).subarray(0, 512);
  for (const dtype of ["f32", "bf16"] as const) {
    using gm = await load(cuda(dtype), dtype);
    using cm = await load(cpu, dtype);
    const g = await windowedPerplexity(gm, stream, { seqlen: 128, batch: 4 });
    const c = await windowedPerplexity(cm, stream, { seqlen: 128, batch: 4 });
    console.log(`  ${dtype}: ppl CUDA ${g.ppl.toFixed(6)} CPU ${c.ppl.toFixed(6)}`);
    expectClose(
      `stories260K window NLL sums ${dtype}`,
      g.windowNllSums,
      c.windowNllSums,
      dtype === "f32" ? 1e-5 : 1e-2,
    );
    expectClose(`stories260K ppl ${dtype}`, [g.ppl], [c.ppl], dtype === "f32" ? 1e-5 : 1e-2);
  }
});
