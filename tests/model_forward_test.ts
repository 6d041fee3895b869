/**
 * The CPU forward pass against independent references: float64 numpy logits and perplexity of the
 * real stories260K model (tests/fixtures/stories260K/reference.json, see its README).
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { documentStream, windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { assert, assertAlmostEquals, assertEquals, fixture, maxRelError, relError } from "./assert.ts";

interface Reference {
  prompts: { text: string; ids: number[]; last_logits: number[] }[];
  eval: { ppl: number; mean_nll: number; window_nll_sums: number[] };
}

async function lastLogits(m: LoadedModel, ids: number[]): Promise<Float32Array> {
  using h = m.hidden(Int32Array.from(ids), { batch: 1, seqLen: ids.length });
  using lg = m.logits(h);
  const all = await m.be.read(lg);
  return all.subarray((ids.length - 1) * m.spec.vocab);
}

for (const precision of ["f32", "f64"] as const) {
  // f32 is what the product computes; f64 shows the remaining error is f32 rounding, not a bug.
  const bound = precision === "f32" ? { l2: 1e-6, max: 1e-6 } : { l2: 1e-7, max: 1e-7 };
  Deno.test(`stories260K ${precision} last-position logits match the float64 reference (rel ≤ ${bound.l2})`, async () => {
    const ref: Reference = JSON.parse(await Deno.readTextFile(fixture("stories260K/reference.json")));
    using ckpt = await openCheckpoint(fixture("stories260K"));
    using be = new CpuBackend({ precision });
    using m = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 64 });
    for (const p of ref.prompts) {
      const got = await lastLogits(m, p.ids);
      const l2 = relError(got, p.last_logits), mx = maxRelError(got, p.last_logits);
      console.log(
        `  ${precision} "${p.text.slice(0, 24)}…": ‖Δ‖/‖ref‖ ${l2.toExponential(2)}, max|Δ|/max|ref| ${
          mx.toExponential(2)
        }`,
      );
      assert(l2 <= bound.l2, `relative L2 error ${l2}`);
      assert(mx <= bound.max, `max relative error ${mx}`);
    }
  });
}

Deno.test("tokenizer reproduces the reference prompt ids (BOS first)", async () => {
  const ref: Reference = JSON.parse(await Deno.readTextFile(fixture("stories260K/reference.json")));
  const tok = await Tokenizer.fromDir(fixture("stories260K"));
  for (const p of ref.prompts) assertEquals(tok.encode(p.text), p.ids);
});

for (const dir of ["stories260K", "stories260K-bf16"]) {
  Deno.test(`${dir} perplexity on eval.txt equals the reference within 0.01% (protocol of its README)`, async () => {
    const ref: Reference = JSON.parse(await Deno.readTextFile(fixture(`${dir}/reference.json`)));
    using ckpt = await openCheckpoint(fixture(dir));
    const tok = await Tokenizer.fromDir(ckpt.dir);
    const ids = documentStream(
      await Deno.readTextFile(fixture("stories260K/eval.txt")),
      (l) => tok.encode(l),
    );
    assertEquals(ids.length, 32768);
    using be = new CpuBackend();
    using m = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 256 });
    const r = await windowedPerplexity(m, ids, { seqlen: 256, batch: 16 });
    console.log(`  ${dir}: ppl ${r.ppl.toFixed(6)} (reference ${ref.eval.ppl.toFixed(6)})`);
    assertEquals(r.windows, 128);
    assertEquals(r.targets, 128 * 255);
    assertAlmostEquals(r.ppl / ref.eval.ppl, 1, 1e-4);
    // Per-window sums as well, so a compensating error cannot hide.
    assert(maxRelError(r.windowNllSums, ref.eval.window_nll_sums) < 1e-4);
  });
}

Deno.test("config parsing: rope_parameters (transformers 5), llama3 scaling, unknown architecture", () => {
  const base = {
    model_type: "llama",
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    vocab_size: 10,
  };
  const a = parseModelConfig({ ...base, rope_parameters: { rope_theta: 500000, rope_type: "default" } }, "c");
  assertEquals(a.ropeTheta, 500000);
  assertEquals(a.headDim, 16);
  assertEquals(a.nKvHeads, 4);
  const b = parseModelConfig({
    ...base,
    rope_theta: 500000,
    rope_scaling: {
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    },
  }, "c");
  assertEquals(b.ropeScaling.type, "llama3");
  let threw = false;
  try {
    parseModelConfig({ ...base, model_type: "gpt2" }, "x/config.json");
  } catch (e) {
    threw = (e as Error).message.includes(`unsupported architecture model_type "gpt2"`);
  }
  assert(threw);
});
