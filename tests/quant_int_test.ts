/**
 * The integer quantizers against Intel auto-round itself: tests/fixtures/autoround_goldens.json
 * holds inputs, outputs and torch-autograd gradients of auto-round's `quant_tensor_sym`,
 * `quant_tensor_asym` and `quant_tensor_opt_rtn_sym` (run by tools/autoround_oracle.py on the GPU
 * machine with torch 2.11; trimmed by tools/trim_goldens.py).
 */
import {
  fakeQuantize,
  fakeQuantizeBackward,
  groupMinMax,
  importanceForWeight,
  type QuantMath,
  resolveGroupSize,
  searchScalesSym,
} from "../src/qmath/int_quant.ts";
import { roundHalfEven } from "../src/tensor/dtype.ts";
import { assert, assertEquals, assertSameNumbers, fixture, maxRelError } from "./assert.ts";

interface Case {
  bits: number;
  sym: boolean;
  group_size: number;
  n: number;
  k: number;
  w: number[];
  v: number[];
  min_scale: number[];
  max_scale: number[];
  upstream: number[];
  qdq: number[];
  scale: number[];
  zp: number[] | number;
  dv: number[];
  dmin: number[];
  dmax: number[];
}
interface OptCase {
  bits: number;
  group_size: number;
  n: number;
  k: number;
  w: number[];
  imatrix: number[];
  scale: number[];
}
const goldens: { cases: Case[]; opt_rtn: OptCase[] } = JSON.parse(
  await Deno.readTextFile(fixture("autoround_goldens.json")),
);

const math = (bits: number, sym: boolean): QuantMath => ({
  bits,
  sym,
  roundScale: Math.f16round,
  scaleThresh: 1e-5,
});

function run(c: Case) {
  const w = Float32Array.from(c.w);
  const layout = { n: c.n, k: c.k, g: resolveGroupSize(c.group_size, c.k) };
  const { wMin, wMax } = groupMinMax(w, layout);
  const t = {
    v: Float32Array.from(c.v),
    minScale: Float32Array.from(c.min_scale),
    maxScale: Float32Array.from(c.max_scale),
    wMin,
    wMax,
  };
  return { w, layout, t, m: math(c.bits, c.sym) };
}

Deno.test("fake-quant forward equals auto-round bit for bit (sym/asym, 2/3/4/8 bits, group 32/-1, tuned V/α/β)", () => {
  assertEquals(goldens.cases.length, 32);
  for (const c of goldens.cases) {
    const { w, layout, t, m } = run(c);
    const out = new Float32Array(w.length);
    const G = Math.ceil(c.k / layout.g);
    const exp = {
      codes: new Uint8Array(w.length),
      scales: new Float32Array(c.n * G),
      zeros: new Int32Array(c.n * G),
    };
    fakeQuantize(w, layout, m, t, out, exp);
    const label = `${c.bits}b ${c.sym ? "sym" : "asym"} g${c.group_size}`;
    assertSameNumbers(out, c.qdq.map(Math.fround), `${label} qdq`);
    assertSameNumbers(exp.scales, c.scale.map(Math.fround), `${label} scale`);
    if (!c.sym) {
      for (let i = 0; i < exp.zeros.length; i++) assertEquals(exp.zeros[i], (c.zp as number[])[i]);
    } else assertEquals(exp.zeros[0], c.zp as number);
  }
});

Deno.test("straight-through gradients equal torch autograd through auto-round (dV exact, dα/dβ ≤ 1e-5)", () => {
  let worst = 0;
  for (const c of goldens.cases) {
    const { w, layout, t, m } = run(c);
    const dv = new Float32Array(w.length),
      dmin = new Float32Array(t.wMin.length),
      dmax = new Float32Array(t.wMin.length);
    fakeQuantizeBackward(w, layout, m, t, Float32Array.from(c.upstream), dv, dmin, dmax);
    assertSameNumbers(dv, c.dv.map(Math.fround), "dv");
    // auto-round sums the scale gradient in fp16 (the scale tensor's dtype); our emulation leaves
    // only float32 summation-order differences.
    const e = Math.max(maxRelError(dmin, c.dmin), maxRelError(dmax, c.dmax));
    worst = Math.max(worst, e);
    assert(e <= 1e-5, `${c.bits}b ${c.sym ? "sym" : "asym"} g${c.group_size}: α/β gradient error ${e}`);
  }
  console.log(`  worst α/β gradient error ${worst.toExponential(2)}`);
});

Deno.test("optimized-RTN scale search equals auto-round's (with imatrix, incl. zero-importance fallback)", () => {
  for (const c of goldens.opt_rtn) {
    const w = Float32Array.from(c.w);
    const layout = { n: c.n, k: c.k, g: c.group_size };
    const imp = importanceForWeight(Float32Array.from(c.imatrix), w, layout, c.bits);
    const sc = searchScalesSym(w, layout, c.bits, imp, 1e-5);
    // Same grid, same argmin; the values differ only by float32 vs float64 arithmetic.
    const e = maxRelError(sc, c.scale);
    assert(e < 1e-6, `${c.bits} bits: scale error ${e}`);
  }
});

Deno.test("roundHalfEven matches torch.round on ties", () => {
  assertEquals([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 2.4999, -3.5].map(roundHalfEven), [
    -2,
    -2,
    -0,
    0,
    2,
    2,
    4,
    2,
    -4,
  ]);
});
