// WebGPU float-scheme kernels (wgsl/float_quant.wgsl, wgsl/act_quant.wgsl) against the CPU backend
// (src/qmath/float_tune.ts, act_quant.ts): MXFP4/6/8, MXINT4, NVFP4 and FP8 E4M3 weights with
// SignRound's v and β — Ŵ, element values and scales bit for bit, dV exactly, dβ within an f32
// summation-order bound — and the MX / NVFP4 / FP8 activation quantizers (x̂ bit for bit, dx and
// dActMaxScale within the bound). Also INT8_W8A8 weights (f16 scales, dα too). Shapes have rows that are not a multiple of the workgroup.
import type {
  ActQuantArgs,
  Backend,
  DType,
  FloatQuantParams,
  QuantState,
  Tensor,
} from "../src/backend/backend.ts";
import type { ActQuant, QuantScheme } from "../src/qmath/quantized.ts";
import { cpu, expectClose, expectEqual, gpuTest, openGpu, reportErrors, Rng } from "./webgpu_helpers.ts";

const be = await openGpu();

// dβ and the argmax entries of dx are f32 sums on the GPU and f64 sums on the host, over at most
// K terms of size ≤ max|term|: |error| ≤ K·2^-24·Σ|terms| — for K ≤ 512 and the inputs here (terms
// of one sign mostly) well below 1e-4 of ‖ref‖; the measured values are printed in the table.
const SUM_BOUND = 1e-4;

interface Case {
  name: string;
  scheme: QuantScheme;
  n: number;
  k: number;
  /** Groups of wMin / wMax / β: per row count (0 = one per tensor). */
  perRow: number;
}

function scheme(dataType: QuantScheme["dataType"], bits: number, groupSize: number): QuantScheme {
  return { dataType, bits, groupSize, sym: true };
}

const CASES: Case[] = [
  { name: "mxfp4", scheme: scheme("mx_fp", 4, 32), n: 37, k: 96, perRow: 3 },
  { name: "mxfp6", scheme: scheme("mx_fp", 6, 32), n: 19, k: 64, perRow: 2 },
  { name: "mxfp8", scheme: scheme("mx_fp", 8, 32), n: 21, k: 128, perRow: 4 },
  { name: "mxint4", scheme: scheme("mx_int", 4, 32), n: 13, k: 64, perRow: 2 },
  { name: "nvfp4", scheme: scheme("nv_fp", 4, 16), n: 29, k: 80, perRow: 5 },
  { name: "fp8 per tensor", scheme: scheme("fp", 8, 0), n: 300, k: 48, perRow: 0 },
  { name: "fp8 per row", scheme: scheme("fp", 8, -1), n: 33, k: 520, perRow: 1 },
  { name: "int8 per row (W8A8)", scheme: scheme("int", 8, -1), n: 41, k: 200, perRow: 1 },
  { name: "int8 per 64", scheme: scheme("int", 8, 64), n: 9, k: 192, perRow: 3 },
];

/** Random weights whose group maxima span many binades, v in ±0.5, β partly outside [0, 1]. */
function host(rng: Rng, c: Case) {
  const w = rng.normal(c.n * c.k, 0.02);
  for (let i = 0; i < w.length; i += 7) w[i] *= 2 ** Math.floor(rng.next() * 12 - 6);
  const per = c.perRow === 0 ? c.n * c.k : c.k / c.perRow, groups = w.length / per;
  const wMin = new Float32Array(groups), wMax = new Float32Array(groups);
  for (let gi = 0; gi < groups; gi++) {
    for (let i = gi * per; i < (gi + 1) * per; i++) {
      wMin[gi] = Math.min(wMin[gi], w[i]);
      wMax[gi] = Math.max(wMax[gi], w[i]);
    }
  }
  let amax = 0;
  for (const x of w) amax = Math.max(amax, Math.abs(x));
  return {
    w,
    v: rng.uniform(w.length, -0.5, 0.5),
    maxScale: rng.uniform(groups, -0.05, 1.05),
    // α only matters for INT8 (quant_tensor_sym's min_scale).
    minScale: rng.uniform(groups, -0.05, 1.05),
    wMin,
    wMax,
    dOut: rng.normal(w.length, 1),
    gs: Math.fround(2688 * Math.fround(1 / amax)),
  };
}

