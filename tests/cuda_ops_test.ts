/**
 * Every dense, elementwise, loss and training op of the CUDA backend against the CPU reference on
 * fresh random inputs of odd sizes: f32 tensors within 1e-5 relative (f32 rounding only), bf16
 * within 1e-2 (one bf16 rounding, METHOD.md's 1e-3..1e-2 band); outputs are poisoned first. The
 * memory ops are cuda_memory_test.ts.
 */
import type { DType, Tensor } from "../src/backend/backend.ts";
import { BackendError } from "../src/errors.ts";
import { gemmTuning } from "../src/backend/cuda/matmul.ts";
import {
  cpu,
  cuda,
  cudaTest,
  expectClose,
  expectEqual,
  freshSeed,
  pair,
  poison,
  readBoth,
  Rng,
} from "./cuda_helpers.ts";

const F32_BOUND = 1e-5;
const BF16_BOUND = 1e-2;
const bound = (d: DType) => (d === "f32" ? F32_BOUND : BF16_BOUND);
cudaTest("signSgdStep reads its learning rate from a device tensor (with and without clamp)", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const n = 1003;
  const g0 = rng.normal(n);
  g0[5] = 0;
  const [p, pc] = pair(be, rng.uniform(n, -0.6, 0.6), [n]);
  const [g, gc] = pair(be, g0, [n]);
  for (const [lr, clamp] of [[0.0123, undefined], [0.3, { lo: -0.5, hi: 0.5 }]] as const) {
    using lt = be.upload(new Float32Array([lr]), [1]);
    using lc = cpu.upload(new Float32Array([lr]), [1]);
    be.signSgdStep(p, g, lt, clamp);
    cpu.signSgdStep(pc, gc, lc, clamp);
    expectEqual(`signSgdStep lr tensor${clamp ? " clamp" : ""}`, ...(await readBoth(p, pc)));
  }
  // The same rate as a number gives the same bits as the f32 tensor holding it.
  using lt = be.upload(new Float32Array([0.007]), [1]);
  const [q1, q2] = [be.upload(await be.read(p), [n]), be.upload(await be.read(p), [n])];
  be.signSgdStep(q1, g, lt);
  be.signSgdStep(q2, g, Math.fround(0.007));
  expectEqual("signSgdStep lr tensor = lr number", await be.read(q1), await be.read(q2));
  for (const t of [p, g, q1, q2]) t[Symbol.dispose]();
});

cudaTest("matmul: every transpose form, alpha/beta, odd shapes, f32 and bf16, mixed operands", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const [M, N, K] = [37, 53, 71];
  for (const dt of ["f32", "bf16"] as DType[]) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        const [ga, ca] = pair(be, rng.normal(M * K), ta ? [K, M] : [M, K], dt);
        const [gb, cb] = pair(be, rng.normal(K * N), tb ? [N, K] : [K, N], dt);
        poison(be, [M, N], dt);
        using o = be.matmul(ga, gb, { transA: ta, transB: tb });
        using oc = cpu.matmul(ca, cb, { transA: ta, transB: tb });
        expectClose(`matmul ${dt} ${ta ? "T" : "N"}${tb ? "T" : "N"}`, ...(await readBoth(o, oc)), bound(dt));
        // alpha, beta with out
        const init = rng.normal(M * N);
        const [go, co] = pair(be, init, [M, N], dt);
        be.matmul(ga, gb, { transA: ta, transB: tb, alpha: 0.5, beta: -2, out: go });
        cpu.matmul(ca, cb, { transA: ta, transB: tb, alpha: 0.5, beta: -2, out: co });
        expectClose(
          `matmul ${dt} ${ta ? "T" : "N"}${tb ? "T" : "N"} α β`,
          ...(await readBoth(go, co)),
          bound(dt),
        );
        for (const t of [ga, gb, go]) t[Symbol.dispose]();
      }
    }
  }
  // Mixed: an f32 gradient times a bf16 weight (the block backward's dy·W).
  const [dy, dyc] = pair(be, rng.normal(M * N), [M, N], "f32");
  const [w, wc] = pair(be, rng.normal(N * K), [N, K], "bf16");
  using o = be.matmul(dy, w);
  using oc = cpu.matmul(dyc, wc);
  expectClose("matmul f32×bf16", ...(await readBoth(o, oc)), BF16_BOUND);
  // Autocast: bf16 activations times an f32 checkpoint weight (stories260K's) → bf16, the weight
  // rounded to bf16 as torch.autocast does.
  const [xa, xac] = pair(be, rng.normal(64 * 96), [64, 96], "bf16");
  const [wf, wfc] = pair(be, rng.normal(40 * 96, 0.05), [40, 96], "f32");
  poison(be, [64, 40], "bf16");
  using ya = be.matmul(xa, wf, { transB: true });
  using yac = cpu.matmul(xac, wfc, { transB: true });
  if (ya.dtype !== "bf16") throw new Error(`bf16 × f32 gave ${ya.dtype}`);
  expectClose("matmul autocast bf16·(f32)ᵀ", ...(await readBoth(ya, yac)), BF16_BOUND);
  // A linear layer of the size SignRound runs at small scale: x·Wᵀ with x [512, 256], W [384, 256].
  const [x, xc] = pair(be, rng.normal(512 * 256), [512, 256], "bf16");
  const [w2, w2c] = pair(be, rng.normal(384 * 256, 0.05), [384, 256], "bf16");
  using y = be.matmul(x, w2, { transB: true });
  using yc = cpu.matmul(xc, w2c, { transB: true });
  expectClose("linear bf16 512×256·(384×256)ᵀ", ...(await readBoth(y, yc)), BF16_BOUND);
});

