/**
 * The host reference of the MX and NVFP4 quantizers (src/qmath/float_quant.ts) against independent
 * references: every element format's values enumerated from its bit layout (sign, exponent with
 * bias, mantissa, subnormals), nearest value with ties to the even code — the rule torch's FP8 cast
 * and auto-round's quant_element / cast_to_fp4 implement; hand-worked shared exponents (floor and
 * RCEIL rules, the zero group, torch's float32 log2 just below a power of two); NVFP4 against its
 * closed form for one group.
 */
import { assert, assertEquals } from "./assert.ts";
import {
  castToFp4,
  E4M3_MAX,
  MX_FORMATS,
  mxQuantize,
  nvfp4Quantize,
  quantElement,
  roundE4M3,
} from "../src/qmath/float_quant.ts";

/** All finite non-negative values of a float format with `e` exponent bits and `m` mantissa bits. */
function enumerate(e: number, m: number, bias: number, max: number): number[] {
  const out: number[] = [];
  for (let code = 0; code < 2 ** (e + m); code++) {
    const exp = code >> m, man = code & (2 ** m - 1);
    const v = exp === 0 ? (man / 2 ** m) * 2 ** (1 - bias) : (1 + man / 2 ** m) * 2 ** (exp - bias);
    if (v <= max) out.push(v);
  }
  return out; // index = code: ascending, so an even index is an even code
}

/** Nearest value of the table to |x| (clamped to the largest), ties to the even code. */
function nearest(table: number[], x: number): number {
  const a = Math.min(Math.abs(x), table[table.length - 1]);
  let best = 0;
  for (let i = 1; i < table.length; i++) {
    const d = Math.abs(table[i] - a), db = Math.abs(table[best] - a);
    if (d < db || (d === db && i % 2 === 0)) best = i;
  }
  return Math.sign(x) * table[best];
}

const TABLES = {
  mx_fp4: enumerate(2, 1, 1, 6),
  mx_fp6e2m3: enumerate(2, 3, 1, 7.5),
  mx_fp6e3m2: enumerate(3, 2, 3, 28),
  mx_fp8e4m3: enumerate(4, 3, 7, 448),
  mx_fp8e5m2: enumerate(5, 2, 15, 57344),
};

function samples(max: number, count: number, seed: number): number[] {
  let s = seed >>> 0;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = s / 2 ** 32;
    // Log-uniform magnitudes over the format's range and beyond, both signs.
    out.push(Math.fround((u < 0.5 ? -1 : 1) * max * 1.2 * 2 ** (-12 * ((u * 2) % 1))));
  }
  return out;
}

Deno.test("quant_element equals the nearest value of each MX element format (ties to even code)", () => {
  for (const [name, table] of Object.entries(TABLES)) {
    const fmt = MX_FORMATS[name];
    const xs = samples(fmt.maxNorm, 4000, name.length);
    for (let i = 0; i + 1 < table.length; i++) {
      xs.push(table[i], (table[i] + table[i + 1]) / 2, -table[i + 1]);
    }
    for (const x of xs) {
      const got = quantElement(x, fmt), want = nearest(table, x);
      assert(Object.is(got + 0, want + 0), `${name}: quant_element(${x}) = ${got}, nearest is ${want}`);
    }
  }
  // Ties by hand (E2M1): 0.25 → 0, 0.75 → 1, 2.5 → 2, 3.5 → 4, 5 → 4.
  assertEquals([0.25, 0.75, 2.5, 3.5, 5].map((x) => quantElement(x, MX_FORMATS.mx_fp4)), [0, 1, 2, 4, 4]);
});

Deno.test("cast_to_fp4 (vLLM's rule) and the E4M3 cast equal their tables' nearest values", () => {
  const e2m1 = TABLES.mx_fp4, e4m3 = TABLES.mx_fp8e4m3;
  for (const x of samples(6, 3000, 7)) assertEquals(castToFp4(x), nearest(e2m1, x), `cast_to_fp4(${x})`);
  for (let i = 0; i + 1 < e2m1.length; i++) {
    const mid = (e2m1[i] + e2m1[i + 1]) / 2;
    assertEquals(castToFp4(mid), nearest(e2m1, mid), `tie ${mid}`);
  }
  for (const x of samples(E4M3_MAX / 1.2, 5000, 11)) {
    assertEquals(roundE4M3(x), nearest(e4m3, x), `E4M3(${x})`);
  }
  for (let i = 0; i + 1 < e4m3.length; i++) {
    const mid = (e4m3[i] + e4m3[i + 1]) / 2;
    assertEquals(roundE4M3(mid), nearest(e4m3, mid), `E4M3 tie ${mid}`);
  }
});

