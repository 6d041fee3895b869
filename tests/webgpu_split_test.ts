// Tensors larger than one storage binding are split, never rejected: with maxStorageBufferBindingSize
// lowered to 4 KiB every op below runs in many chunks (rows, runs, weight rows, batch entries, and
// M/N/K ranges for matmul) and must still equal the CPU reference.
import type { IntQuantParams } from "../src/backend/backend.ts";
import { groupMinMax } from "../src/qmath/int_quant.ts";
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

const LIMIT = 4096;
const be = await openGpu({ maxBindingBytes: LIMIT, computeDType: "f32" });

gpuTest("split: matmul in every form (M, N and K chunks, beta accumulation)", be, async (be) => {
  const rng = new Rng();
  const [M, N, K] = [70, 52, 90]; // A and B are 25 and 19 KB: several chunks per operand
  for (const [transA, transB] of [[false, true], [false, false], [true, false], [true, true]]) {
    const [ga, ca] = both(be, rng.uniform(M * K), transA ? [K, M] : [M, K]);
    const [gb, cb] = both(be, rng.uniform(K * N), transB ? [N, K] : [K, N]);
    const [gc, cc] = both(be, rng.uniform(M * N), [M, N]);
    const o = { transA, transB, alpha: 0.5, beta: -1 };
    be.matmul(ga, gb, { ...o, out: gc });
    cpu.matmul(ca, cb, { ...o, out: cc });
    expectClose(
      `split matmul ${transA ? "Aᵀ" : "A"}·${transB ? "Bᵀ" : "B"}`,
      await be.read(gc),
      await cpu.read(cc),
      1e-5,
      rng,
    );
  }
});

gpuTest("split: elementwise, norms, rope, embedding, copies", be, async (be) => {
  const rng = new Rng();
  const [rows, cols] = [41, 96]; // 15.7 KB per f32 tensor
  const x = rng.normal(rows * cols), y = rng.normal(rows * cols), bias = rng.normal(cols);
  const [gx, cx] = both(be, x, [rows, cols]);
  const [gy, cy] = both(be, y, [rows, cols]);
  const [gb, cb] = both(be, bias, [cols]);
  expectEqual("split add", await be.read(be.add(gx, gy)), await cpu.read(cpu.add(cx, cy)), rng);
  be.addRowVector(gy, gb);
  cpu.addRowVector(cy, cb);
  expectEqual("split addRowVector", await be.read(gy), await cpu.read(cy), rng);
  expectClose(
    "split siluMul",
    await be.read(be.siluMul(gx, gy)),
    await cpu.read(cpu.siluMul(cx, cy)),
    1e-5,
    rng,
  );
  const sb = be.siluMulBackward(gx, gy, gy), sc = cpu.siluMulBackward(cx, cy, cy);
  expectClose("split siluMulBackward", await be.read(sb.dg), await cpu.read(sc.dg), 1e-5, rng);
  for (const n of [96, 8]) {
    const [gw, cw] = both(be, rng.uniform(n, 0.5, 1.5), [n]);
    expectClose(
      `split rmsNorm n=${n}`,
      await be.read(be.rmsNorm(gx, gw, 1e-6)),
      await cpu.read(cpu.rmsNorm(cx, cw, 1e-6)),
      1e-5,
      rng,
    );
    const rb = await be.read(be.rmsNormBackward(gx, gw, gy, 1e-6));
    expectClose(
      `split rmsNormBackward n=${n}`,
      rb,
      await cpu.read(cpu.rmsNormBackward(cx, cw, cy, 1e-6)),
      1e-5,
      rng,
    );
  }
  const [gc, cc] = both(be, rng.uniform(20 * 4), [20, 4]);
  const [gs, cs] = both(be, rng.uniform(20 * 4), [20, 4]);
  // 41 rows are not 2 × 20: rope the first 40 through rows() views.
  const geo = { batch: 2, seqLen: 20, nHeads: 12, headDim: 8, posOffset: 0 };
  const [gq, cq] = both(be, x, [rows, cols]);
  be.rope(be.rows(gq, 0, 40), gc, gs, geo);
  cpu.rope(cpu.rows(cq, 0, 40), cc, cs, geo);
  expectClose("split rope", await be.read(gq), await cpu.read(cq), 1e-6, rng);
  const table = rng.uniform(300 * 8), ids = rng.ints(700, 300);
  const [gt, ct] = both(be, table, [300, 8]);
  using gi = be.uploadInt(ids, [700]);
  expectEqual(
    "split embedding",
    await be.read(be.embedding(gt, gi)),
    await cpu.read(cpu.embedding(ct, cpu.uploadInt(ids, [700]))),
    rng,
  );
  using gd = be.full([rows, cols], 0, "f16");
  be.copy(gd, gx);
  expectEqual("split copy f32→f16", await be.read(gd), Float32Array.from(x, Math.f16round), rng);
  using gg = be.full([3 * 10, cols], NaN);
  const src = be.view(gx, [rows, cols]);
  be.gatherSamples(gg, src, [3, 0, 2], 10);
  const ref = new Float32Array(30 * cols);
  [3, 0, 2].forEach((s, i) => ref.set(x.subarray(s * 10 * cols, (s + 1) * 10 * cols), i * 10 * cols));
  expectEqual("split gatherSamples", await be.read(gg), ref, rng);
});