/** The weight / activation dtype of repetition `rep`: f32, then bf16 and f16 storage. */
const DTYPES = ["f32", "bf16", "f16"] as const;

function upload(
  b: Backend,
  h: ReturnType<typeof host>,
  c: Case,
  dtype: DType = "f32",
): { w: Tensor; st: QuantState } {
  const g = h.wMin.length;
  return {
    w: b.upload(h.w, [c.n, c.k], dtype),
    st: {
      v: b.upload(h.v, [c.n, c.k]),
      minScale: b.upload(h.minScale, [g]),
      maxScale: b.upload(h.maxScale, [g]),
      wMin: b.upload(h.wMin, [g]),
      wMax: b.upload(h.wMax, [g]),
    },
  };
}

for (const c of CASES) {
  gpuTest(
    `float weights ${c.name}: Ŵ, elements, scales exact; dV exact; dβ within the bound`,
    be,
    async (gb) => {
      for (let rep = 0; rep < 3; rep++) {
        const rng = new Rng();
        const h = host(rng, c);
        const p: FloatQuantParams = { kind: "float", scheme: c.scheme, globalScale: h.gs };
        const G = upload(gb, h, c), C = upload(cpu, h, c);
        expectEqual(
          `${c.name} Ŵ`,
          await gb.read(gb.floatFakeQuant!(G.w, G.st, p)),
          await cpu.read(cpu.floatFakeQuant!(C.w, C.st, p)),
          rng,
        );
        const qg = await gb.floatQuantizeWeights!(G.w, G.st, p),
          qc = await cpu.floatQuantizeWeights!(C.w, C.st, p);
        expectEqual(`${c.name} elements`, qg.elements, qc.elements, rng);
        expectEqual(`${c.name} scales`, qg.scales, qc.scales, rng);
        const dG = gb.upload(h.dOut, [c.n, c.k]), dC = cpu.upload(h.dOut, [c.n, c.k]);
        const bg = gb.floatFakeQuantBackward!(G.w, G.st, p, dG),
          bc = cpu.floatFakeQuantBackward!(C.w, C.st, p, dC);
        const dvg = await gb.read(bg.dv), dvc = await cpu.read(bc.dv);
        // dV compares as numbers (an exact zero may carry either sign).
        expectEqual(`${c.name} dV`, Array.from(dvg, (x) => x + 0), Array.from(dvc, (x) => x + 0), rng);
        expectClose(
          `${c.name} dβ`,
          await gb.read(bg.dMaxScale),
          await cpu.read(bc.dMaxScale),
          SUM_BOUND,
          rng,
        );
        expectClose(
          `${c.name} dα`,
          await gb.read(bg.dMinScale),
          await cpu.read(bc.dMinScale),
          SUM_BOUND,
          rng,
        );
      }
    },
  );
}

interface ActCase {
  name: string;
  act: ActQuant;
  rows: number;
  k: number;
  actMax?: boolean;
  tuned?: boolean;
  inputScale?: number;
  /** rangeFromInput: the static range is this input's max|x| (reduced on the GPU). */
  range?: boolean;
}

const act = (
  dataType: ActQuant["dataType"],
  bits: number,
  groupSize: number,
  dynamic: boolean,
): ActQuant => ({
  dataType,
  bits,
  groupSize,
  dynamic,
  sym: true,
});