Deno.test("MX shared exponents: floor and RCEIL rules, a zero group, torch's f32 log2 below 2^10", () => {
  const fp4 = MX_FORMATS.mx_fp4;
  const group = (max: number) => Float32Array.from({ length: 32 }, (_, i) => (i === 5 ? max : max / 3));
  // floor(log2 5) − emax(2) = 0: scale 1; elements on the E2M1 grid (5 → 4, 5/3 → 1.5).
  const a = mxQuantize(group(5), 1, 32, 32, fp4);
  assertEquals([a.sharedExp[0], a.values[5], a.values[0]], [0, 4, 1.5]);
  // RCEIL: ceil(log2(7/6)) = 1: scale 2, 7/2 = 3.5 → 4 → 8; floor rule: floor(log2 7) − 2 = 0, 7 → 6.
  const r = mxQuantize(group(7), 1, 32, 32, fp4, { rceil: true });
  assertEquals([r.sharedExp[0], r.values[5]], [1, 8]);
  assertEquals(mxQuantize(group(7), 1, 32, 32, fp4).values[5], 6);
  // A zero group: log2 taken as 1 → exponent 1 − emax; all zeros.
  const z = mxQuantize(new Float32Array(32), 1, 32, 32, fp4);
  assertEquals([z.sharedExp[0], Math.max(...z.values.map(Math.abs))], [-1, 0]);
  // 1024 − 2⁻¹⁴ (f32): exact log2 is 9.99999991, torch's f32 log2 rounds to 10.
  const m = Math.fround(1024 - 2 ** -14);
  assertEquals(mxQuantize(group(m), 1, 32, 32, fp4).sharedExp[0], 10 - 2);
  // The exponent saturates at ±127.
  assertEquals(mxQuantize(group(2 ** -140), 1, 32, 32, fp4).sharedExp[0], -127);
  // v shifts before rounding; max_scale scales the group maximum.
  const v = new Float32Array(32).fill(0.3);
  assertEquals(mxQuantize(group(5), 1, 32, 32, fp4, { v }).values[0], 2); // 5/3 + 0.3 = 1.97 → 2
  assertEquals(mxQuantize(group(5), 1, 32, 32, fp4, { maxScale: Float32Array.of(0.5) }).sharedExp[0], -1);
});

Deno.test("NVFP4: one group's values equal castToFp4(6·w/max)·max/6, scales on the E4M3 grid", () => {
  const w = Float32Array.from(
    { length: 32 },
    (_, i) => Math.fround(Math.sin(i * 1.7) * (i < 16 ? 2.4 : 0.05)),
  );
  const r = nvfp4Quantize(w, 2, 16);
  const amax = Math.max(...w.map(Math.abs));
  assertEquals(r.globalScale, Math.fround(Math.fround(448 * 6) * Math.fround(1 / amax)));
  for (const s of r.scales) assertEquals(roundE4M3(s), s, `scale ${s} not an E4M3 value`);
  // The group holding the tensor's maximum has scale 448: values castToFp4(6w/max)·max/6.
  const first = w.subarray(0, 16), fmax = Math.max(...first.map(Math.abs));
  assertEquals(fmax, amax);
  for (let i = 0; i < 16; i++) {
    const want = castToFp4((6 * first[i]) / fmax) * (fmax / 6);
    assert(Math.abs(r.values[i] - want) <= 1e-6 * fmax, `value ${i}: ${r.values[i]} vs ${want}`);
  }
  // The small group: its own E4M3 scale, every value a multiple of it on the E2M1 grid.
  const s1 = r.scales[1] / r.globalScale;
  for (let i = 16; i < 32; i++) {
    const q = r.values[i] / s1;
    assert(Math.abs(q - castToFp4(q)) < 1e-4, `value ${i}: ${r.values[i]} is not on the scaled grid`);
  }
});

Deno.test("the worked examples of spec/SCHEMES.md § 11 (numpy float32 emulation of auto-round)", () => {
  // § 11.1: MXFP4, floor rule.
  const x = new Float32Array(32);
  x.set([0.059, -0.0009, 0.01953125, 0.001953125, -0.009765625, 0.0390625, 0.0271, -0.0123]);
  const fp4 = MX_FORMATS.mx_fp4;
  const a = mxQuantize(x, 1, 32, 32, fp4);
  assertEquals(a.sharedExp[0], -7);
  assertEquals(
    Array.from(a.values.subarray(0, 8)),
    [0.046875, -0, 0.015625, 0, -0.0078125, 0.03125, 0.0234375, -0.01171875],
  );
  // § 11.2: RCEIL: exponent −6, elements 4, −0, 1, 0, −0.5, 2, 1.5, −1.
  const r = mxQuantize(x, 1, 32, 32, fp4, { rceil: true });
  assertEquals(r.sharedExp[0], -6);
  assertEquals(Array.from(r.values.subarray(0, 8), (v) => v * 64), [4, -0, 1, 0, -0.5, 2, 1.5, -1]);
  // § 11.3: NVFP4 [2, 16].
  const w = new Float32Array(32);
  w.set([3.0, -1.0, 0.5, 0.25], 0);
  w.set([0.4, -0.35, 0.2, 0.1, -0.05, 0.3, 0.013, -0.0021, 0.25, 0.15, -0.4, 0, 0.07, 0.12, -0.18, 0.33], 16);
  const nv = nvfp4Quantize(w, 2, 16);
  assertEquals([nv.globalScale, nv.scales[0], nv.scales[1]], [896, 448, 60]);
  const want = [
    0.40178573,
    -0.40178573,
    0.20089287,
    0.10044643,
    -0.03348215,
    0.26785716,
    0,
    -0,
    0.26785716,
    0.13392858,
    -0.40178573,
    0,
    0.06696429,
    0.13392858,
    -0.20089287,
    0.26785716,
  ];
  for (let i = 0; i < 16; i++) {
    assert(Math.abs(nv.values[16 + i] - want[i]) <= 1e-8, `row 1 [${i}]: ${nv.values[16 + i]} vs ${want[i]}`);
  }
});
