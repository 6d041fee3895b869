/**
 * The threaded CPU backend against the single-threaded reference (`new CpuBackend()`), on fresh random
 * inputs large enough that every op is cut into several ranges:
 * - TypeScript kernels on 3 threads give the reference's bits for every op (each unit's arithmetic
 *   is the same however the work is cut);
 * - products through the CBLAS library stay within a stated relative error of the reference
 *   (skipped, with the reason printed, when no CBLAS library is installed);
 * - without a BLAS library the backend still works, and a named library that is missing is an error.
 */
import type { Backend, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { BackendError } from "../src/errors.ts";
import { Cblas, CblasUnavailableError } from "../ffi/blas/cblas.ts";
import {
  assert,
  assertEquals,
  assertRejects,
  assertSameNumbers,
  assertThrows,
  fixture,
  maxRelError,
} from "./assert.ts";
import { Rng } from "./webgpu_helpers.ts";
import { silentLog } from "../src/log.ts";
import type { BlockReport } from "../src/quant/pipeline.ts";
import { quantize } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";

let blasMissing: string | undefined;
try {
  using b = Cblas.open();
  console.log(`CBLAS: ${b.description} (${b.path})`);
} catch (e) {
  blasMissing = (e as Error).message;
  console.log(`skipping the BLAS comparisons: ${blasMissing} (apt-get install libopenblas0-pthread)`);
}

/** One op on a backend: returns every output, read back. */
type OpRun = (be: Backend, rng: Rng) => Promise<Float32Array[]>;

const read = (be: Backend, ...ts: Tensor[]) => Promise.all(ts.map((t) => be.read(t)));
const up = (be: Backend, x: Float32Array, shape: number[]) => be.upload(x, shape);
const geo = { batch: 3, seqLen: 67, nHeads: 4, nKvHeads: 2, headDim: 16, scale: 0.25 };
const quantParams = { bits: 4, groupSize: 32, sym: true, scaleDType: "f16" as const };

function quantState(be: Backend, rng: Rng, n: number, k: number) {
  const G = n * k / 32;
  return {
    v: up(be, rng.uniform(n * k, -0.5, 0.5), [n, k]),
    // Some α, β above 1 (clamped, no gradient).
    minScale: up(be, rng.uniform(G, 0.9, 1.1), [G]),
    maxScale: up(be, rng.uniform(G, 0.9, 1.1), [G]),
    wMin: up(be, rng.uniform(G, -0.3, 0), [G]),
    wMax: up(be, rng.uniform(G, 0, 0.3), [G]),
  };
}

/** Every op whose CPU implementation the pool splits, with inputs that span ≥ 3 ranges. */
const OPS: Record<string, OpRun> = {
  "matmul A·Bᵀ": (be, r) =>
    read(
      be,
      be.matmul(up(be, r.normal(257 * 67), [257, 67]), up(be, r.normal(65 * 67), [65, 67]), { transB: true }),
    ),
  "matmul A·B, alpha and beta into out": (be, r) => {
    const out = up(be, r.normal(257 * 65), [257, 65]);
    be.matmul(up(be, r.normal(257 * 67), [257, 67]), up(be, r.normal(67 * 65), [67, 65]), {
      out,
      alpha: 0.5,
      beta: 2,
    });
    return read(be, out);
  },
  "matmul Aᵀ·B": (be, r) =>
    read(
      be,
      be.matmul(up(be, r.normal(67 * 257), [67, 257]), up(be, r.normal(67 * 65), [67, 65]), { transA: true }),
    ),
  "matmul Aᵀ·Bᵀ": (be, r) =>
    read(
      be,
      be.matmul(up(be, r.normal(67 * 257), [67, 257]), up(be, r.normal(65 * 67), [65, 67]), {
        transA: true,
        transB: true,
      }),
    ),
  "add, addRowVector, accumulate": (be, r) => {
    const a = up(be, r.normal(1000 * 130), [1000, 130]), b = up(be, r.normal(1000 * 130), [1000, 130]);
    const c = be.add(a, b);
    be.addRowVector(c, up(be, r.normal(130), [130]));
    be.accumulate(a, c, 0.3);
    return read(be, c, a);
  },
  "rmsNorm and its backward": (be, r) => {
    const x = up(be, r.normal(1000 * 130), [1000, 130]), w = up(be, r.normal(130), [130]);
    return read(
      be,
      be.rmsNorm(x, w, 1e-5),
      be.rmsNormBackward(x, w, up(be, r.normal(1000 * 130), [1000, 130]), 1e-5),
    );
  },
  "rope forward and inverse": async (be, r) => {
    const x = up(be, r.normal(51 * 64 * 64), [51 * 64, 8 * 8]);
    const cos = up(be, r.uniform(80 * 4), [80, 4]), sin = up(be, r.uniform(80 * 4), [80, 4]);
    be.rope(x, cos, sin, { batch: 51, seqLen: 64, nHeads: 8, headDim: 8, posOffset: 3 });
    const fwd = await be.read(x);
    be.rope(x, cos, sin, { batch: 51, seqLen: 64, nHeads: 8, headDim: 8 }, true);
    return [fwd, await be.read(x)];
  },
  "attention forward and backward (GQA)": (be, r) => {
    const rows = geo.batch * geo.seqLen;
    const q = up(be, r.normal(rows * 64), [rows, 64]);
    const k = up(be, r.normal(rows * 32), [rows, 32]), v = up(be, r.normal(rows * 32), [rows, 32]);
    const { out, lse } = be.attention(q, k, v, geo);
    const { dq, dk, dv } = be.attentionBackward(
      q,
      k,
      v,
      out,
      lse,
      up(be, r.normal(rows * 64), [rows, 64]),
      geo,
    );
    return read(be, out, lse, dq, dk, dv);
  },
  "siluMul and its backward": (be, r) => {
    const g = up(be, r.normal(700 * 172), [700, 172]), u = up(be, r.normal(700 * 172), [700, 172]);
    const { dg, du } = be.siluMulBackward(g, u, up(be, r.normal(700 * 172), [700, 172]));
    return read(be, be.siluMul(g, u), dg, du);
  },
  "crossEntropy and argmaxRows": async (be, r) => {
    const logits = up(be, r.normal(300 * 517, 3), [300, 517]);
    const ids = be.uploadInt(Int32Array.from({ length: 300 }, (_, i) => (i * 37) % 517), [300]);
    const am = Float32Array.from(await be.readInt(be.argmaxRows(logits)));
    return [...await read(be, be.crossEntropy(logits, ids)), am];
  },
  "mseLoss with a row mask, signSgdStep with clamp": (be, r) => {
    const y = up(be, r.normal(1000 * 130), [1000, 130]), t = up(be, r.normal(1000 * 130), [1000, 130]);
    const mask = up(be, Float32Array.from({ length: 1000 }, (_, i) => (i % 7 ? 1 : 0)), [1000]);
    const { loss, dy } = be.mseLoss(y, t, mask, 1000);
    be.signSgdStep(y, dy, 0.01, { lo: -0.5, hi: 0.5 });
    return read(be, loss, dy, y);
  },
  "accumulateColumnSquares": (be, r) => {
    const acc = up(be, r.uniform(300, 0, 1), [300]);
    be.accumulateColumnSquares(acc, up(be, r.normal(700 * 300), [700, 300]));
    return read(be, acc);
  },
  "fakeQuant, its backward, quantizeWeights": async (be, r) => {
    const w = up(be, r.normal(512 * 256, 0.1), [512, 256]), st = quantState(be, r, 512, 256);
    const wq = be.fakeQuant(w, st, quantParams);
    const g = be.fakeQuantBackward(w, st, quantParams, up(be, r.normal(512 * 256), [512, 256]));
    const q = await be.quantizeWeights(w, st, quantParams);
    return [...await read(be, wq, g.dv, g.dMinScale, g.dMaxScale), Float32Array.from(q.codes), q.scales];
  },
  "groupMinMax and optRtnScales (with an importance matrix)": (be, r) => {
    const w = up(be, r.normal(512 * 256, 0.1), [512, 256]);
    const { wMin, wMax } = be.groupMinMax!(w, 32);
    return read(be, wMin, wMax, be.optRtnScales!(w, up(be, r.uniform(256, 0, 1), [256]), 32, 3));
  },
};

async function runOn(be: Backend, op: OpRun, seed: number): Promise<Float32Array[]> {
  return await op(be, new Rng(seed));
}

Deno.test("every op on 3 threads (TypeScript kernels) gives the single-threaded bits", async () => {
  using ref = new CpuBackend();
  using thr = await CpuBackend.create({ threads: 3, blas: "none" });
  assertEquals(thr.threads, 3);
  for (const [name, op] of Object.entries(OPS)) {
    const [a, b] = [await runOn(ref, op, 7), await runOn(thr, op, 7)];
    a.forEach((x, i) => assertSameNumbers(b[i], x, `${name} output ${i}`));
  }
});

/**
 * max |Δ| / max |ref| the BLAS path may differ by: f32 products of 67 terms summed in another order
 * (measured ≤ 3e-7); attention's products are f64 sums rounded to f32, as in the reference (measured 0).
 */
const BLAS_BOUNDS: Record<string, number> = { matmul: 2e-6, attention: 1e-6 };

Deno.test({
  name:
    `every op with the CBLAS library on 2 threads: matmul within ${BLAS_BOUNDS.matmul}, attention within ${BLAS_BOUNDS.attention} of the reference, the rest exact`,
  ignore: blasMissing !== undefined,
  fn: async () => {
    using ref = new CpuBackend();
    using be = await CpuBackend.create({ threads: 2, blas: "auto" });
    assert(be.blas, "a CBLAS library was found");
    for (const [name, op] of Object.entries(OPS)) {
      const [a, b] = [await runOn(ref, op, 11), await runOn(be, op, 11)];
      const bound = BLAS_BOUNDS[name.split(" ")[0]];
      a.forEach((x, i) => {
        if (bound === undefined) return assertSameNumbers(b[i], x, `${name} output ${i}`);
        const err = maxRelError(b[i], x);
        assert(err <= bound, `${name} output ${i}: ${err} > ${bound}`);
      });
    }
  },
});

Deno.test({
  name: "f64: products (cblas_dgemm) and tiled attention match the TypeScript f64 reference within 1e-13",
  ignore: blasMissing !== undefined,
  fn: async () => {
    using ref = new CpuBackend({ precision: "f64" });
    using be = await CpuBackend.create({ precision: "f64", threads: 2 });
    assert(be.blas?.hasDgemm, "the library has cblas_dgemm");
    const f64 = (t: Tensor) => Float64Array.from((t as unknown as { f: Float64Array }).f);
    const run = (b: Backend) => {
      const r = new Rng(3), rows = geo.batch * geo.seqLen;
      const x = b.upload(r.normal(123 * 77), [123, 77]), y = b.upload(r.normal(45 * 77), [45, 77]);
      const q = b.upload(r.normal(rows * 64), [rows, 64]);
      const k = b.upload(r.normal(rows * 32), [rows, 32]), v = b.upload(r.normal(rows * 32), [rows, 32]);
      const { out, lse } = b.attention(q, k, v, geo);
      const g = b.attentionBackward(q, k, v, out, lse, b.upload(r.normal(rows * 64), [rows, 64]), geo);
      return [b.matmul(x, y, { transB: true }), out, lse, g.dq, g.dk, g.dv].map(f64);
    };
    const [a, b] = [run(ref), run(be)];
    a.forEach((x, i) => {
      const err = maxRelError(b[i], x);
      assert(err <= 1e-13, `f64 output ${i}: ${err}`);
    });
  },
});

Deno.test("without a BLAS library the backend runs the TypeScript products; a named library that is missing is an error", async () => {
  using ts = await CpuBackend.create({ threads: 2, blas: "none" });
  assertEquals(ts.blas, undefined);
  assert(ts.device.includes("TypeScript GEMM"), ts.device);
  const prev = Deno.env.get("AUTOROUND_BLAS");
  Deno.env.set("AUTOROUND_BLAS", "none");
  try {
    using env = await CpuBackend.create({ threads: 1 });
    assertEquals(env.blas, undefined, "AUTOROUND_BLAS=none");
    assertEquals(env.threads, 1);
  } finally {
    if (prev === undefined) Deno.env.delete("AUTOROUND_BLAS");
    else Deno.env.set("AUTOROUND_BLAS", prev);
  }
  await assertRejects(
    () => CpuBackend.create({ threads: 1, blas: "/nonexistent/libcblas.so.3" }),
    BackendError,
    "/nonexistent",
  );
  assertThrows(() => Cblas.open("/nonexistent/libopenblas.so.0"), CblasUnavailableError, "no CBLAS library");
});

Deno.test("threaded: every buffer an op allocates goes back to the free lists and is reused; a disposed tensor cannot be used", async () => {
  using be = await CpuBackend.create({ threads: 2, blas: "none" });
  const r = new Rng(5), rows = geo.batch * geo.seqLen;
  const x = be.upload(r.normal(rows * 64), [rows, 64]), w = be.upload(r.normal(48 * 64), [48, 64]);
  const k = be.upload(r.normal(rows * 32), [rows, 32]), ln = be.full([48], 1);
  const live0 = be.memoryStats().liveBytes;
  let peak = 0;
  for (let i = 0; i < 6; i++) {
    // The transposed products allocate scratch; the other ops allocate their outputs.
    using y = be.matmul(x, w, { transB: true });
    using g = be.matmul(y, x, { transA: true });
    using h = be.matmul(y, w);
    const at = be.attention(h, k, k, geo);
    using a = at.out, lse = at.lse;
    using n = be.rmsNorm(y, ln, 1e-5);
    const mse = be.mseLoss(h, a, undefined, 1);
    using loss = mse.loss, dy = mse.dy;
    assert(g.size > 0 && n.size > 0 && lse.size > 0 && loss.size > 0 && dy.size > 0);
    if (i === 1) peak = be.memoryStats().peakLiveBytes;
  }
  const s = be.memoryStats();
  assertEquals(s.liveBytes, live0, "every buffer went back");
  assertEquals(s.peakLiveBytes, peak, "later iterations reuse the first ones' buffers");
  const t = be.full([2], 0);
  t[Symbol.dispose]();
  assertThrows(() => be.add(t, t), BackendError, "use of a disposed tensor");
});

/** A short SignRound run on stories260K; returns the fake-quantized weights and the block reports. */
async function signRound(be: Backend) {
  const out = await Deno.makeTempDir();
  const fake = new Map<string, Float32Array>();
  const blocks: BlockReport[] = [];
  try {
    await quantize({
      model: fixture("stories260K"),
      outputDir: `${out}/q`,
      formats: ["auto_round"],
      scheme: resolveScheme("W4A16", { groupSize: 32 }),
      iters: 6,
      nsamples: 8,
      seqlen: 64,
      batchSize: 4,
      dataset: fixture("tinystories-calib.jsonl"),
      maxShardSize: 5e9,
      backend: be,
      onBlock: (r) => blocks.push(r),
      onFakeWeight: (n, v) => fake.set(n, v),
    }, silentLog);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
  return { fake, blocks };
}

Deno.test("SignRound on stories260K: 2 threads give the reference's weights bit for bit; with BLAS the losses within 1e-5 (iteration 0) / 1e-3 (best) and ≥ 99% of the weights", async () => {
  using ref = new CpuBackend();
  using thr = await CpuBackend.create({ threads: 2, blas: "none" });
  const a = await signRound(ref), b = await signRound(thr);
  assertEquals([...b.fake.keys()], [...a.fake.keys()]);
  for (const [name, w] of a.fake) assertSameNumbers(b.fake.get(name)!, w, name);
  assertEquals(b.blocks.map((r) => r.lossBest), a.blocks.map((r) => r.lossBest));
  if (blasMissing) return console.log(`BLAS part skipped: ${blasMissing}`);
  using blas = await CpuBackend.create({ threads: 2 });
  const c = await signRound(blas);
  let same = 0, total = 0;
  for (const [name, w] of a.fake) {
    const x = c.fake.get(name)!;
    for (let i = 0; i < w.length; i++) same += x[i] === w[i] ? 1 : 0;
    total += w.length;
  }
  // Products summed in another order move the losses by ~1e-6 (relative); a rounding offset whose
  // gradient is within that of zero may step the other way, so a few weights may differ.
  const rel = (x: number, y: number) => Math.abs(x - y) / Math.abs(y);
  c.blocks.forEach((r, i) => {
    const ref = a.blocks[i];
    assert(
      rel(r.lossStart!, ref.lossStart!) <= 1e-5,
      `block ${i} loss at iteration 0: ${r.lossStart} vs ${ref.lossStart}`,
    );
    assert(rel(r.lossBest!, ref.lossBest!) <= 1e-3, `block ${i} best loss: ${r.lossBest} vs ${ref.lossBest}`);
  });
  assert(same / total >= 0.99, `${same} of ${total} weights identical`);
});