const ACT_CASES: ActCase[] = [
  { name: "mxfp4 act", act: act("mx_fp", 4, 32, true), rows: 67, k: 96 },
  { name: "mxfp8 rceil act", act: act("mx_fp_rceil", 8, 32, true), rows: 33, k: 64 },
  { name: "mxint4 act", act: act("mx_int", 4, 32, true), rows: 17, k: 64 },
  { name: "nvfp4 act", act: act("nv_fp", 4, 16, true), rows: 70, k: 48, actMax: true },
  { name: "fp8 static act tuned", act: act("fp", 8, 0, false), rows: 90, k: 40, actMax: true, tuned: true },
  {
    name: "fp8 static input_scale act",
    act: act("fp", 8, 0, false),
    rows: 9,
    k: 40,
    inputScale: Math.fround(0.0123),
  },
  { name: "nvfp4 act range from input", act: act("nv_fp", 4, 16, true), rows: 130, k: 32, range: true },
  {
    name: "fp8 static range from input",
    act: act("fp", 8, 0, false),
    rows: 70,
    k: 24,
    range: true,
    tuned: true,
  },
  { name: "int8 per token act", act: act("int", 8, -1, true), rows: 77, k: 72 },
  { name: "int8 per token act tuned β", act: act("int", 8, -1, true), rows: 20, k: 40, tuned: true },
  { name: "fp8 dynamic per row act", act: act("fp", 8, -1, true), rows: 65, k: 200 },
  { name: "fp8 dynamic per 64 act", act: act("fp", 8, 64, true), rows: 10, k: 192 },
];

for (const c of ACT_CASES) {
  gpuTest(`act quant ${c.name}: x̂ exact; dx, dActMaxScale within the bound`, be, async (gb) => {
    for (let rep = 0; rep < 3; rep++) {
      const rng = new Rng();
      const x = rng.normal(c.rows * c.k, 1);
      for (let i = 0; i < x.length; i += 5) x[i] *= 2 ** Math.floor(rng.next() * 10 - 5);
      let amax = 0;
      for (const v of x) amax = Math.max(amax, Math.abs(v));
      const dOut = rng.normal(x.length, 1);
      const ams = Float32Array.of(0.6 + 0.5 * rng.next());
      const args = (b: Backend): ActQuantArgs => ({
        act: c.act,
        actMax: c.actMax ? Math.fround(amax * 0.8) : undefined,
        actMaxScale: c.tuned ? b.upload(ams, [1]) : undefined,
        inputScale: c.inputScale,
        rangeFromInput: c.range,
      });
      // actMax and input_scale are float32 values in the pipeline (a max of f32 activations, a
      // checkpoint tensor); the kernels take them as f32 uniforms, so the test passes f32 values.
      const ag = args(gb), ac = args(cpu);
      const dt = DTYPES[rep], xg = gb.upload(x, [c.rows, c.k], dt), xc = cpu.upload(x, [c.rows, c.k], dt);
      expectEqual(
        `${c.name} x̂`,
        await gb.read(gb.actFakeQuant!(xg, ag)),
        await cpu.read(cpu.actFakeQuant!(xc, ac)),
        rng,
      );
      const rg = gb.actFakeQuantBackward!(xg, ag, gb.upload(dOut, [c.rows, c.k], dt));
      const rc = cpu.actFakeQuantBackward!(xc, ac, cpu.upload(dOut, [c.rows, c.k], dt));
      expectClose(`${c.name} dx`, await gb.read(rg.dx), await cpu.read(rc.dx), SUM_BOUND, rng);
      if (c.tuned) {
        expectClose(
          `${c.name} dActMaxScale`,
          await gb.read(rg.dActMaxScale!),
          await cpu.read(rc.dActMaxScale!),
          SUM_BOUND,
          rng,
        );
      }
    }
  });
}

/**
 * Inputs on the edges of the float32 decisions: group maxima and elements a few ulps below a power
 * of two (where torch's float32 log2 rounds up onto the next integer: floor_log2f / ceil_log2f),
 * exact ties of the MX / FP4 / E4M3 grids (round half to even), zeros and −0.
 */