cudaTest(
  "the fallback GEMM kernel (used where cuBLASLt has no algorithm) matches the reference",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    const [M, N, K] = [19, 33, 45];
    gemmTuning.forceFallback = true;
    try {
      for (const dt of ["f32", "bf16"] as DType[]) {
        for (const [ta, tb] of [[false, true], [true, false]]) {
          const [ga, ca] = pair(be, rng.normal(M * K), ta ? [K, M] : [M, K], dt);
          const [gb, cb] = pair(be, rng.normal(K * N), tb ? [N, K] : [K, N], dt);
          const [go, co] = pair(be, rng.normal(M * N), [M, N], dt);
          be.matmul(ga, gb, { transA: ta, transB: tb, alpha: 1.5, beta: 0.5, out: go });
          cpu.matmul(ca, cb, { transA: ta, transB: tb, alpha: 1.5, beta: 0.5, out: co });
          expectClose(
            `fallback gemm ${dt} ${ta ? "T" : "N"}${tb ? "T" : "N"} α β`,
            ...(await readBoth(go, co)),
            bound(dt),
          );
        }
      }
    } finally {
      gemmTuning.forceFallback = false;
    }
  },
);

cudaTest("add, addRowVector, siluMul and its backward", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  for (const dt of ["f32", "bf16"] as DType[]) {
    const shape = [13, 77];
    const n = 13 * 77;
    const [a, ac] = pair(be, rng.normal(n), shape, dt);
    const [b, bc] = pair(be, rng.normal(n), shape, dt);
    poison(be, shape, dt);
    using s = be.add(a, b);
    using sc = cpu.add(ac, bc);
    expectClose(`add ${dt}`, ...(await readBoth(s, sc)), bound(dt));
    const [bias, biasc] = pair(be, rng.normal(77), [77], dt);
    be.addRowVector(a, bias);
    cpu.addRowVector(ac, biasc);
    expectClose(`addRowVector ${dt}`, ...(await readBoth(a, ac)), bound(dt));
    poison(be, shape, dt);
    using h = be.siluMul(a, b);
    using hc = cpu.siluMul(ac, bc);
    expectClose(`siluMul ${dt}`, ...(await readBoth(h, hc)), bound(dt));
    const [dh, dhc] = pair(be, rng.normal(n), shape, dt);
    const gr = be.siluMulBackward(a, b, dh), grc = cpu.siluMulBackward(ac, bc, dhc);
    expectClose(`siluMulBackward dg ${dt}`, ...(await readBoth(gr.dg, grc.dg)), bound(dt));
    expectClose(`siluMulBackward du ${dt}`, ...(await readBoth(gr.du, grc.du)), bound(dt));
    // Aligned sizes take the 16-byte vector path.
    const [va, vac] = pair(be, rng.normal(4096), [4096], dt);
    const [vb, vbc] = pair(be, rng.normal(4096), [4096], dt);
    using vs = be.add(va, vb);
    using vsc = cpu.add(vac, vbc);
    expectClose(`add ${dt} (vector path)`, ...(await readBoth(vs, vsc)), bound(dt));
  }
});

