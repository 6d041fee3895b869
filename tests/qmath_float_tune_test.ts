/**
 * Forward values of src/qmath/float_tune.ts against float_quant.ts's mxQuantize / nvfp4Quantize (an
 * existing reference, compared bit for bit with Object.is, so −0 counts) including v ≠ 0 and
 * maxScale < 1, and SCHEMES.md § 11's worked examples (MXFP4 group, NVFP4 [2, 16]).
 */
import { floatFakeQuantRows, type FloatWeightArgs } from "../src/qmath/float_tune.ts";
import { mxFormat, mxQuantize, nvfp4Quantize } from "../src/qmath/float_quant.ts";
import type { FloatScheme } from "../src/qmath/quantized.ts";
import { assert, assertEquals } from "./assert.ts";

const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);

function args(
  w: Float32Array,
  k: number,
  scheme: FloatScheme,
  v: Float32Array,
  maxScale: Float32Array,
  gs?: number,
) {
  const g = scheme.groupSize, G = w.length / g, wMin = new Float32Array(G), wMax = new Float32Array(G);
  for (let i = 0; i < w.length; i++) {
    wMin[Math.floor(i / g)] = Math.min(wMin[Math.floor(i / g)], w[i]);
    wMax[Math.floor(i / g)] = Math.max(wMax[Math.floor(i / g)], w[i]);
  }
  return { w, k, scheme, v, maxScale, wMin, wMax, globalScale: gs } as FloatWeightArgs;
}

function sameBits(what: string, got: Float32Array, ref: Float32Array) {
  for (let i = 0; i < ref.length; i++) {
    assert(Object.is(got[i], ref[i]), `${what} at ${i}: ${got[i]} vs ${ref[i]}`);
  }
}

Deno.test("MX forward equals mxQuantize bit for bit (v = 0 / random, maxScale = 1 / < 1), in row slices", () => {
  const n = 6, k = 64, G = (n * k) / 32;
  for (const [dt, bits] of [["mx_fp", 4], ["mx_fp", 6], ["mx_fp", 8], ["mx_int", 4]] as const) {
    for (const tuned of [false, true]) {
      const w = rnd(n * k, 0.08);
      w[5] = -1e-4; // small negative → −0.0 (§ 3.3)
      const v = tuned ? rnd(n * k, 0.5) : new Float32Array(n * k);
      const ms = tuned
        ? Float32Array.from({ length: G }, () => 0.5 + 0.5 * Math.random())
        : new Float32Array(G).fill(1);
      const a = args(w, k, { bits, groupSize: 32, sym: true, dataType: dt }, v, ms);
      const out = new Float32Array(n * k), sc = new Float32Array(G);
      floatFakeQuantRows(a, 0, 2, out, undefined, sc);
      floatFakeQuantRows(a, 2, n, out, undefined, sc);
      const ref = mxQuantize(w, n, k, 32, mxFormat(`${dt}${bits}`, bits), { v, maxScale: ms });
      sameBits(`${dt}${bits} tuned=${tuned}`, out, ref.values);
      sameBits(`${dt}${bits} exp`, sc, ref.sharedExp);
      if (!tuned && bits === 4) assert(Object.is(out[5], -0), "small negative gives −0");
    }
  }
});

Deno.test("NVFP4 forward equals nvfp4Quantize bit for bit (v, maxScale), and an all-zero group is 0", () => {
  const n = 4, k = 64, G = (n * k) / 16;
  for (const tuned of [false, true]) {
    const w = rnd(n * k, 0.1);
    w.fill(0, 16, 32);
    const v = tuned ? rnd(n * k, 0.5) : new Float32Array(n * k);
    const ms = tuned
      ? Float32Array.from({ length: G }, () => 0.5 + 0.5 * Math.random())
      : new Float32Array(G).fill(1);
    const gs = Math.fround(2688 * Math.fround(1 / 0.1));
    const a = args(w, k, { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp" }, v, ms, gs);
    const out = new Float32Array(n * k), sc = new Float32Array(G);
    floatFakeQuantRows(a, 0, n, out, undefined, sc);
    const ref = nvfp4Quantize(w, n, k, { globalScale: gs, v, maxScale: ms });
    sameBits(`nv tuned=${tuned}`, out, ref.values);
    sameBits("nv s8", sc, ref.scales);
    assertEquals(sc[1], 0);
    for (let i = 16; i < 32; i++) assertEquals(Math.abs(out[i]), 0);
  }
});

Deno.test("SCHEMES.md § 11.1 MXFP4 group and § 11.3 NVFP4 tensor reproduced", () => {
  const w = new Float32Array(32);
  w.set([0.059, -0.0009, 0.01953125, 0.001953125, -0.009765625, 0.0390625, 0.0271, -0.0123]);
  const mx = args(
    w,
    32,
    { bits: 4, groupSize: 32, sym: true, dataType: "mx_fp" },
    new Float32Array(32),
    Float32Array.of(1),
  );
  const out = new Float32Array(32), el = new Float32Array(32), sc = new Float32Array(1);
  floatFakeQuantRows(mx, 0, 1, out, el, sc);
  assertEquals(sc[0], -7);
  assertEquals([...el.subarray(0, 8)], [6, -0, 2, 0, -1, 4, 3, -1.5]);
  assertEquals([...out.subarray(0, 8)], [
    0.046875,
    -0,
    0.015625,
    0,
    -0.0078125,
    0.03125,
    0.0234375,
    -0.01171875,
  ]);
  const nw = new Float32Array(32);
  nw.set([3, -1, 0.5, 0.25]);
  nw.set(
    [0.4, -0.35, 0.2, 0.1, -0.05, 0.3, 0.013, -0.0021, 0.25, 0.15, -0.4, 0, 0.07, 0.12, -0.18, 0.33],
    16,
  );
  const nv = args(
    nw,
    16,
    { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp" },
    new Float32Array(32),
    Float32Array.of(1, 1),
  );
  const no = new Float32Array(32), ne = new Float32Array(32), ns = new Float32Array(2);
  floatFakeQuantRows(nv, 0, 2, no, ne, ns); // no globalScale: the tensor's own, 2688/3 = 896
  assertEquals([...ns], [448, 60]);
  assertEquals([...ne.subarray(16)], [6, -6, 3, 1.5, -0.5, 4, 0, -0, 4, 2, -6, 0, 1, 2, -3, 4]);
  const f = Math.fround;
  const expect = [
    0.40178573,
    -0.40178573,
    0.20089287,
    0.10044643,
    -0.03348215,
    0.26785716,
    0,
    -0,
    0.26785716,
  ];
  // § 11.3 prints 8 decimals: equal within half a unit of the last printed digit, and the same sign.
  expect.forEach((e, j) => {
    const got = no[16 + j];
    assert(
      Math.abs(got - f(e)) <= 5e-9 && Object.is(Math.sign(got), Math.sign(e)),
      `nv row 1 col ${j}: ${got} vs ${e}`,
    );
  });
});
