/**
 * Graph-capture readiness: one SignRound-shaped iteration (fake-quant → linear → masked MSE →
 * keepBest → backward through the product and the quantizer → sign-SGD with clamps) captured as a
 * CUDA graph and replayed gives bit-for-bit the states that running it eagerly gives, and the
 * caching allocator reaches a steady state (no device allocation after the first iteration).
 * Backend.capture(): device-side learning rates and sample indices change between replays, tensors
 * allocated inside a capture stay valid (also after the graph is gone), a disposed graph's memory
 * is reused by the next capture, and the flash attention kernels capture like any other.
 */
import type { Tensor } from "../src/backend/backend.ts";
import type { CudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import { groupMinMax } from "../src/qmath/int_quant.ts";
import { cuda, cudaTest, expectEqual, freshSeed, Rng } from "./cuda_helpers.ts";

const [ROWS, K, N, G] = [256, 128, 64, 1];

interface Problem {
  x: Tensor;
  w: Tensor;
  target: Tensor;
  mask: Tensor;
  v: Tensor;
  minScale: Tensor;
  maxScale: Tensor;
  wMin: Tensor;
  wMax: Tensor;
  best: Tensor;
  bestV: Tensor;
}

function setup(be: CudaBackend, seed: number): Problem {
  const rng = new Rng(seed);
  const w = rng.normal(N * K, 0.05);
  const { wMin, wMax } = groupMinMax(w, { n: N, k: K, g: K });
  return {
    x: be.upload(rng.normal(ROWS * K), [ROWS, K], "bf16"),
    w: be.upload(w, [N, K], "bf16"),
    target: be.upload(rng.normal(ROWS * N), [ROWS, N], "bf16"),
    mask: be.upload(Float32Array.from({ length: ROWS }, (_, i) => (i % 7 ? 1 : 0)), [ROWS]),
    v: be.full([N, K], 0),
    minScale: be.full([N * G], 1),
    maxScale: be.full([N * G], 1),
    wMin: be.upload(wMin, [N * G]),
    wMax: be.upload(wMax, [N * G]),
    best: be.full([1], 1e30),
    bestV: be.full([N, K], 0),
  };
}

function iteration(be: CudaBackend, p: Problem): void {
  const state = { v: p.v, minScale: p.minScale, maxScale: p.maxScale, wMin: p.wMin, wMax: p.wMax };
  const qp = { bits: 4, groupSize: K, sym: true, scaleDType: "f16" as const };
  using wq = be.fakeQuant(p.w, state, qp);
  using y = be.matmul(p.x, wq, { transB: true });
  const { loss, dy } = be.mseLoss(y, p.target, p.mask, 1000);
  be.keepBest(loss, p.best, [[p.v, p.bestV]]);
  using dwq = be.matmul(dy, p.x, { transA: true });
  const g = be.fakeQuantBackward(p.w, state, qp, dwq);
  be.signSgdStep(p.v, g.dv, 0.005, { lo: -0.5, hi: 0.5 });
  be.signSgdStep(p.minScale, g.dMinScale, 0.005, { lo: 0, hi: 1 });
  be.signSgdStep(p.maxScale, g.dMaxScale, 0.005, { lo: 0, hi: 1 });
  for (const t of [loss, dy, g.dv, g.dMinScale, g.dMaxScale]) t[Symbol.dispose]();
}

cudaTest("a SignRound iteration replayed from a CUDA graph equals eager execution bit for bit", async () => {
  const be = cuda();
  const seed = freshSeed();
  const eager = setup(be, seed), graphed = setup(be, seed);
  const steps = 6;
  iteration(be, eager);
  await be.sync();
  const steady = be.memoryStats().liveBytes + be.memoryStats().cachedBytes;
  for (let i = 1; i < steps; i++) iteration(be, eager);
  await be.sync();
  const after = be.memoryStats().liveBytes + be.memoryStats().cachedBytes;
  console.log(`  allocator: ${steady} bytes after one iteration, ${after} after ${steps}`);
  if (after !== steady) throw new Error(`the allocator grew from ${steady} to ${after} bytes`);

  using graph = be.captureGraph(() => iteration(be, graphed));
  for (let i = 0; i < steps; i++) graph.replay();
  await be.sync();
  for (const key of ["v", "minScale", "maxScale", "best", "bestV"] as const) {
    expectEqual(`graph replay ${key}`, await be.read(graphed[key]), await be.read(eager[key]));
  }
  const best = (await be.read(eager.best))[0];
  if (!(best < 1e30)) throw new Error("keepBest never fired");
});

cudaTest(
  "capture(): replays read the lr and sample-index tensors the host wrote last, like eager runs",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    const [S, R, C, B, steps] = [6, 4, 16, 2, 5];
    using src = be.upload(rng.normal(S * R * C), [S * R, C], "bf16");
    const start = rng.uniform(B * R * C, -0.4, 0.4);
    const picks = Array.from(
      { length: steps },
      () => [Math.floor(rng.next() * S), Math.floor(rng.next() * S)],
    );
    const lrs = Array.from({ length: steps }, (_, i) => Math.fround(0.05 * (1 - i / steps)));
    // Eager: host numbers.
    using pe = be.upload(start, [B * R * C]);
    using xe = be.full([B * R, C], 0, "bf16");
    for (let i = 0; i < steps; i++) {
      be.gatherSamples(xe, src, picks[i], R);
      using g = be.view(xe, [B * R * C]);
      be.signSgdStep(pe, g, lrs[i], { lo: -0.3, hi: 0.3 });
    }
    // Captured: device tables copied into fixed tensors before each replay, as tuneBlock does.
    using table = be.uploadInt(Int32Array.from(picks.flat()), [steps, B]);
    using lrTable = be.upload(Float32Array.from(lrs), [steps, 1]);
    using idx = be.uploadInt(new Int32Array(B), [B]);
    using lr = be.full([1], 0);
    using pg = be.upload(start, [B * R * C]);
    using xg = be.full([B * R, C], 0, "bf16");
    let inside: Tensor | undefined;
    const graph = be.capture(() => {
      be.gatherSamples(xg, src, idx, R);
      using g = be.view(xg, [B * R * C]);
      be.signSgdStep(pg, g, lr, { lo: -0.3, hi: 0.3 });
      inside?.[Symbol.dispose]();
      inside = be.add(pg, pg); // allocated inside the capture, read after the replays
    });
    for (let i = 0; i < steps; i++) {
      using row = be.rows(table, i, 1), lrRow = be.rows(lrTable, i, 1);
      be.copy(idx, row);
      be.copy(lr, lrRow);
      graph.replay();
    }
    const twice = await be.read(inside!);
    expectEqual("captured gather + sign-SGD", await be.read(pg), await be.read(pe));
    expectEqual("tensor allocated in the capture", twice, (await be.read(pe)).map((x) => Math.fround(2 * x)));
    graph[Symbol.dispose]();
    // It outlives the graph and is freed like any tensor.
    expectEqual("tensor allocated in the capture, after dispose", await be.read(inside!), twice);
    inside![Symbol.dispose]();
  },
);

