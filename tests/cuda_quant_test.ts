/**
 * Fake-quant forward, straight-through backward and export codes, CUDA vs the CPU reference
 * (src/qmath/int_quant.ts) on fresh random weights and tuning states: symmetric and asymmetric,
 * 2/3/4/8 bits, group sizes 32/128 and per-row, a K that leaves a short last group, f16/bf16/f32
 * scale dtypes, opt-RTN initial scales, α/β partly outside [0, 1] (their clamp blocks the gradient).
 * The kernels compute in f64 like the reference, so Ŵ, dV and the integer codes must match exactly.
 */
import type { DType, IntQuantParams, QuantState } from "../src/backend/backend.ts";
import type { Backend } from "../src/backend/backend.ts";
import { groupMinMax } from "../src/qmath/int_quant.ts";
import {
  cpu,
  cuda,
  cudaTest,
  expectClose,
  expectEqual,
  freshSeed,
  poison,
  readBoth,
  Rng,
} from "./cuda_helpers.ts";

interface Case {
  n: number;
  k: number;
  g: number;
  bits: number;
  sym: boolean;
  scale: IntQuantParams["scaleDType"];
  wDType: DType;
  init?: boolean;
}

function makeState(be: Backend, w: Float32Array, c: Case, rng: Rng, seed: number): QuantState {
  const G = Math.ceil(c.k / c.g);
  const { wMin, wMax } = groupMinMax(w, { n: c.n, k: c.k, g: c.g });
  const r = new Rng(seed);
  const v = r.uniform(c.n * c.k, -0.5, 0.5);
  const minS = r.uniform(c.n * G, 0.4, 1.1); // some above 1: clamped, no gradient
  const maxS = r.uniform(c.n * G, 0.4, 1.1);
  void rng;
  return {
    v: be.upload(v, [c.n, c.k]),
    minScale: be.upload(minS, [c.n * G]),
    maxScale: be.upload(maxS, [c.n * G]),
    wMin: be.upload(wMin, [c.n * G]),
    wMax: be.upload(wMax, [c.n * G]),
    initScale: c.init ? be.upload(r.uniform(c.n * G, 0.002, 0.02), [c.n * G]) : undefined,
  };
}

async function check(c: Case): Promise<void> {
  const be = cuda(), rng = new Rng(freshSeed());
  const label = `${c.sym ? "sym" : "asym"} w${c.bits} g${c.g} [${c.n},${c.k}] ${c.wDType} scale ${c.scale}${
    c.init ? " init" : ""
  }`;
  // Round the weights to their dtype first so both sides see identical values.
  const w = Float32Array.from(await cpu.read(cpu.upload(rng.normal(c.n * c.k, 0.05), [c.n, c.k], c.wDType)));
  const seed = Math.floor(rng.next() * 2 ** 31);
  const gs = makeState(be, w, c, rng, seed), cs = makeState(cpu, w, c, rng, seed);
  const p: IntQuantParams = { bits: c.bits, groupSize: c.g, sym: c.sym, scaleDType: c.scale };
  using gw = be.upload(w, [c.n, c.k], c.wDType);
  using cw = cpu.upload(w, [c.n, c.k], c.wDType);
  poison(be, [c.n, c.k], c.wDType);
  using q = be.fakeQuant(gw, gs, p);
  using qc = cpu.fakeQuant(cw, cs, p);
  expectEqual(`fakeQuant ${label}`, ...(await readBoth(q, qc)));
  const dwq = rng.normal(c.n * c.k);
  using gd = be.upload(dwq, [c.n, c.k], c.wDType);
  using cd = cpu.upload(dwq, [c.n, c.k], c.wDType);
  poison(be, [c.n, c.k], "f32");
  const gr = be.fakeQuantBackward(gw, gs, p, gd), cr = cpu.fakeQuantBackward(cw, cs, p, cd);
  expectEqual(`fakeQuantBackward dV ${label}`, ...(await readBoth(gr.dv, cr.dv)));
  expectClose(`fakeQuantBackward dα ${label}`, ...(await readBoth(gr.dMinScale, cr.dMinScale)), 1e-6);
  expectClose(`fakeQuantBackward dβ ${label}`, ...(await readBoth(gr.dMaxScale, cr.dMaxScale)), 1e-6);
  const e = await be.quantizeWeights(gw, gs, p), ec = await cpu.quantizeWeights(cw, cs, p);
  expectEqual(`quantizeWeights codes ${label}`, e.codes, ec.codes);
  expectEqual(`quantizeWeights scales ${label}`, e.scales, ec.scales);
  expectEqual(`quantizeWeights zeros ${label}`, e.zeros, ec.zeros);
}

cudaTest("fake-quant W4 sym/asym, group 128, bf16 weights, f16 scales (AutoRound's default)", async () => {
  await check({ n: 96, k: 512, g: 128, bits: 4, sym: true, scale: "f16", wDType: "bf16" });
  await check({ n: 96, k: 512, g: 128, bits: 4, sym: false, scale: "f16", wDType: "bf16" });
});

cudaTest("fake-quant group 32 with a short last group, per-row groups, odd K", async () => {
  await check({ n: 17, k: 172, g: 32, bits: 4, sym: true, scale: "f16", wDType: "f32" });
  await check({ n: 17, k: 172, g: 172, bits: 4, sym: false, scale: "f16", wDType: "f32" });
  await check({ n: 5, k: 4099, g: 4099, bits: 3, sym: true, scale: "bf16", wDType: "bf16" });
});

cudaTest("fake-quant 2 and 8 bits, bf16/f32 scales, opt-RTN initial scales", async () => {
  await check({ n: 33, k: 256, g: 64, bits: 2, sym: false, scale: "bf16", wDType: "bf16" });
  await check({ n: 33, k: 256, g: 64, bits: 8, sym: true, scale: "f32", wDType: "f32" });
  await check({ n: 40, k: 384, g: 128, bits: 4, sym: true, scale: "f16", wDType: "bf16", init: true });
});

cudaTest(
  "fake-quant to a bf16 output (compute dtype) from f32 and bf16 weights equals the reference",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    for (const [wDType, sym, g] of [["f32", true, 32], ["f32", false, 128], ["bf16", true, 128]] as const) {
      const n = 24, k = 256, G = k / g;
      const w = Float32Array.from(await cpu.read(cpu.upload(rng.normal(n * k, 0.05), [n, k], wDType)));
      const { wMin, wMax } = groupMinMax(w, { n, k, g });
      const v = rng.uniform(n * k, -0.5, 0.5),
        minS = rng.uniform(n * G, 0.5, 1),
        maxS = rng.uniform(n * G, 0.5, 1);
      const state = (b: Backend) => ({
        v: b.upload(v, [n, k]),
        minScale: b.upload(minS, [n * G]),
        maxScale: b.upload(maxS, [n * G]),
        wMin: b.upload(wMin, [n * G]),
        wMax: b.upload(wMax, [n * G]),
      });
      const p: IntQuantParams = { bits: 4, groupSize: g, sym, scaleDType: "f16" };
      using gw = be.upload(w, [n, k], wDType);
      using cw = cpu.upload(w, [n, k], wDType);
      poison(be, [n, k], "bf16");
      using q = be.fakeQuant(gw, state(be), p, "bf16");
      using qc = cpu.fakeQuant(cw, state(cpu), p, "bf16");
      if (q.dtype !== "bf16") throw new Error(`fakeQuant outDType bf16 gave ${q.dtype}`);
      expectEqual(`fakeQuant ${wDType} → bf16 ${sym ? "sym" : "asym"} g${g}`, ...(await readBoth(q, qc)));
    }
  },
);
