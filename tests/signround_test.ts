/**
 * SignRound on the real stories260K model at CI size (16 samples × 64 tokens): the tuning lowers
 * every block's loss and beats RTN, it is deterministic for a seed, its lr schedule and sampler are
 * auto-round's, and the written auto_round folder evaluates exactly like the tuned in-memory model.
 */
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend, CpuTensor } from "../src/backend/cpu/cpu_backend.ts";
import { documentStream, windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint, overlaySource } from "../src/io/checkpoint.ts";
import { PyRandom } from "../src/io/pyrandom.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import type { QuantizeOptions } from "../src/quant/quantize.ts";
import { autoLr } from "../src/quant/signround.ts";
import { IndexSampler } from "../src/quant/index_sampler.ts";
import { assert, assertAlmostEquals, assertEquals, assertSameNumbers, fixture } from "./assert.ts";
import { quantizeStories } from "./stories_quantize.ts";

const tok = await Tokenizer.fromDir(fixture("stories260K"));
const evalIds = documentStream(await Deno.readTextFile(fixture("stories260K/eval.txt")), (l) => tok.encode(l))
  .subarray(0, 24 * 256);

function run(opts: Partial<QuantizeOptions>, be: Backend = new CpuBackend()) {
  return quantizeStories(be, opts);
}

async function ppl(be: Backend, dir: string, fake?: Map<string, Float32Array>): Promise<number> {
  using ck = await openCheckpoint(dir);
  using m = await LoadedModel.load(be, ck.spec, fake ? overlaySource(ck.weights, fake) : ck.weights, {
    positions: 256,
  });
  return (await windowedPerplexity(m, evalIds, { seqlen: 256 })).ppl;
}

Deno.test("SignRound W2G32 lowers every block's loss, beats RTN, and its export evaluates like the tuned model", async () => {
  using be = new CpuBackend();
  const sr = await run({}, be);
  const rtn = await run({ iters: 0, disableOptRtn: true }, be);
  try {
    assertEquals(sr.blocks.length, 5);
    for (const b of sr.blocks) {
      assert(b.lossBest! < b.lossStart!, `block ${b.block}: ${b.lossStart} → ${b.lossBest}`);
      assertEquals(b.quantized.length, 4);
    }
    const fp = await ppl(be, fixture("stories260K"));
    const pSr = await ppl(be, sr.dir), pRtn = await ppl(be, rtn.dir);
    const pMem = await ppl(be, fixture("stories260K"), sr.fake);
    console.log(
      `  24 windows: fp ${fp.toFixed(4)}, RTN ${pRtn.toFixed(4)}, SignRound ${pSr.toFixed(4)} (in memory ${
        pMem.toFixed(4)
      })`,
    );
    assert(pSr < pRtn, "SignRound must beat RTN at 2 bits");
    assertAlmostEquals(pSr, pMem, 1e-9 * pMem);
    using q = await openCheckpoint(sr.dir);
    for (const [name, v] of sr.fake) assertSameNumbers(await q.weights.readF32(name), v, name);
    const qc = q.config.quantization_config as Record<string, unknown>;
    assertEquals([qc.iters, qc.lr, qc.minmax_lr, qc.enable_quanted_input], [12, 1 / 12, 1 / 12, true]);
  } finally {
    await sr.cleanup();
    await rtn.cleanup();
  }
});

Deno.test("SignRound is deterministic for a seed and changes with it", async () => {
  const opts = { iters: 6, nsamples: 12 };
  const a = await run(opts), b = await run(opts), c = await run({ ...opts, seed: 7 });
  try {
    const hist = (r: typeof a) => r.blocks.map((x) => [x.lossStart, x.lossBest, x.bestIter]);
    assertEquals(hist(a), hist(b));
    for (const [n, v] of a.fake) assertSameNumbers(b.fake.get(n)!, v, n);
    assert(JSON.stringify(hist(a)) !== JSON.stringify(hist(c)), "another seed samples other batches");
  } finally {
    for (const r of [a, b, c]) await r.cleanup();
  }
});

Deno.test("learning rate: auto-round's rule and linear decay to 0 over iters", async () => {
  assertEquals(autoLr(200, 2), 1 / 200);
  assertEquals(autoLr(1000, 3), 2 / 1000);
  assertEquals(autoLr(1000, 4), 1 / 1000);
  const be = new CpuBackend();
  const lrs: number[] = [];
  const orig = be.signSgdStep.bind(be);
  be.signSgdStep = (p, g, lr, clamp) => {
    lrs.push(lr instanceof CpuTensor ? lr.f[0] : lr as number);
    orig(p, g, lr, clamp);
  };
  const r = await run({ iters: 4, lr: 0.02, minmaxLr: 0.01, nsamples: 8 }, be);
  await r.cleanup();
  // per block and iteration: V at lr·(1 − i/4), α and β at minmax_lr·(1 − i/4), for 4 Linears
  const first = lrs.slice(0, 12), lastIter = lrs.slice(36, 48);
  // (the rates live in f32 device tensors, as torch applies them to f32 parameters)
  const f = (xs: number[]) => xs.map(Math.fround);
  assertEquals(first, f(Array(4).fill([0.02, 0.01, 0.01]).flat()));
  assertEquals(lastIter, f(Array(4).fill([0.02 * 0.25, 0.01 * 0.25, 0.01 * 0.25]).flat()));
  assertEquals(lrs.length, 5 * 4 * 4 * 3);
});

Deno.test("IndexSampler: auto-round's batches (one shuffle, reshuffle when fewer than a batch remain)", () => {
  const s = new IndexSampler(10, 4, new PyRandom(42));
  const py = new PyRandom(42), order = [...Array(10).keys()];
  py.shuffle(order);
  assertEquals(s.next(), order.slice(0, 4));
  assertEquals(s.next(), order.slice(4, 8));
  py.shuffle(order); // 2 left < 4: reshuffle, drop the rest
  assertEquals(s.next(), order.slice(0, 4));
});

Deno.test("gradient accumulation and host-spilled activations give a valid run", async () => {
  const r = await run({
    iters: 4,
    batchSize: 4,
    gradientAccumulateSteps: 2,
    nsamples: 8,
    lowGpuMemUsage: true,
  });
  const d = await run({ iters: 4, batchSize: 4, gradientAccumulateSteps: 2, nsamples: 8 });
  try {
    for (const b of r.blocks) assert(Number.isFinite(b.lossBest!) && b.lossBest! <= b.lossStart!);
    // Where the activations live must not change any number.
    assertEquals(r.blocks.map((b) => b.lossBest), d.blocks.map((b) => b.lossBest));
    for (const [n, v] of r.fake) assertSameNumbers(d.fake.get(n)!, v, n);
  } finally {
    await r.cleanup();
    await d.cleanup();
  }
});