gpuTest("split: attention forward and backward per batch entry", be, async (be) => {
  const rng = new Rng();
  const s = { batch: 5, seqLen: 9, nHeads: 4, nKvHeads: 2, headDim: 8, scale: 0.35 };
  const rows = s.batch * s.seqLen;
  const [gq, cq] = both(be, rng.normal(rows * 32), [rows, 32]);
  const [gk, ck] = both(be, rng.normal(rows * 16), [rows, 16]);
  const [gv, cv] = both(be, rng.normal(rows * 16), [rows, 16]);
  const [gd, cd] = both(be, rng.normal(rows * 32), [rows, 32]);
  const g = be.attention(gq, gk, gv, s), c = cpu.attention(cq, ck, cv, s);
  expectClose("split attention", await be.read(g.out), await cpu.read(c.out), 1e-5, rng);
  const gb = be.attentionBackward(gq, gk, gv, g.out, g.lse, gd, s);
  const cb = cpu.attentionBackward(cq, ck, cv, c.out, c.lse, cd, s);
  for (const k of ["dq", "dk", "dv"] as const) {
    expectClose(`split attention ${k}`, await be.read(gb[k]), await cpu.read(cb[k]), 1e-5, rng);
  }
});

gpuTest("split: losses, reductions, sign-SGD and keepBest", be, async (be) => {
  const rng = new Rng();
  const [rows, cols] = [67, 40];
  const y = rng.normal(rows * cols), t = rng.normal(rows * cols), m = rng.uniform(rows, 0, 1);
  const [gy, cy] = both(be, y, [rows, cols]);
  const [gt, ct] = both(be, t, [rows, cols]);
  const [gm, cm] = both(be, m, [rows]);
  const g = be.mseLoss(gy, gt, gm, 2), c = cpu.mseLoss(cy, ct, cm, 2);
  expectClose("split mseLoss", await be.read(g.loss), await cpu.read(c.loss), 1e-5, rng);
  expectClose("split mseLoss dy", await be.read(g.dy), await cpu.read(c.dy), 1e-6, rng);
  // One 3600-byte row per chunk: the unit of splitting is a row (WebGPU guarantees bindings of at
  // least 128 MiB, so only rows above 32 M floats could not run).
  const [gl, cl] = both(be, rng.normal(20 * 900), [20, 900]);
  const tg = rng.ints(20, 900);
  using gti = be.uploadInt(tg, [20]);
  expectClose(
    "split crossEntropy",
    await be.read(be.crossEntropy(be.rows(gl, 0, 20), gti)),
    await cpu.read(cpu.crossEntropy(cl, cpu.uploadInt(tg, [20]))),
    1e-5,
    rng,
  );
  expectEqual(
    "split argmaxRows",
    await be.readInt(be.argmaxRows(gl)),
    await cpu.readInt(cpu.argmaxRows(cl)),
    rng,
  );
  const [ga, ca] = both(be, new Float32Array(cols), [cols]);
  be.accumulateColumnSquares(ga, gy);
  cpu.accumulateColumnSquares(ca, cy);
  expectClose("split accumulateColumnSquares", await be.read(ga), await cpu.read(ca), 1e-5, rng);
  be.signSgdStep(gy, gt, 0.01, { lo: -1, hi: 1 });
  cpu.signSgdStep(cy, ct, 0.01, { lo: -1, hi: 1 });
  expectEqual("split signSgdStep", await be.read(gy), await cpu.read(cy), rng);
  using best = be.full([1], 10);
  be.keepBest(g.loss, best, [[gt, gy]]);
  expectEqual("split keepBest", await be.read(gy), t, rng);
});

gpuTest("split: fakeQuant, its backward and quantizeWeights over weight-row chunks", be, async (be) => {
  const rng = new Rng();
  const [n, k, gsz] = [45, 64, 16];
  const G = k / gsz;
  const w = rng.normal(n * k, 0.02);
  const { wMin, wMax } = groupMinMax(w, { n, k, g: gsz });
  const host = {
    v: rng.uniform(n * k, -0.5, 0.5),
    mn: rng.uniform(n * G, 0.7, 1),
    mx: rng.uniform(n * G, 0.7, 1),
  };
  const p: IntQuantParams = { bits: 4, groupSize: gsz, sym: false, scaleDType: "f16" };
  const mk = (b: typeof cpu) => ({
    w: b.upload(w, [n, k]),
    st: {
      v: b.upload(host.v, [n, k]),
      minScale: b.upload(host.mn, [n * G]),
      maxScale: b.upload(host.mx, [n * G]),
      wMin: b.upload(wMin, [n * G]),
      wMax: b.upload(wMax, [n * G]),
    },
  });
  const a = mk(be), c = mk(cpu);
  expectEqual(
    "split fakeQuant",
    await be.read(be.fakeQuant(a.w, a.st, p)),
    await cpu.read(cpu.fakeQuant(c.w, c.st, p)),
    rng,
  );
  const qa = await be.quantizeWeights(a.w, a.st, p), qc = await cpu.quantizeWeights(c.w, c.st, p);
  expectEqual("split codes", qa.codes, qc.codes, rng);
  expectEqual("split scales", qa.scales, qc.scales, rng);
  const d = rng.normal(n * k);
  const ga = be.fakeQuantBackward(a.w, a.st, p, be.upload(d, [n, k]));
  const gc = cpu.fakeQuantBackward(c.w, c.st, p, cpu.upload(d, [n, k]));
  expectEqual("split fakeQuantBackward dV", await be.read(ga.dv), await cpu.read(gc.dv), rng);
  expectClose(
    "split fakeQuantBackward dα",
    await be.read(ga.dMinScale),
    await cpu.read(gc.dMinScale),
    1e-4,
    rng,
  );
});

reportErrors("webgpu_split_test");
