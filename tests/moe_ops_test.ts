/**
 * The CPU backend's mixture-of-experts row ops (gatherRows, scatterAddRows, rowDots, readSync)
 * against plain loops over host arrays, in f32, bf16 and the f64 gradient-check mode.
 */
import type { Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { BackendError } from "../src/errors.ts";
import { roundBf16 } from "../src/tensor/dtype.ts";
import { assert, assertEquals, assertSameNumbers, assertThrows } from "./assert.ts";

/** mulberry32: seeded, so a failure reproduces. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = (r: () => number, n: number) => Float64Array.from({ length: n }, () => r() * 2 - 1);

const be = new CpuBackend();
const be64 = new CpuBackend({ precision: "f64" });
const R = 7, C = 5;
const rows = [3, 0, 3, 6, 1, 3]; // repeats: scatter-add must accumulate them
const scale = [0.5, -1.25, 2, 0.125, 3, -0.75];

function gatherRef(x: ArrayLike<number>, s?: number[]): number[] {
  return rows.flatMap((r, i) => Array.from({ length: C }, (_, c) => (s ? s[i] : 1) * x[r * C + c]));
}
function scatterRef(out: ArrayLike<number>, src: ArrayLike<number>, s?: number[], round = Math.fround) {
  const o = Array.from(out);
  rows.forEach((r, i) => {
    for (let c = 0; c < C; c++) o[r * C + c] = round(o[r * C + c] + (s ? s[i] : 1) * src[i * C + c]);
  });
  return o;
}

Deno.test("gatherRows: out[i] = scale[i]·x[rows[i]], f32 results equal the rounded plain loop exactly", () => {
  const x = rand(rng(1), R * C);
  using X = be.upload(x, [R, C]);
  using rowsT = be.uploadInt(Int32Array.from(rows), [rows.length]);
  using sT = be.upload(Float32Array.from(scale), [rows.length]);
  using plain = be.gatherRows(X, rowsT);
  using scaled = be.gatherRows(X, rowsT, sT);
  const xf = Float32Array.from(x);
  assertEquals(plain.shape, [rows.length, C]);
  assertSameNumbers(be.readSync(plain), gatherRef(xf).map(Math.fround), "unscaled");
  assertSameNumbers(be.readSync(scaled), gatherRef(xf, scale).map(Math.fround), "scaled");
});

Deno.test("gatherRows keeps x's dtype: a bf16 source gives bf16-rounded products", () => {
  const x = rand(rng(2), R * C);
  using X = be.upload(x, [R, C], "bf16");
  using rowsT = be.uploadInt(Int32Array.from(rows), [rows.length]);
  using sT = be.upload(Float32Array.from([0.3, 0.7, 1.1, 1.3, 1.7, 1.9]), [rows.length]);
  using out = be.gatherRows(X, rowsT, sT);
  assertEquals(out.dtype, "bf16");
  const xb = x.map(roundBf16), s = Array.from(be.readSync(sT));
  assertSameNumbers(be.readSync(out), gatherRef(xb, s).map(roundBf16));
});

Deno.test("scatterAddRows: repeated rows accumulate in order, f32 and bf16 round after each add", () => {
  for (const dtype of ["f32", "bf16"] as const) {
    const r = rng(3), o = rand(r, R * C), src = rand(r, rows.length * C);
    const round = dtype === "bf16" ? roundBf16 : Math.fround;
    using O = be.upload(o, [R, C], dtype);
    using S = be.upload(src, [rows.length, C], dtype);
    using rowsT = be.uploadInt(Int32Array.from(rows), [rows.length]);
    using sT = be.upload(Float32Array.from(scale), [rows.length]);
    const o0 = Array.from(be.readSync(O)), s0 = Array.from(be.readSync(S));
    be.scatterAddRows(O, S, rowsT, sT);
    assertSameNumbers(be.readSync(O), scatterRef(o0, s0, scale, round), `${dtype} scaled`);
    const o1 = Array.from(be.readSync(O));
    be.scatterAddRows(O, S, rowsT);
    assertSameNumbers(be.readSync(O), scatterRef(o1, s0, undefined, round), `${dtype} unscaled`);
  }
});

Deno.test("rowDots: per-row dot products (f64 sum), and f64 mode keeps full precision in readSync", () => {
  const r = rng(4), a = rand(r, R * C), b = rand(r, R * C);
  const ref = (x: ArrayLike<number>, y: ArrayLike<number>) =>
    Array.from({ length: R }, (_, i) => {
      let s = 0;
      for (let c = 0; c < C; c++) s += x[i * C + c] * y[i * C + c];
      return s;
    });
  using A = be.upload(a, [R, C]), B = be.upload(b, [R, C]);
  using d = be.rowDots(A, B);
  assertEquals([d.shape, d.dtype], [[R], "f32"]);
  assertSameNumbers(be.readSync(d), ref(Float32Array.from(a), Float32Array.from(b)).map(Math.fround));
  using A64 = be64.upload(a, [R, C]), B64 = be64.upload(b, [R, C]);
  using d64 = be64.rowDots(A64, B64);
  const got = be64.readSync(d64);
  assert(got instanceof Float64Array, "an f64 backend's readSync returns Float64Array");
  assertSameNumbers(got, ref(a, b));
  assert(be.readSync(A) instanceof Float32Array);
});

Deno.test("f64 backend: gather and scatter-add are exact in double precision", () => {
  const r = rng(5), x = rand(r, R * C), src = rand(r, rows.length * C);
  using X = be64.upload(x, [R, C]);
  using rowsT = be64.uploadInt(Int32Array.from(rows), [rows.length]);
  using sT = be64.upload(Float64Array.from(scale), [rows.length]);
  using g = be64.gatherRows(X, rowsT, sT);
  assertSameNumbers(be64.readSync(g), gatherRef(x, scale));
  using S = be64.upload(src, [rows.length, C]);
  be64.scatterAddRows(X, S, rowsT, sT);
  assertSameNumbers(be64.readSync(X), scatterRef(x, src, scale, (v) => v));
});

Deno.test("readSync is a copy; views read their own rows", () => {
  using X = be.upload(Float32Array.from({ length: R * C }, (_, i) => i), [R, C]);
  const a = be.readSync(X);
  a[0] = 99;
  assertEquals(be.readSync(X)[0], 0);
  using v: Tensor = be.rows(X, 2, 3);
  assertSameNumbers(be.readSync(v), Array.from({ length: 3 * C }, (_, i) => i + 2 * C));
});

Deno.test("row indices out of range and mismatched shapes are BackendErrors", () => {
  using X = be.upload(new Float32Array(R * C), [R, C]);
  using bad = be.uploadInt(Int32Array.from([0, R]), [2]);
  using neg = be.uploadInt(Int32Array.from([-1]), [1]);
  assertThrows(() => be.gatherRows(X, bad), BackendError, "outside [0, 7)");
  assertThrows(() => be.gatherRows(X, neg), BackendError, "outside");
  using S = be.upload(new Float32Array(2 * C), [2, C]);
  assertThrows(() => be.scatterAddRows(X, S, bad), BackendError, "outside");
  using one = be.uploadInt(Int32Array.from([0]), [1]);
  assertThrows(() => be.scatterAddRows(X, S, one), BackendError, "src");
  using sc = be.upload(new Float32Array(3), [3]);
  using two = be.uploadInt(Int32Array.from([0, 1]), [2]);
  assertThrows(() => be.gatherRows(X, two, sc), BackendError, "3 scales for 2 rows");
  using Y = be.upload(new Float32Array(R * 4), [R, 4]);
  assertThrows(() => be.rowDots(X, Y), BackendError, "differ");
});