cudaTest("rmsNorm and its backward: rows, Qwen3 per-head runs, odd widths", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  for (const dt of ["f32", "bf16"] as DType[]) {
    for (const [rows, width, n] of [[9, 64, 64], [11, 8 * 16, 16], [5, 100, 100], [3, 4096, 4096]]) {
      const [x, xc] = pair(be, rng.normal(rows * width, 2), [rows, width], dt);
      const [w, wc] = pair(be, rng.uniform(n, 0.5, 1.5), [n], dt);
      poison(be, [rows, width], dt);
      using y = be.rmsNorm(x, w, 1e-5);
      using yc = cpu.rmsNorm(xc, wc, 1e-5);
      expectClose(`rmsNorm ${dt} [${rows},${width}]/${n}`, ...(await readBoth(y, yc)), bound(dt));
      const [dy, dyc] = pair(be, rng.normal(rows * width), [rows, width], dt);
      poison(be, [rows, width], dt);
      using dx = be.rmsNormBackward(x, w, dy, 1e-5);
      using dxc = cpu.rmsNormBackward(xc, wc, dyc, 1e-5);
      expectClose(`rmsNormBackward ${dt} [${rows},${width}]/${n}`, ...(await readBoth(dx, dxc)), bound(dt));
    }
  }
});

cudaTest("rope forward and inverse with a position offset (8-pair vector path and scalar path)", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  // hd 16 and 128: half a multiple of 8 (vector path); hd 12: scalar path.
  for (const hd of [16, 128, 12]) {
    const [B, T, H, maxPos] = [2, 7, 3, 20];
    const cos = new Float32Array(maxPos * hd / 2), sin = new Float32Array(maxPos * hd / 2);
    for (let p = 0; p < maxPos; p++) {
      for (let i = 0; i < hd / 2; i++) {
        cos[p * hd / 2 + i] = Math.cos(p / 10000 ** (2 * i / hd));
        sin[p * hd / 2 + i] = Math.sin(p / 10000 ** (2 * i / hd));
      }
    }
    const [gc, cc] = pair(be, cos, [maxPos, hd / 2]);
    const [gs, cs] = pair(be, sin, [maxPos, hd / 2]);
    for (const dt of ["f32", "bf16"] as DType[]) {
      const [x, xc] = pair(be, rng.normal(B * T * H * hd), [B * T, H * hd], dt);
      for (const inverse of [false, true]) {
        be.rope(x, gc, gs, { batch: B, seqLen: T, nHeads: H, headDim: hd, posOffset: 3 }, inverse);
        cpu.rope(xc, cc, cs, { batch: B, seqLen: T, nHeads: H, headDim: hd, posOffset: 3 }, inverse);
        expectClose(`rope hd ${hd} ${dt}${inverse ? " inverse" : ""}`, ...(await readBoth(x, xc)), bound(dt));
      }
      x[Symbol.dispose]();
    }
  }
});

cudaTest("embedding, crossEntropy and argmaxRows; a bad token id is a BackendError", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const [V, H, n] = [97, 24, 33];
  for (const dt of ["f32", "bf16"] as DType[]) {
    const [tab, tabc] = pair(be, rng.normal(V * H), [V, H], dt);
    const idsData = rng.ints(n, 0, V);
    using ids = be.uploadInt(idsData, [n]);
    using idsc = cpu.uploadInt(idsData, [n]);
    poison(be, [n, H], dt);
    using e = be.embedding(tab, ids);
    using ec = cpu.embedding(tabc, idsc);
    expectEqual(`embedding ${dt}`, ...(await readBoth(e, ec)));
    const [lg, lgc] = pair(be, rng.normal(n * 1000, 3), [n, 1000], dt);
    poison(be, [n], "f32");
    using ce = be.crossEntropy(lg, ids);
    using cec = cpu.crossEntropy(lgc, idsc);
    expectClose(`crossEntropy ${dt}`, ...(await readBoth(ce, cec)), 1e-5);
    poison(be, [n], "i32");
    using am = be.argmaxRows(lg);
    using amc = cpu.argmaxRows(lgc);
    expectEqual(`argmaxRows ${dt}`, await be.readInt(am), await cpu.readInt(amc));
  }
  // Ties go to the lowest index.
  using tie = be.upload(Float32Array.from([1, 5, 5, 2, 7, 7, 7, 0]), [2, 4]);
  expectEqual("argmaxRows ties", await be.readInt(be.argmaxRows(tie)), [1, 0]);
  using tab = be.upload(rng.normal(10 * 8), [10, 8], "bf16");
  using bad = be.uploadInt(Int32Array.from([1, 12, 3]), [3]);
  using e = be.embedding(tab, bad);
  let threw = false;
  try {
    await be.read(e);
  } catch (err) {
    threw = err instanceof BackendError && /token id 12/.test(err.message);
  }
  if (!threw) throw new Error("an out-of-vocabulary id did not raise a BackendError");
});