cudaTest(
  "capture(): a disposed graph's memory returns to the allocator and the next capture reuses it",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    using x = be.upload(rng.normal(512 * 256), [512, 256], "bf16");
    using w = be.upload(rng.normal(384 * 256, 0.05), [384, 256], "bf16");
    using out = be.full([512, 384], 0, "bf16");
    const fn = () => {
      using y = be.matmul(x, w, { transB: true });
      using z = be.siluMul(y, y);
      be.copy(out, z);
    };
    fn();
    await be.sync();
    const cycle = async () => {
      const g = be.capture(fn);
      g.replay();
      g[Symbol.dispose]();
      await be.sync();
      return be.memoryStats().driverBytes;
    };
    const first = await cycle(), second = await cycle(), third = await cycle();
    console.log(`  driver bytes after capture/dispose cycles: ${first}, ${second}, ${third}`);
    if (second !== first || third !== first) {
      throw new Error(
        `device memory grew: ${first} → ${second} → ${third}`,
      );
    }
  },
);

cudaTest("flash attention forward and backward captured in a graph equal eager execution", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const shape = { batch: 2, seqLen: 192, nHeads: 4, nKvHeads: 2, headDim: 64, scale: 1 / 8 };
  const rows = shape.batch * shape.seqLen;
  using q = be.upload(rng.normal(rows * 4 * 64), [rows, 4 * 64], "bf16");
  using k = be.upload(rng.normal(rows * 2 * 64), [rows, 2 * 64], "bf16");
  using v = be.upload(rng.normal(rows * 2 * 64), [rows, 2 * 64], "bf16");
  using dOut = be.upload(rng.normal(rows * 4 * 64), [rows, 4 * 64], "bf16");
  const results = [q, k, v].map((t) => be.full(t.shape, NaN, "bf16"));
  const pass = () => {
    const { out, lse } = be.attention(q, k, v, shape);
    const g = be.attentionBackward(q, k, v, out, lse, dOut, shape);
    [g.dq, g.dk, g.dv].forEach((t, i) => be.copy(results[i], t));
    for (const t of [out, lse, g.dq, g.dk, g.dv]) t[Symbol.dispose]();
  };
  using graph = be.capture(pass); // first use of the backward kernels happens inside the capture
  graph.replay();
  const graphed = await Promise.all(results.map((t) => be.read(t)));
  pass();
  const eager = await Promise.all(results.map((t) => be.read(t)));
  for (const [i, name] of ["dq", "dk", "dv"].entries()) expectEqual(`captured ${name}`, graphed[i], eager[i]);
  for (const t of results) t[Symbol.dispose]();
});
