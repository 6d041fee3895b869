/**
 * Log-likelihood scoring against hand computation. The model is a real one-layer Llama folder
 * whose block is an identity (o_proj and down_proj are zero, so x + 0 + 0), which makes it a
 * bigram model: log p(next | prefix) = log_softmax(E · rmsnorm(E[last]))[next], computed here in
 * f64 from the raw weights, independent of the backend, batching, padding and row selection. A
 * two-item ARC-style fixture is then scored through runEvalTasks and its acc / acc_norm checked
 * against the same hand computation.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import {
  encodeRequest,
  rollingWindows,
  scoreRequests,
  type TokenRequest,
} from "../src/eval/loglikelihood.ts";
import { openEvalModel } from "../src/eval/model_source.ts";
import { runEvalTasks } from "../src/eval/run.ts";
import { SafetensorsWriter } from "../src/io/safetensors/writer.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { assertClose, assertEquals, assertEqualsInOrder, STORIES } from "./eval_assert.ts";

const V = 512, H = 8, EPS = 1e-5;

/** Deterministic pseudo-random weights in [−1, 1). */
function lcg(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 31) - 1;
}

async function writeBigramModel(dir: string): Promise<{ embed: Float32Array; norm: Float32Array }> {
  const rnd = lcg(7);
  const f32 = (n: number, f: () => number) => Float32Array.from({ length: n }, f);
  const embed = f32(V * H, () => 2 * rnd());
  const norm = f32(H, () => 1 + 0.5 * rnd());
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer.slice(0));
  const w = new SafetensorsWriter(dir, { maxShardSize: 1 << 30 });
  await w.add("model.embed_tokens.weight", "F32", [V, H], bytes(embed));
  await w.add("model.norm.weight", "F32", [H], bytes(norm));
  const p = "model.layers.0.";
  // 2 heads and 1 key/value head of size 4: q [8, 8], k and v [4, 8].
  await w.add(`${p}self_attn.q_proj.weight`, "F32", [H, H], bytes(f32(H * H, rnd)));
  for (const n of ["k_proj", "v_proj"]) {
    await w.add(`${p}self_attn.${n}.weight`, "F32", [4, H], bytes(f32(4 * H, rnd)));
  }
  await w.add(`${p}self_attn.o_proj.weight`, "F32", [H, H], bytes(new Float32Array(H * H)));
  await w.add(`${p}mlp.gate_proj.weight`, "F32", [16, H], bytes(f32(16 * H, rnd)));
  await w.add(`${p}mlp.up_proj.weight`, "F32", [16, H], bytes(f32(16 * H, rnd)));
  await w.add(`${p}mlp.down_proj.weight`, "F32", [H, 16], bytes(new Float32Array(16 * H)));
  await w.add(`${p}input_layernorm.weight`, "F32", [H], bytes(f32(H, () => 1)));
  await w.add(`${p}post_attention_layernorm.weight`, "F32", [H], bytes(f32(H, () => 1)));
  await w.finish();
  const cfg = JSON.parse(await Deno.readTextFile(`${STORIES}/config.json`));
  Object.assign(cfg, {
    hidden_size: H,
    intermediate_size: 16,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    head_dim: 4,
    max_position_embeddings: 64,
  });
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
  for (
    const f of [
      "tokenizer.json",
      "tokenizer_config.json",
      "special_tokens_map.json",
      "generation_config.json",
    ]
  ) {
    await Deno.copyFile(`${STORIES}/${f}`, `${dir}/${f}`);
  }
  return { embed, norm };
}

/** log p(b | a) of the bigram model, f64. */
function bigram(embed: Float32Array, norm: Float32Array) {
  const cache = new Map<number, Float64Array>();
  return (a: number, b: number): number => {
    let lp = cache.get(a);
    if (!lp) {
      const x = embed.subarray(a * H, (a + 1) * H);
      const rms = 1 / Math.sqrt(x.reduce((s, v) => s + v * v, 0) / H + EPS);
      const h = Array.from(x, (v, i) => v * rms * norm[i]);
      const logits = Array.from({ length: V }, (_, t) => h.reduce((s, v, i) => s + v * embed[t * H + i], 0));
      const m = Math.max(...logits);
      const lse = m + Math.log(logits.reduce((s, l) => s + Math.exp(l - m), 0));
      lp = Float64Array.from(logits, (l) => l - lse);
      cache.set(a, lp);
    }
    return lp[b];
  };
}

/** Hand scoring of one request, with HFLM's left truncation to maxLength + 1 tokens. */
function handScore(lp: (a: number, b: number) => number, r: TokenRequest, maxLength: number) {
  const all = [...r.context, ...r.continuation].slice(-(maxLength + 1));
  const n = r.continuation.length;
  let sum = 0, greedy = true;
  for (let i = all.length - n; i < all.length; i++) {
    sum += lp(all[i - 1], all[i]);
    let best = 0;
    for (let t = 1; t < V; t++) if (lp(all[i - 1], t) > lp(all[i - 1], best)) best = t;
    greedy &&= best === all[i];
  }
  return { logprob: sum, isGreedy: greedy };
}