function edgeValues(rng: Rng, n: number): Float32Array {
  const ties = [
    0.25,
    0.75,
    1.25,
    1.75,
    2.5,
    3.5,
    5,
    0.125,
    0.375,
    1.0625,
    1.125,
    13,
    26,
    36,
    208,
    0.015625 * 1.0625,
  ];
  return Float32Array.from({ length: n }, () => {
    const e = 2 ** Math.floor(rng.next() * 24 - 16), u = rng.next(), s = rng.next() < 0.5 ? -1 : 1;
    if (u < 0.35) return s * e * (1 - Math.floor(rng.next() * 120) * 2 ** -24);
    if (u < 0.7) return s * e * ties[Math.floor(rng.next() * ties.length)];
    if (u < 0.75) return s * 0;
    return s * e * rng.next() * 2;
  });
}

for (const c of CASES) {
  gpuTest(
    `float weights ${c.name} on float32 edges (β = 1, v = 0): Ŵ, elements, scales exact`,
    be,
    async (gb) => {
      for (let rep = 0; rep < 3; rep++) {
        const rng = new Rng();
        const h = host(rng, c);
        h.w.set(edgeValues(rng, h.w.length));
        h.wMin.fill(0);
        h.wMax.fill(0);
        const per = h.w.length / h.wMin.length;
        for (let i = 0; i < h.w.length; i++) {
          const gi = Math.floor(i / per);
          h.wMin[gi] = Math.min(h.wMin[gi], h.w[i]);
          h.wMax[gi] = Math.max(h.wMax[gi], h.w[i]);
        }
        h.maxScale.fill(1);
        h.minScale.fill(1);
        h.v.fill(0);
        const p: FloatQuantParams = { kind: "float", scheme: c.scheme, globalScale: h.gs };
        const G = upload(gb, h, c), C = upload(cpu, h, c);
        expectEqual(
          `${c.name} edge Ŵ`,
          await gb.read(gb.floatFakeQuant!(G.w, G.st, p)),
          await cpu.read(cpu.floatFakeQuant!(C.w, C.st, p)),
          rng,
        );
        const qg = await gb.floatQuantizeWeights!(G.w, G.st, p),
          qc = await cpu.floatQuantizeWeights!(C.w, C.st, p);
        expectEqual(`${c.name} edge elements`, qg.elements, qc.elements, rng);
        expectEqual(`${c.name} edge scales`, qg.scales, qc.scales, rng);
        const dG = gb.upload(h.dOut, [c.n, c.k]), dC = cpu.upload(h.dOut, [c.n, c.k]);
        const dvg = await gb.read(gb.floatFakeQuantBackward!(G.w, G.st, p, dG).dv);
        const dvc = await cpu.read(cpu.floatFakeQuantBackward!(C.w, C.st, p, dC).dv);
        expectEqual(`${c.name} edge dV`, Array.from(dvg, (x) => x + 0), Array.from(dvc, (x) => x + 0), rng);
      }
    },
  );
}

gpuTest("MX RCEIL / floor acts on float32 edges: x̂ exact", be, async (gb) => {
  for (const dataType of ["mx_fp_rceil", "mx_fp"] as const) {
    for (const bits of [4, 8]) {
      const rng = new Rng(), rows = 45, k = 64;
      const x = edgeValues(rng, rows * k);
      // Group maxima max_norm·2^p·(1 ± j·2^-24): log2(max/max_norm) a hair off an integer.
      const maxNorm = bits === 4 ? 6 : 448;
      for (let gi = 0; gi < rows * 2; gi++) {
        const j = Math.floor(rng.next() * 60) * (rng.next() < 0.5 ? -1 : 1);
        x[gi * 32 + Math.floor(rng.next() * 32)] = Math.fround(
          maxNorm * 2 ** (Math.floor(rng.next() * 20) - 10) * (1 + j * 2 ** -24),
        );
      }
      const a: ActQuantArgs = { act: act(dataType, bits, 32, true) };
      expectEqual(
        `${dataType}${bits} edge x̂`,
        await gb.read(gb.actFakeQuant!(gb.upload(x, [rows, k]), a)),
        await cpu.read(cpu.actFakeQuant!(cpu.upload(x, [rows, k]), a)),
        rng,
      );
    }
  }
});

reportErrors("webgpu_float_quant_test.ts");
