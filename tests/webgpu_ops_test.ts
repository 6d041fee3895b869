// WebGPU memory and elementwise ops, RMSNorm, RoPE, SiLU·mul and embedding against the CPU
// reference on fresh random inputs (odd sizes; f32 unless stated; outputs start as NaN).
import { BackendError } from "../src/errors.ts";
import { sizeClass } from "../src/backend/webgpu/buffer_pool.ts";
import { assert } from "./assert.ts";
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

gpuTest("upload/read round-trips f32, f16 and bf16 exactly as the CPU rounds them", be, async (be) => {
  const rng = new Rng();
  const x = rng.normal(1001, 3);
  for (const dtype of ["f32", "f16", "bf16"] as const) {
    const [g, c] = both(be, x, [7, 143], dtype);
    expectEqual(`upload/read ${dtype}`, await be.read(g), await cpu.read(c), rng);
  }
  using i = be.uploadInt(Int32Array.from([5, -3, 2 ** 30, 7]), [4]);
  expectEqual("uploadInt/readInt", await be.readInt(i), [5, -3, 2 ** 30, 7]);
});

gpuTest("memoryStats counts the pooled buffers: live, on the device, and the peak", be, async (be) => {
  be.resetPeakMemory();
  const before = be.memoryStats();
  const a = be.full([1000, 1000], 0, "f32"), b = be.full([3000], 0, "f32");
  const mid = be.memoryStats();
  // size classes: 4 000 000 B → 4 194 304 (steps of 2^21 / 8 above 2 MiB), 12 000 → 16 384 (a power of two)
  expectEqual("live bytes", [mid.liveBytes - before.liveBytes], [sizeClass(4e6) + sizeClass(12_000)]);
  assert(mid.deviceBytes - before.deviceBytes <= sizeClass(4e6) + sizeClass(12_000), "new device bytes");
  a[Symbol.dispose]();
  b[Symbol.dispose]();
  await be.sync();
  const after = be.memoryStats();
  expectEqual("live bytes after release", [after.liveBytes], [before.liveBytes]);
  assert(after.peakDeviceBytes >= mid.deviceBytes && after.peakDeviceBytes >= after.deviceBytes, "peak");
});

gpuTest("full, view and rows address the same storage as the CPU", be, async (be) => {
  using f = be.full([3, 5], 1.1, "f16");
  expectEqual("full f16", await be.read(f), await cpu.read(cpu.full([3, 5], 1.1, "f16")));
  using n = be.full([6], -7, "i32");
  expectEqual("full i32", await be.readInt(n), [-7, -7, -7, -7, -7, -7]);
  const rng = new Rng();
  const x = rng.uniform(9 * 4);
  const [g, c] = both(be, x, [9, 4]);
  using r = be.rows(be.view(g, [9, 4]), 3, 5);
  expectEqual("rows", await be.read(r), await cpu.read(cpu.rows(c, 3, 5)));
  using v = be.view(r, [20]);
  expectEqual("view of rows", await be.read(v), x.subarray(12, 32));
});

