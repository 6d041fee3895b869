/**
 * Graph-capture readiness: one SignRound-shaped iteration (fake-quant → linear → masked MSE →
 * keepBest → backward through the product and the quantizer → sign-SGD with clamps) captured as a
 * CUDA graph and replayed gives bit-for-bit the states that running it eagerly gives, and the
 * caching allocator reaches a steady state (no device allocation after the first iteration).
 */
import type { Tensor } from "../src/backend/backend.ts";
import type { CudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import { groupMinMax } from "../src/quant/int_quant.ts";
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
