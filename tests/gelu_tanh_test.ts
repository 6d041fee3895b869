/**
 * Gemma's GeGLU (geluTanhMul, geluTanhMulBackward) and logit soft cap (tanhSoftcap) on the CPU
 * backend: forward against golden values of gelu(x, approximate="tanh") and a plain f64 formula
 * written here, backward against f64 central differences, and 2 threads against one bit for bit.
 */
import type { Backend, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { assert, assertSameNumbers, maxRelError } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";
import { Rng } from "./webgpu_helpers.ts";

/** x/2·(1 + tanh(√(2/π)(x + 0.044715x³))), PyTorch's gelu(approximate="tanh"). */
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
const f64 = (t: Tensor) => (t as unknown as { f: Float64Array }).f;
const ops = (be: Backend) => {
  assert(be.geluTanhMul && be.geluTanhMulBackward && be.tanhSoftcap, `${be.name} lacks the Gemma ops`);
  return {
    mul: be.geluTanhMul.bind(be),
    back: be.geluTanhMulBackward.bind(be),
    cap: be.tanhSoftcap.bind(be),
  };
};

Deno.test("geluTanhMul: golden values of gelu_tanh (to 1e-15) and the f64 formula on random inputs (1e-15)", () => {
  using be = new CpuBackend({ precision: "f64" });
  // Computed with Python's math module from the formula above; gelu_tanh(1) = 0.8411920 is PyTorch's.
  const golden: [number, number][] = [
    [-3, -0.0036373920817729943],
    [-1, -0.15880800939172324],
    [-0.5, -0.15428599017485606],
    [0.5, 0.34571400982514394],
    [1, 0.8411919906082768],
    [2, 1.954597694087775],
  ];
  const g = Float64Array.from(golden, ([x]) => x);
  const h = f64(ops(be).mul(be.upload(g, [2, 3]), be.upload(new Float64Array(6).fill(1), [2, 3])));
  golden.forEach(([x, y], i) => assert(Math.abs(h[i] - y) <= 1e-15, `gelu_tanh(${x}) = ${h[i]}, want ${y}`));

  const r = new Rng(1), G = Float64Array.from(r.normal(600, 3)), U = Float64Array.from(r.normal(600));
  const got = f64(ops(be).mul(be.upload(G, [20, 30]), be.upload(U, [20, 30])));
  const want = G.map((x, i) => gelu(x) * U[i]);
  const err = maxRelError(got, want);
  console.log(`  geluTanhMul vs f64 formula: ${err.toExponential(2)}`);
  assert(err < 1e-15, `${err}`);
});

Deno.test("geluTanhMulBackward: dg and du match f64 central differences within 1e-8 (with and without overwrite)", () => {
  using be = new CpuBackend({ precision: "f64" });
  const r = new Rng(2), n = 240;
  const G = Float64Array.from(r.normal(n, 3)),
    U = Float64Array.from(r.normal(n)),
    R = Float64Array.from(r.normal(n));
  const f = () => {
    const h = f64(ops(be).mul(be.upload(G, [12, 20]), be.upload(U, [12, 20])));
    return h.reduce((s, y, i) => s + y * R[i], 0);
  };
  for (const overwrite of [false, true]) {
    const { dg, du } = ops(be).back(be.upload(G, [12, 20]), be.upload(U, [12, 20]), be.upload(R, [12, 20]), {
      overwrite,
    });
    const all = [...G.keys()];
    const [eg, eu] = [fdCheck(G, f64(dg), f, all), fdCheck(U, f64(du), f, all)];
    console.log(
      `  overwrite ${overwrite}: finite differences dg ${eg.toExponential(2)}, du ${eu.toExponential(2)}`,
    );
    assert(eg < 1e-8 && eu < 1e-8, `dg ${eg}, du ${eu}`);
  }
});

Deno.test("tanhSoftcap: x ← cap·tanh(x/cap) in place, within 1e-15 of the f64 formula, bounded by the cap", () => {
  using be = new CpuBackend({ precision: "f64" });
  const x = Float64Array.from(new Rng(3).normal(500, 40)), t = be.upload(x, [5, 100]);
  ops(be).cap(t, 30);
  const got = f64(t), want = x.map((v) => 30 * Math.tanh(v / 30));
  assert(maxRelError(got, want) < 1e-15, `${maxRelError(got, want)}`);
  assert(got.every((v) => Math.abs(v) < 30) && maxRelError(got, x) > 0.1, "the cap did not bite");
});

Deno.test("geluTanhMul(+Backward) and tanhSoftcap on 2 threads give the single-threaded bits", async () => {
  using ref = new CpuBackend();
  using thr = await CpuBackend.create({ threads: 2, blas: "none" });
  const r = new Rng(4), n = 4 * 32768 + 17, shape = [n];
  const [G, U, DH] = [r.normal(n, 3), r.normal(n), r.normal(n)];
  const run = async (be: Backend) => {
    const o = ops(be), up = (x: Float32Array) => be.upload(x, shape);
    const h = o.mul(up(G), up(U));
    const { dg, du } = o.back(up(G), up(U), up(DH));
    const c = up(G);
    o.cap(c, 2);
    return await Promise.all([h, dg, du, c].map((t) => be.read(t)));
  };
  const [a, b] = [await run(ref), await run(thr)];
  a.forEach((x, i) => assertSameNumbers(b[i], x, `output ${i}`));
});
