// WebGPU fake-quant against the CPU reference (src/qmath/int_quant.ts): the same integer codes,
// scales and zero points bit for bit (sym/asym, f16/bf16/f32 scales, a ragged last group, opt-RTN
// init scales, constructed exact ties and near-ties), Ŵ exactly, and the straight-through gradients.
import type { Backend, IntQuantParams, QuantState, Tensor } from "../src/backend/backend.ts";
import { groupMinMax, searchScalesSym } from "../src/qmath/int_quant.ts";
import { cpu, expectClose, expectEqual, gpuTest, openGpu, reportErrors, Rng } from "./webgpu_helpers.ts";

const be = await openGpu();

interface HostState {
  w: Float32Array;
  v: Float32Array;
  minScale: Float32Array;
  maxScale: Float32Array;
  wMin: Float64Array;
  wMax: Float64Array;
  initScale?: Float64Array;
}

function randomState(rng: Rng, n: number, k: number, g: number, withInit: boolean, bits: number): HostState {
  const w = rng.normal(n * k, 0.02);
  const { wMin, wMax } = groupMinMax(w, { n, k, g });
  const G = Math.ceil(k / g);
  return {
    w,
    v: rng.uniform(n * k, -0.5, 0.5),
    // Some α, β above 1 or below 0: clamped in the forward, gradient gated in the backward.
    minScale: rng.uniform(n * G, 0.6, 1.05),
    maxScale: rng.uniform(n * G, -0.02, 1.02),
    wMin,
    wMax,
    initScale: withInit ? searchScalesSym(w, { n, k, g }, bits, undefined, 1e-5) : undefined,
  };
}

function upload(
  b: Backend,
  h: HostState,
  n: number,
  k: number,
  wDtype: "f32" | "f16",
): { w: Tensor; st: QuantState } {
  const G = h.wMin.length / n;
  return {
    w: b.upload(h.w, [n, k], wDtype),
    st: {
      v: b.upload(h.v, [n, k]),
      minScale: b.upload(h.minScale, [n * G]),
      maxScale: b.upload(h.maxScale, [n * G]),
      wMin: b.upload(h.wMin, [n * G]),
      wMax: b.upload(h.wMax, [n * G]),
      initScale: h.initScale ? b.upload(h.initScale, [n * G]) : undefined,
    },
  };
}

async function compareAll(
  tag: string,
  b: Backend,
  h: HostState,
  n: number,
  k: number,
  p: IntQuantParams,
  rng: Rng,
) {
  const wd = p.scaleDType === "f32" ? "f32" : "f16";
  const g = upload(b, h, n, k, wd), c = upload(cpu, h, n, k, wd);
  const gq = await b.quantizeWeights(g.w, g.st, p), cq = await cpu.quantizeWeights(c.w, c.st, p);
  expectEqual(`${tag} codes`, gq.codes, cq.codes, rng);
  expectEqual(`${tag} scales`, gq.scales, cq.scales, rng);
  expectEqual(`${tag} zeros`, gq.zeros, cq.zeros, rng);
  using gw = b.fakeQuant(g.w, g.st, p, "f32");
  expectEqual(`${tag} Ŵ`, await b.read(gw), await cpu.read(cpu.fakeQuant(c.w, c.st, p, "f32")), rng);
  const dwq = rng.normal(n * k);
  using gd = b.upload(dwq, [n, k]);
  const gg = b.fakeQuantBackward(g.w, g.st, p, gd);
  const cg = cpu.fakeQuantBackward(c.w, c.st, p, cpu.upload(dwq, [n, k]));
  expectEqual(`${tag} dV`, await b.read(gg.dv), await cpu.read(cg.dv), rng);
  expectClose(`fakeQuantBackward dα`, await b.read(gg.dMinScale), await cpu.read(cg.dMinScale), 1e-4, rng);
  expectClose(`fakeQuantBackward dβ`, await b.read(gg.dMaxScale), await cpu.read(cg.dMaxScale), 1e-4, rng);
  for (const t of [gg.dv, gg.dMinScale, gg.dMaxScale, g.w, ...Object.values(g.st)]) t?.[Symbol.dispose]();
}

const SCHEMES: [string, IntQuantParams][] = [
  ["W4 sym g16 f16", { bits: 4, groupSize: 16, sym: true, scaleDType: "f16" }],
  ["W4 asym g16 f16", { bits: 4, groupSize: 16, sym: false, scaleDType: "f16" }],
  ["W3 sym g32 bf16", { bits: 3, groupSize: 32, sym: true, scaleDType: "bf16" }],
  ["W2 asym g32 f32", { bits: 2, groupSize: 32, sym: false, scaleDType: "f32" }],
  ["W8 sym per-row f16", { bits: 8, groupSize: 50, sym: true, scaleDType: "f16" }],
];

gpuTest(
  "fakeQuant codes, scales, zeros, Ŵ and dV equal the CPU bit for bit (ragged last group)",
  be,
  async (b) => {
    const rng = new Rng();
    // K = 50 leaves a last group of 2 (g = 16) or 18 (g = 32) columns.
    const [n, k] = [19, 50];
    for (const [tag, p] of SCHEMES) {
      await compareAll(tag, b, randomState(rng, n, k, p.groupSize, false, p.bits), n, k, p, rng);
    }
  },
);

gpuTest("fakeQuant with opt-RTN init scales equals the CPU bit for bit", be, async (b) => {
  const rng = new Rng();
  const p: IntQuantParams = { bits: 4, groupSize: 16, sym: true, scaleDType: "f16" };
  await compareAll("W4 sym init", b, randomState(rng, 9, 48, 16, true, 4), 9, 48, p, rng);
});

gpuTest(
  "exact and near ties of w/scale + v round half to even exactly like the f64 reference",
  be,
  async (b) => {
    const rng = new Rng();
    // One group per row, wMax = 1, wMin = −0.5, α = β = 1: scale = f16(−1/8) = −0.125 (sym 4-bit),
    // so w = m·2^-4 gives w/scale = −m/2, an exact tie for odd m. Perturbations of w by a few f32
    // ulps and of v by ±2^-24 land just beside the tie, where plain f32 arithmetic can misround.
    const [n, k] = [16, 64];
    const w = new Float32Array(n * k), v = new Float32Array(n * k);
    for (let i = 0; i < n * k; i++) {
      const m = 2 * Math.floor(rng.next() * 15) - 15 + 1; // odd in [-15, 15]
      const base = m / 16;
      const kind = i % 4;
      w[i] = kind === 1 ? base * (1 + 2 ** -23 * (rng.next() < 0.5 ? 1 : -1)) : base;
      v[i] = kind === 2
        ? (rng.next() < 0.5 ? 2 ** -24 : -(2 ** -24))
        : kind === 3
        ? 0.25 * (rng.next() < 0.5 ? 1 : -1)
        : 0;
    }
    const h: HostState = {
      w,
      v,
      minScale: new Float32Array(n).fill(1),
      maxScale: new Float32Array(n).fill(1),
      wMin: new Float64Array(n).fill(-0.5),
      wMax: new Float64Array(n).fill(1),
    };
    await compareAll("ties sym", b, h, n, k, { bits: 4, groupSize: k, sym: true, scaleDType: "f16" }, rng);
    await compareAll("ties asym", b, h, n, k, { bits: 4, groupSize: k, sym: false, scaleDType: "f32" }, rng);
  },
);

reportErrors("webgpu_quant_test");