gpuTest("copy converts dtypes and writes into views; gatherSamples picks whole samples", be, async (be) => {
  const rng = new Rng();
  const x = rng.normal(3 * 50, 2);
  for (const [from, to] of [["f32", "f16"], ["f16", "f32"], ["f32", "bf16"], ["bf16", "f16"]] as const) {
    const [gs, cs] = both(be, x, [150], from);
    using gd = be.full([150], 0, to);
    using cd = cpu.full([150], 0, to);
    be.copy(gd, gs);
    cpu.copy(cd, cs);
    expectEqual(`copy ${from}→${to}`, await be.read(gd), await cpu.read(cd), rng);
  }
  using gi = be.uploadInt(Int32Array.from([1, 2, 3]), [3]);
  using gj = be.full([3], 0, "i32");
  be.copy(gj, gi);
  expectEqual("copy i32", await be.readInt(gj), [1, 2, 3]);
  // Samples of 3 rows × 5 columns; dst gets samples 3, 0, 3.
  const src = rng.uniform(4 * 3 * 5);
  const [gsrc, csrc] = both(be, src, [12, 5]);
  using gdst = be.full([9, 5], NaN);
  using cdst = cpu.full([9, 5], NaN);
  be.gatherSamples(gdst, gsrc, [3, 0, 3], 3);
  cpu.gatherSamples(cdst, csrc, [3, 0, 3], 3);
  expectEqual("gatherSamples", await be.read(gdst), await cpu.read(cdst), rng);
  // Indices on the device (a captured iteration gathers other samples on every replay).
  using gidx = be.uploadInt(Int32Array.from([1, 2, 1]), [3]);
  be.gatherSamples(gdst, gsrc, gidx, 3);
  cpu.gatherSamples(cdst, csrc, cpu.uploadInt(Int32Array.from([1, 2, 1]), [3]), 3);
  expectEqual("gatherSamples (index tensor)", await be.read(gdst), await cpu.read(cdst), rng);
});

gpuTest("add (also in place), accumulate and addRowVector match the CPU exactly in f32", be, async (be) => {
  const rng = new Rng();
  const a = rng.uniform(13 * 7), b = rng.uniform(13 * 7), bias = rng.uniform(7);
  const [ga, ca] = both(be, a, [13, 7]);
  const [gb, cb] = both(be, b, [13, 7]);
  using gs = be.add(ga, gb);
  expectEqual("add", await be.read(gs), await cpu.read(cpu.add(ca, cb)), rng);
  be.add(ga, gb, ga);
  cpu.add(ca, cb, ca);
  expectEqual("add out=a", await be.read(ga), await cpu.read(ca), rng);
  be.accumulate(ga, gb);
  cpu.accumulate(ca, cb);
  expectEqual("accumulate", await be.read(ga), await cpu.read(ca), rng);
  const [gbias, cbias] = both(be, bias, [7]);
  be.addRowVector(ga, gbias);
  cpu.addRowVector(ca, cbias);
  expectEqual("addRowVector", await be.read(ga), await cpu.read(ca), rng);
  // A scaled accumulate (acc += alpha·x): the CPU forms alpha·x in f64, here in f32.
  be.accumulate(ga, gb, 0.3);
  cpu.accumulate(ca, cb, 0.3);
  expectClose("accumulate alpha", await be.read(ga), await cpu.read(ca), 1e-6, rng);
});

gpuTest("rmsNorm and its backward match the CPU per row (n = 96) and per head (n = 8)", be, async (be) => {
  const rng = new Rng();
  for (const [rows, width, n] of [[11, 96, 96], [11, 96, 8]]) {
    const x = rng.normal(rows * width), w = rng.uniform(n, 0.5, 1.5), dy = rng.normal(rows * width);
    const [gx, cx] = both(be, x, [rows, width]);
    const [gw, cw] = both(be, w, [n]);
    const [gdy, cdy] = both(be, dy, [rows, width]);
    using gy = be.rmsNorm(gx, gw, 1e-5);
    expectClose(`rmsNorm n=${n}`, await be.read(gy), await cpu.read(cpu.rmsNorm(cx, cw, 1e-5)), 1e-5, rng);
    using gdx = be.rmsNormBackward(gx, gw, gdy, 1e-5);
    const ref = await cpu.read(cpu.rmsNormBackward(cx, cw, cdy, 1e-5));
    expectClose(`rmsNormBackward n=${n}`, await be.read(gdx), ref, 1e-5, rng);
  }
});