const dir = await Deno.makeTempDir({ prefix: "eval_bigram_" });
const weights = await writeBigramModel(dir);
const lp = bigram(weights.embed, weights.norm);
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("scoreRequests equals hand-computed bigram log-likelihoods for any batch size, with truncation", async () => {
  using m = await openEvalModel(dir);
  using be = new CpuBackend();
  using lm = await LoadedModel.load(be, m.spec, m.weights);
  const tok = m.tokenizer;
  const texts: [string, string][] = [
    ["Once upon a time", " there was a dog"],
    ["Lily", " and Ben"],
    ["The sun is hot.", " Tom ran to the big tree and sat down in the shade with his red ball."],
    ["a", " b"],
  ];
  const reqs = texts.map(([c, k]) => encodeRequest(tok, c, k, { addSpecialTokens: false }));
  // a greedy continuation: the argmax chain after "Once"
  const chain = [403];
  for (let i = 0; i < 3; i++) {
    let best = 0;
    for (let t = 1; t < V; t++) if (lp(chain.at(-1)!, t) > lp(chain.at(-1)!, best)) best = t;
    chain.push(best);
  }
  reqs.push({ context: chain.slice(0, 1), continuation: chain.slice(1) });
  for (const maxLength of [64, 32]) {
    const expected = reqs.map((r) => handScore(lp, r, maxLength));
    for (const batchSize of [1, 3, 8]) {
      const got = await scoreRequests(lm, reqs, { maxLength, batchSize });
      got.forEach((g, i) => {
        assertClose(
          g.logprob,
          expected[i].logprob,
          2e-5,
          `request ${i}, max_length ${maxLength}, batch ${batchSize}`,
        );
        assertEquals(g.isGreedy, expected[i].isGreedy, `greedy ${i}`);
      });
    }
  }
  assertEquals((await scoreRequests(lm, reqs.slice(-1), { maxLength: 64, batchSize: 1 }))[0].isGreedy, true);
});

Deno.test("rolling log-likelihood = Σ over windows of hand-scored tokens, first one after BOS", async () => {
  using m = await openEvalModel(dir);
  using be = new CpuBackend();
  using lm = await LoadedModel.load(be, m.spec, m.weights);
  const ids = m.tokenizer.encode("Tom and Lily went to the park. They saw a big red ball.", {
    addSpecialTokens: false,
  });
  const windows = rollingWindows(ids, 1, 8);
  const got = await scoreRequests(lm, windows, { maxLength: 8, batchSize: 4 });
  let expected = lp(1, ids[0]);
  for (let i = 1; i < ids.length; i++) expected += lp(ids[i - 1], ids[i]);
  assertClose(got.reduce((s, r) => s + r.logprob, 0), expected, 2e-5);
});

Deno.test("two-item ARC fixture: runEvalTasks acc / acc_norm / stderr equal the hand computation", async () => {
  const data = await Deno.makeTempDir({ prefix: "eval_data_" });
  try {
    const docs = [
      {
        context: "Question: What did Lily see?\nAnswer:",
        choices: ["a big dog", "a cat", "the sun"],
        gold: 0,
      },
      { context: "Question: Where is Tom?\nAnswer:", choices: ["park", "in the house now"], gold: 1 },
    ];
    await Deno.writeTextFile(`${data}/arc_easy.jsonl`, docs.map((d) => JSON.stringify(d)).join("\n") + "\n");
    using m = await openEvalModel(dir);
    using be = new CpuBackend();
    const report = await runEvalTasks(be, m, m.tokenizer, { tasks: "arc_easy", dataDir: data, batchSize: 2 });
    const acc: number[] = [], accNorm: number[] = [];
    for (const d of docs) {
      const lls = d.choices.map((c) =>
        handScore(lp, encodeRequest(m.tokenizer, d.context, " " + c, { addSpecialTokens: false }), 64).logprob
      );
      const arg = (xs: number[]) => xs.indexOf(Math.max(...xs));
      acc.push(arg(lls) === d.gold ? 1 : 0);
      accNorm.push(arg(lls.map((l, i) => l / d.choices[i].length)) === d.gold ? 1 : 0);
    }
    const [r] = report.results;
    const metric = (n: string) => r.metrics.find((x) => x.name === n)!;
    assertEquals(metric("acc").value, (acc[0] + acc[1]) / 2);
    assertEquals(metric("acc_norm").value, (accNorm[0] + accNorm[1]) / 2);
    // n = 2: stderr = |a − b| / 2 (sample sd |a − b|/√2, over √2)
    assertClose(metric("acc").stderr!, Math.abs(acc[0] - acc[1]) / 2, 1e-15);
    assertEqualsInOrder(r.nSamples, { original: 2, effective: 2 });
  } finally {
    await Deno.remove(data, { recursive: true });
  }
});