cudaTest("mseLoss with and without a row mask, loss exact to f32", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  for (const dt of ["f32", "bf16"] as DType[]) {
    for (const masked of [false, true]) {
      const [rows, cols] = [23, 40];
      const [y, yc] = pair(be, rng.normal(rows * cols), [rows, cols], dt);
      const [t, tc] = pair(be, rng.normal(rows * cols), [rows, cols], dt);
      const m = Float32Array.from({ length: rows }, (_, i) => (i % 3 === 0 ? 0 : 1));
      const [gm, cm] = masked ? pair(be, m, [rows]) : [undefined, undefined];
      poison(be, [rows, cols], dt);
      const r = be.mseLoss(y, t, gm, 1000), rc = cpu.mseLoss(yc, tc, cm, 1000);
      // dy comes in y's dtype (autograd's gradient of a bf16 activation): one rounding from f64.
      if (r.dy.dtype !== dt) throw new Error(`mseLoss dy is ${r.dy.dtype} for a ${dt} y`);
      expectClose(`mseLoss loss ${dt}${masked ? " masked" : ""}`, ...(await readBoth(r.loss, rc.loss)), 1e-6);
      expectClose(
        `mseLoss dy ${dt}${masked ? " masked" : ""}`,
        ...(await readBoth(r.dy, rc.dy)),
        dt === "f32" ? 1e-6 : 4e-3,
      );
    }
  }
});

cudaTest("signSgdStep (with clamp), accumulate, accumulateColumnSquares", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const n = 1037;
  const [p, pc] = pair(be, rng.uniform(n, -0.6, 0.6), [n]);
  const gd = rng.normal(n);
  gd[5] = 0;
  const [g, gc] = pair(be, gd, [n]);
  be.signSgdStep(p, g, 0.005);
  cpu.signSgdStep(pc, gc, 0.005);
  expectEqual("signSgdStep", ...(await readBoth(p, pc)));
  be.signSgdStep(p, g, 0.3, { lo: -0.5, hi: 0.5 });
  cpu.signSgdStep(pc, gc, 0.3, { lo: -0.5, hi: 0.5 });
  expectEqual("signSgdStep clamp", ...(await readBoth(p, pc)));
  for (const dt of ["f32", "bf16"] as DType[]) {
    const [acc, accc] = pair(be, rng.normal(n), [n]);
    const [x, xc] = pair(be, rng.normal(n), [n], dt);
    be.accumulate(acc, x);
    cpu.accumulate(accc, xc);
    expectClose(`accumulate ${dt}`, ...(await readBoth(acc, accc)), F32_BOUND);
    be.accumulate(acc, x, -1 / 3);
    cpu.accumulate(accc, xc, -1 / 3);
    expectEqual(`accumulate ${dt} alpha −1/3`, ...(await readBoth(acc, accc)));
    const [accb, accbc] = pair(be, rng.normal(n), [n], "bf16");
    be.accumulate(accb, x, 0.7);
    cpu.accumulate(accbc, xc, 0.7);
    expectEqual(`accumulate into bf16 ${dt}`, ...(await readBoth(accb, accbc)));
    const [cs, csc] = pair(be, rng.uniform(45, 0, 1), [45]);
    const [m, mc] = pair(be, rng.normal(61 * 45), [61, 45], dt);
    be.accumulateColumnSquares(cs, m);
    cpu.accumulateColumnSquares(csc, mc);
    expectClose(`accumulateColumnSquares ${dt}`, ...(await readBoth(cs, csc)), F32_BOUND);
  }
});

cudaTest("keepBest copies every pair only when the loss improves, on the device", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const make = (): Tensor[] => [
    be.upload(rng.normal(1000), [1000]),
    be.upload(rng.normal(77), [77], "bf16"),
    be.upload(rng.normal(64), [64]),
  ];
  const src = make(), dst = make();
  const pairs = src.map((s, i) => [s, dst[i]] as const);
  using best = be.full([1], 2);
  using worse = be.full([1], 3);
  const before = await Promise.all(dst.map((d) => be.read(d)));
  be.keepBest(worse, best, pairs);
  for (let i = 0; i < dst.length; i++) expectEqual(`keepBest no-op ${i}`, await be.read(dst[i]), before[i]);
  expectEqual("keepBest best kept", await be.read(best), [2]);
  using better = be.full([1], 1.5);
  be.keepBest(better, best, pairs);
  for (let i = 0; i < dst.length; i++) {
    expectEqual(`keepBest copy ${i}`, await be.read(dst[i]), await be.read(src[i]));
  }
  expectEqual("keepBest best updated", await be.read(best), [1.5]);
  // More pairs than one launch carries.
  const many = Array.from({ length: 30 }, () => [be.upload(rng.normal(9), [9]), be.full([9], 0)] as const);
  using best2 = be.full([1], 10);
  be.keepBest(better, best2, many);
  for (const [s, d] of many) expectEqual("keepBest 30 pairs", await be.read(d), await be.read(s));
});
