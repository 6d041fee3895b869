// WebGPU training and evaluation ops against the CPU reference: masked MSE (+gradient),
// cross-entropy, argmax with ties, column sums of squares, sign-SGD with clamp, device-side
// keepBest in both outcomes.
import {
  both,
  cpu,
  expectClose,
  expectEqual,
  gpuTest,
  openGpu,
  reportErrors,
  Rng,
} from "./webgpu_helpers.ts";

const be = await openGpu();

gpuTest("mseLoss with and without a row mask matches the CPU (loss and dy)", be, async (be) => {
  const rng = new Rng();
  const [rows, cols] = [37, 23];
  const y = rng.normal(rows * cols), t = rng.normal(rows * cols);
  const mask = Float32Array.from({ length: rows }, () => (rng.next() < 0.7 ? 1 : 0));
  const [gy, cy] = both(be, y, [rows, cols]);
  const [gt, ct] = both(be, t, [rows, cols]);
  const [gm, cm] = both(be, mask, [rows]);
  for (const withMask of [false, true]) {
    const g = be.mseLoss(gy, gt, withMask ? gm : undefined, 3.5);
    const c = cpu.mseLoss(cy, ct, withMask ? cm : undefined, 3.5);
    expectClose("mseLoss loss", await be.read(g.loss), await cpu.read(c.loss), 1e-5, rng);
    expectClose("mseLoss dy", await be.read(g.dy), await cpu.read(c.dy), 1e-6, rng);
  }
});

gpuTest("crossEntropy and argmaxRows match the CPU (ties pick the lowest index)", be, async (be) => {
  const rng = new Rng();
  const [n, V] = [13, 517];
  const logits = rng.normal(n * V, 4);
  // Row 0: a three-way tie for the maximum.
  logits[5] = logits[100] = logits[300] = 99;
  const targets = rng.ints(n, V);
  const [gl, cl] = both(be, logits, [n, V]);
  using gt = be.uploadInt(targets, [n]);
  using ce = be.crossEntropy(gl, gt);
  expectClose(
    "crossEntropy",
    await be.read(ce),
    await cpu.read(cpu.crossEntropy(cl, cpu.uploadInt(targets, [n]))),
    1e-5,
    rng,
  );
  using am = be.argmaxRows(gl);
  expectEqual("argmaxRows", await be.readInt(am), await cpu.readInt(cpu.argmaxRows(cl)), rng);
});

gpuTest("accumulateColumnSquares adds Σ x² per column like the CPU", be, async (be) => {
  const rng = new Rng();
  const [rows, cols] = [150, 37];
  const x = rng.normal(rows * cols), acc = rng.uniform(cols, 0, 2);
  const [gx, cx] = both(be, x, [rows, cols]);
  const [ga, ca] = both(be, acc, [cols]);
  be.accumulateColumnSquares(ga, gx);
  be.accumulateColumnSquares(ga, gx);
  cpu.accumulateColumnSquares(ca, cx);
  cpu.accumulateColumnSquares(ca, cx);
  expectClose("accumulateColumnSquares", await be.read(ga), await cpu.read(ca), 1e-5, rng);
});

gpuTest("signSgdStep with and without clamp equals the CPU exactly", be, async (be) => {
  const rng = new Rng();
  const p = rng.uniform(301, -0.6, 0.6), g = rng.normal(301);
  g[7] = 0;
  const [gp, cp] = both(be, p, [301]);
  const [gg, cg] = both(be, g, [301]);
  be.signSgdStep(gp, gg, 1 / 200);
  cpu.signSgdStep(cp, cg, 1 / 200);
  be.signSgdStep(gp, gg, 0.13, { lo: -0.5, hi: 0.5 });
  cpu.signSgdStep(cp, cg, 0.13, { lo: -0.5, hi: 0.5 });
  expectEqual("signSgdStep", await be.read(gp), await cpu.read(cp), rng);
  // lr as an f32 [1] tensor read on the device.
  const [glr, clr] = both(be, Float32Array.of(0.0037), [1]);
  be.signSgdStep(gp, gg, glr, { lo: -0.5, hi: 0.5 });
  cpu.signSgdStep(cp, cg, clr, { lo: -0.5, hi: 0.5 });
  expectEqual("signSgdStep (lr tensor)", await be.read(gp), await cpu.read(cp), rng);
});

gpuTest("keepBest copies on the device only when the loss improved", be, async (be) => {
  const rng = new Rng();
  const src = rng.uniform(70), dst = rng.uniform(70);
  using s = be.upload(src, [70]);
  using d = be.upload(dst, [70]);
  using d16 = be.upload(dst, [7, 10], "f16");
  using best = be.full([1], 0.5);
  using worse = be.full([1], 0.7);
  be.keepBest(worse, best, [[s, d]]);
  expectEqual("keepBest (worse): dst kept", await be.read(d), dst);
  expectEqual("keepBest (worse): best kept", await be.read(best), [0.5]);
  using better = be.full([1], 0.25);
  be.keepBest(better, best, [[s, d], [s, d16]]);
  expectEqual("keepBest (better): dst copied", await be.read(d), src);
  expectEqual("keepBest (better): f16 dst", await be.read(d16), Float32Array.from(src, Math.f16round));
  expectEqual("keepBest (better): best updated", await be.read(best), [0.25]);
});

gpuTest("capture() records an iteration once; replays equal running it directly", be, async (be) => {
  const rng = new Rng();
  const x = rng.normal(24 * 16), w = rng.normal(8 * 16), t = rng.normal(24 * 8);
  // Two copies of the state: one advanced by replays, one by direct calls.
  const make = () => ({
    x: be.upload(x, [24, 16]),
    w: be.upload(w, [8, 16]),
    t: be.upload(t, [24, 8]),
    total: be.full([1], 0),
    lr: be.upload(Float32Array.of(0.01), [1]),
  });
  const a = make(), b = make();
  const iteration = (s: typeof a) => {
    using y = be.matmul(s.x, s.w, { transB: true });
    const { loss, dy } = be.mseLoss(y, s.t, undefined, 1);
    using g = be.matmul(dy, s.x, { transA: true });
    be.signSgdStep(s.w, g, s.lr);
    be.accumulate(s.total, loss, 0.5);
    loss[Symbol.dispose]();
    dy[Symbol.dispose]();
  };
  using graph = be.capture(() => iteration(a));
  // A tensor allocated after the capture must never share a buffer the replays write.
  using outside = be.full([24, 8], 7);
  for (let i = 0; i < 3; i++) {
    graph.replay();
    iteration(b);
  }
  expectEqual("capture: weights after 3 replays", await be.read(a.w), await be.read(b.w), rng);
  expectEqual("capture: accumulated loss", await be.read(a.total), await be.read(b.total), rng);
  expectEqual(
    "capture: unrelated tensor untouched",
    await be.read(outside),
    new Float32Array(24 * 8).fill(7),
  );
});

reportErrors("webgpu_loss_test");