gpuTest("rope rotates like the CPU (with posOffset) and the inverse restores the input", be, async (be) => {
  const rng = new Rng();
  const [B, T, H, hd, P] = [2, 7, 3, 8, 12];
  const x = rng.normal(B * T * H * hd), cos = rng.uniform(P * hd / 2), sin = rng.uniform(P * hd / 2);
  const [gx, cx] = both(be, x, [B * T, H * hd]);
  const [gc, cc] = both(be, cos, [P, hd / 2]);
  const [gs, cs] = both(be, sin, [P, hd / 2]);
  const geo = { batch: B, seqLen: T, nHeads: H, headDim: hd, posOffset: 3 };
  be.rope(gx, gc, gs, geo);
  cpu.rope(cx, cc, cs, geo);
  expectClose("rope", await be.read(gx), await cpu.read(cx), 1e-6, rng);
  be.rope(gx, gc, gs, geo, true);
  cpu.rope(cx, cc, cs, geo, true);
  expectClose("rope inverse", await be.read(gx), await cpu.read(cx), 1e-6, rng);
});

gpuTest("siluMul and its backward match the CPU", be, async (be) => {
  const rng = new Rng();
  const g = rng.normal(517, 3), u = rng.normal(517), dh = rng.normal(517);
  const [gg, cg] = both(be, g, [11, 47]);
  const [gu, cu] = both(be, u, [11, 47]);
  const [gd, cd] = both(be, dh, [11, 47]);
  using h = be.siluMul(gg, gu);
  expectClose("siluMul", await be.read(h), await cpu.read(cpu.siluMul(cg, cu)), 1e-5, rng);
  const r = be.siluMulBackward(gg, gu, gd), c = cpu.siluMulBackward(cg, cu, cd);
  expectClose("siluMulBackward dg", await be.read(r.dg), await cpu.read(c.dg), 1e-5, rng);
  expectClose("siluMulBackward du", await be.read(r.du), await cpu.read(c.du), 1e-5, rng);
});

gpuTest("embedding gathers table rows; an id outside the vocabulary is a BackendError", be, async (be) => {
  const rng = new Rng();
  const table = rng.uniform(50 * 6);
  const ids = rng.ints(23, 50);
  const [gt, ct] = both(be, table, [50, 6]);
  using gi = be.uploadInt(ids, [23]);
  using ge = be.embedding(gt, gi);
  expectEqual(
    "embedding",
    await be.read(ge),
    await cpu.read(cpu.embedding(ct, cpu.uploadInt(ids, [23]))),
    rng,
  );
  using bad = be.uploadInt(Int32Array.from([3, 50]), [2]);
  try {
    be.embedding(gt, bad);
    throw new Error("no error");
  } catch (e) {
    if (!(e instanceof BackendError)) throw e;
  }
});

// Without shader-f16, f16 tensors are f32 words rounded by wgsl/common.wgsl's round_f16 at every store.
const noF16 = await openGpu({ f16: false, computeDType: "f32" });

gpuTest(
  "f16 tensors without shader-f16 round like Math.f16round (subnormals, overflow, ties)",
  noF16,
  async (b) => {
    const rng = new Rng();
    const x = rng.normal(4000, 3);
    // f16 subnormals, the largest normal, values that overflow to ±∞, and exact ties.
    x.set([1e-7, -3e-6, 6.1e-5, 65504, 65519, 65520, -70000, 1 + 2 ** -11, 1 + 3 * 2 ** -11], 0);
    using src = b.upload(x, [4000]);
    using dst = b.full([4000], 0, "f16");
    b.copy(dst, src);
    expectEqual("copy f32→f16 (emulated)", await b.read(dst), Float32Array.from(x, Math.f16round), rng);
    const [ga, ca] = both(b, rng.uniform(33 * 20), [33, 20], "f16");
    const [gb, cb] = both(b, rng.uniform(20 * 9), [20, 9], "f16");
    expectClose(
      "matmul f16 (emulated storage)",
      await b.read(b.matmul(ga, gb)),
      await cpu.read(cpu.matmul(ca, cb)),
      4e-3,
      rng,
    );
  },
);

reportErrors("webgpu_ops_test");
