/**
 * Generation against independent references:
 * - stories260K's reference.json greedy continuations (run.c at temperature 0 on a float64 forward:
 *   argmax, stop when BOS would come next, at most 256 tokens after BOS) must be reproduced token
 *   for token through the key/value cache;
 * - each cached decode step's logits must equal the full forward's logits for the same sequence;
 * - the sampler must draw what llama2.c run.c's own sampler code draws
 *   (tests/fixtures/eval/runc_sampler.json, from tools/eval_runc_sampler.c built with gcc).
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { generate, KvCacheDecoder } from "../src/eval/generate.ts";
import { openEvalModel } from "../src/eval/model_source.ts";
import { Sampler, XorShiftStar } from "../src/eval/sampler.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { main } from "../main.ts";
import { assert, assertClose, assertEquals, FIXTURES, STORIES } from "./eval_assert.ts";

const REF = JSON.parse(await Deno.readTextFile(`${STORIES}/reference.json`));
const RUNC = JSON.parse(await Deno.readTextFile(FIXTURES + "eval/runc_sampler.json"));

Deno.test("greedy generation reproduces reference.json's run.c continuations exactly (KV cache)", async () => {
  using src = await openEvalModel(STORIES);
  using be = new CpuBackend();
  using lm = await LoadedModel.load(be, src.spec, src.weights);
  for (const g of REF.greedy) {
    const prompt = g.ids.slice(0, g.prompt_len);
    const t0 = performance.now();
    const r = await generate(lm, prompt, {
      maxNewTokens: 257 - g.prompt_len,
      temperature: 0,
      topP: 1,
      seed: 0,
      stopIds: [1, 2],
    });
    const seconds = (performance.now() - t0) / 1000;
    assertEquals([...prompt, ...r.ids], g.ids, `prompt ${JSON.stringify(g.text.slice(0, 20))}`);
    assert(seconds < 10, `generation took ${seconds}s`);
  }
});

Deno.test("each KV-cached decode step gives the full forward's last-position logits", async () => {
  using src = await openEvalModel(STORIES);
  using be = new CpuBackend();
  using lm = await LoadedModel.load(be, src.spec, src.weights);
  const ids = REF.greedy[1].ids.slice(0, 40) as number[];
  const dec = new KvCacheDecoder(lm, 64);
  let logits = await dec.prefill(ids.slice(0, 5));
  for (let n = 5; n <= ids.length; n++) {
    using h = lm.hidden(Int32Array.from(ids.slice(0, n)), { batch: 1, seqLen: n });
    using last = be.rows(h, n - 1, 1);
    using full = lm.logits(last);
    const want = await be.read(full);
    let maxDiff = 0;
    for (let i = 0; i < want.length; i++) maxDiff = Math.max(maxDiff, Math.abs(want[i] - logits[i]));
    assert(maxDiff < 1e-4, `position ${n}: max |diff| ${maxDiff}`);
    if (n < ids.length) logits = await dec.step(ids[n]);
  }
  // and the prompt's last logits equal the float64 reference of "Once upon a time"
  const p = REF.prompts[0];
  const d2 = new KvCacheDecoder(lm, 16);
  const l2 = await d2.prefill(p.ids);
  for (let i = 0; i < l2.length; i++) assertClose(l2[i], p.last_logits[i], 1e-4, `logit ${i}`);
});

Deno.test("sampler draws what llama2.c run.c's sampler draws (xorshift*, multinomial, top-p)", () => {
  const rng = new XorShiftStar(42);
  assertEquals(Array.from({ length: 5 }, () => rng.nextU32()), RUNC.u32_seed42);
  const logits = Float32Array.from(RUNC.logits as number[]);
  for (const [key, temperature, topP] of [["draws_t0.8_p0.9", 0.8, 0.9], ["draws_t1_p1", 1, 1]] as const) {
    const s = new Sampler({ temperature, topP, seed: 1234 });
    assertEquals(Array.from({ length: 40 }, () => s.sample(logits)), RUNC[key], key);
  }
  assertEquals(new Sampler({ temperature: 0, topP: 0.9, seed: 1 }).sample(logits), 12); // argmax
});

Deno.test("autoround generate: greedy CLI output continues the prompt; --seed makes sampling repeatable", async () => {
  const run = async (args: string[]) => {
    const out: string[] = [];
    const orig = console.log;
    console.log = (...a: unknown[]) => out.push(a.join(" "));
    try {
      assertEquals(await main(["generate", "--model", STORIES, "--quiet", ...args]), 0);
    } finally {
      console.log = orig;
    }
    return out.join("\n");
  };
  const greedy = await run(["--prompt", "Once upon a time", "--max_new_tokens", "20"]);
  assert(greedy.startsWith("Once upon a time, there was a little girl named Lily."), greedy);
  const a = await run([
    "--prompt",
    "Lily",
    "--temperature",
    "0.9",
    "--top_p",
    "0.9",
    "--seed",
    "7",
    "--max_new_tokens",
    "30",
  ]);
  const b = await run([
    "--prompt",
    "Lily",
    "--temperature",
    "0.9",
    "--top_p",
    "0.9",
    "--seed",
    "7",
    "--max_new_tokens",
    "30",
  ]);
  assertEquals(a, b);
  assert(a.startsWith("Lily"), a);
});
