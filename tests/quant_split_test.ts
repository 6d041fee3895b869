/**
 * Splitting forced by a device's largest buffer (Backend.maxTensorBytes), checked on the CPU
 * reference with the same cap a GPU would impose: activation stores split into segments of whole
 * samples give exactly the unsplit values, and a batch run as several passes tunes like the whole
 * batch (in f64 only summation order differs, so losses and the quantized weights match).
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { DeviceError } from "../src/errors.ts";
import { DeviceActivations, samplesPerPass } from "../src/quant/activations.ts";
import type { QuantizeOptions } from "../src/quant/quantize.ts";
import { assert, assertEquals, assertRejects, assertSameNumbers, assertThrows } from "./assert.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";

const T = 4, H = 6, N = 10;

Deno.test("segmented activations: reads across segments, writes and gathers equal one unsplit store", async () => {
  using whole = new CpuBackend();
  // 3 samples of 4 × 6 f32 (96 bytes each) per tensor: 10 samples make 4 segments.
  using split = new CpuBackend({ maxTensorBytes: 300 });
  const values = Float32Array.from({ length: N * T * H }, (_, i) => Math.sin(i * 0.7) * 3);
  using a = new DeviceActivations(whole, N, T, H);
  using b = new DeviceActivations(split, N, T, H);
  assertEquals(a.segments.length, 1);
  assertEquals(b.segments.map((s) => [s.first, s.count]), [[0, 3], [3, 3], [6, 3], [9, 1]]);
  // Writes of one sample each, then reads that straddle segments.
  for (let s = 0; s < N; s++) {
    using x = whole.upload(values.subarray(s * T * H, (s + 1) * T * H), [T, H]);
    using y = split.upload(values.subarray(s * T * H, (s + 1) * T * H), [T, H]);
    await a.write(s, x);
    await b.write(s, y);
  }
  for (const [start, count] of [[0, 1], [2, 2], [5, 3], [9, 1]]) {
    using ra = await a.read(start, count);
    using rb = await b.read(start, count);
    assertSameNumbers(await split.read(rb), await whole.read(ra), `read ${start}+${count}`);
  }
  // Gathers by host indices and by a device index tensor, in any order, repeats allowed.
  const idx = [7, 0, 3];
  using ga = whole.full([idx.length * T, H], -1);
  using gb = split.full([idx.length * T, H], -1);
  await a.gather(ga, idx);
  await b.gather(gb, idx);
  const want = await whole.read(ga);
  assertSameNumbers(await split.read(gb), want, "gather");
  using gt = split.full([idx.length * T, H], -1);
  using it = split.uploadInt(Int32Array.from(idx), [idx.length]);
  b.gatherByTensor(gt, it);
  assertSameNumbers(await split.read(gt), want, "gatherByTensor");
});

Deno.test("gatherSamples with firstSample copies the samples a segment holds and leaves the rest", async () => {
  using be = new CpuBackend();
  using seg = be.upload(Float32Array.from({ length: 3 * 2 }, (_, i) => i + 1), [3, 2]); // samples 5, 6, 7
  using dst = be.full([4, 2], -1);
  be.gatherSamples(dst, seg, [6, 1, 7, 9], 1, 5);
  assertEquals([...await be.read(dst)], [3, 4, -1, -1, 5, 6, -1, -1]);
  assertThrows(() => be.gatherSamples(dst, seg, [3], 1), Error, "outside");
});

Deno.test("a sample larger than the device's largest buffer is a DeviceError naming the sizes", () => {
  using be = new CpuBackend({ maxTensorBytes: 64 });
  const e = assertThrows(() => new DeviceActivations(be, N, T, H), DeviceError);
  assert(e.message.includes("96 bytes") && e.message.includes("64 bytes"), e.message);
  assert(e.oneLine().includes("--seqlen"), e.oneLine());
});

const run = (opts: Partial<QuantizeOptions>, be: CpuBackend) => quantizeStoriesReports(be, opts);

Deno.test("a batch split into uneven passes by a buffer cap takes the whole batch's first step (f64)", async () => {
  // stories260K at 64 tokens: a sample's widest activation (172 columns, f32) is 44 KiB and its
  // hidden states 16 KiB. A 135 KiB cap runs each batch of 8 as passes of 3 + 3 + 2 samples and
  // splits the 16-sample stores into segments of 8 (batch reads straddle them). The first sign step
  // of every block starts from identical inputs, so it must pick identical signs: a wrong weight of
  // the short pass (e.g. 1/3 instead of 2/8) flips ~26 000 of them. Later steps may differ where a
  // gradient is near zero (summation order), as any two backends do, so one step is compared.
  const cap = 135 * 1024;
  using whole = new CpuBackend({ precision: "f64" });
  using split = new CpuBackend({ precision: "f64", maxTensorBytes: cap });
  assertEquals(samplesPerPass(split, { hidden: 64, intermediate: 172, nHeads: 8, headDim: 8 }, 64, 8), 3);
  const a = await run({ iters: 1, notUseBestMse: true }, whole);
  const b = await run({ iters: 1, notUseBestMse: true }, split);
  assertEquals(b.blocks.length, 5);
  for (const [n, v] of a.fake) assertSameNumbers(b.fake.get(n)!, v, n);
  for (const [i, x] of a.blocks.entries()) {
    // The logged loss is the whole batch's mean: the passes' means weighted by their shares.
    const rel = Math.abs(b.blocks[i].lossStart! - x.lossStart!) / x.lossStart!;
    assert(rel < 1e-12, `block ${i} loss: ${b.blocks[i].lossStart} vs ${x.lossStart} (rel ${rel})`);
  }
});

Deno.test("SignRound with split passes, segmented stores and host spill lowers every block's loss (f64)", async () => {
  using whole = new CpuBackend({ precision: "f64" });
  using split = new CpuBackend({ precision: "f64", maxTensorBytes: 135 * 1024 });
  const a = await run({}, whole);
  const b = await run({}, split);
  const c = await run({ lowGpuMemUsage: true }, split);
  for (const r of [b, c]) {
    for (const [i, x] of r.blocks.entries()) {
      assert(x.lossBest! < 0.7 * x.lossStart!, `block ${i}: ${x.lossStart} -> ${x.lossBest}`);
      // Same data, same recipe: the tuned losses land near the unsplit run's (measured: within 5%).
      const rel = Math.abs(x.lossBest! - a.blocks[i].lossBest!) / a.blocks[i].lossBest!;
      assert(rel < 0.15, `block ${i}: ${x.lossBest} vs unsplit ${a.blocks[i].lossBest}`);
    }
  }
  assertEquals(b.blocks[0].lossStart, a.blocks[0].lossStart);
});

Deno.test("quantize refuses a calibration sample wider than the device's largest buffer", async () => {
  using be = new CpuBackend({ maxTensorBytes: 8 * 1024 });
  const e = await assertRejects(() => run({ iters: 2 }, be), DeviceError);
  assert(e.oneLine().includes("16384 bytes") && e.oneLine().includes("try a smaller --seqlen"), e.oneLine());
});
