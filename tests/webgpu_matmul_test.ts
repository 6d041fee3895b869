// WebGPU matmul against the CPU reference: every transpose form, odd sizes that do not divide the
// tiles, alpha/beta accumulation into `out`, f32 and f16 operands, rows() views as operands.
import { both, cpu, expectClose, gpuTest, openGpu, reportErrors, Rng } from "./webgpu_helpers.ts";
import type { Tensor } from "../src/backend/backend.ts";
import { runMatmul } from "../src/backend/webgpu/mod.ts";
import { gpu } from "../src/backend/webgpu/tensor.ts";
import { expandMatmul } from "../src/backend/webgpu/matmul.ts";
import { kernelSource, unrollMarked, WGSL_SOURCES } from "../src/backend/webgpu/kernels.ts";

const be = await openGpu();

const FORMS = [
  { transA: false, transB: true },
  { transA: false, transB: false },
  { transA: true, transB: false },
  { transA: true, transB: true },
];

// Sizes that divide no tile (scalar loads) and aligned ones (vector loads). Each form and dtype
// compiles its own pipelines — about a second each on llvmpipe — so f16 runs the aligned case on
// the forward (A·Bᵀ) and weight-gradient (Aᵀ·B) forms only.
const ODD: [number, number, number][] = [[37, 29, 45], [130, 9, 71]];
const ALIGNED: [number, number, number] = [64, 40, 32];

for (const dtype of ["f32", "f16"] as const) {
  const bound = dtype === "f32" ? 1e-5 : 4e-3;
  for (const f of FORMS) {
    gpuTest(
      `matmul ${dtype} transA=${f.transA} transB=${f.transB} matches the CPU on odd and aligned sizes`,
      be,
      async (be) => {
        const rng = new Rng();
        const aligned = dtype === "f32" || f.transA !== f.transB;
        for (const [M, N, K] of aligned ? [...ODD, ALIGNED] : ODD) {
          const a = rng.uniform(M * K), b = rng.uniform(K * N);
          const [ga, ca] = both(be, a, f.transA ? [K, M] : [M, K], dtype);
          const [gb, cb] = both(be, b, f.transB ? [N, K] : [K, N], dtype);
          using g = be.matmul(ga, gb, f);
          const ref = await cpu.read(cpu.matmul(ca, cb, f));
          const got = await be.read(g);
          expectClose(
            `matmul ${dtype} ${f.transA ? "Aᵀ" : "A"}·${f.transB ? "Bᵀ" : "B"}`,
            got,
            ref,
            bound,
            rng,
          );
          if (dtype === "f16") {
            // What f16 compute costs against f32 math on the unrounded values (inputs, output rounded).
            const exact = await cpu.read(cpu.matmul(cpu.upload(a, ca.shape), cpu.upload(b, cb.shape), f));
            expectClose("matmul f16 vs f32 on unrounded inputs", got, exact, 1e-2, rng);
          }
          ga[Symbol.dispose]();
          gb[Symbol.dispose]();
        }
      },
    );
  }
}

gpuTest(
  "matmul alpha/beta accumulates into out (also when out aliases nothing, and K chunks)",
  be,
  async (be) => {
    const rng = new Rng();
    for (const f of FORMS) {
      const [M, N, K] = [23, 18, 33];
      const a = rng.uniform(M * K), b = rng.uniform(K * N), c = rng.uniform(M * N);
      const [ga, ca] = both(be, a, f.transA ? [K, M] : [M, K]);
      const [gb, cb] = both(be, b, f.transB ? [N, K] : [K, N]);
      const [gc, cc] = both(be, c, [M, N]);
      const o = { ...f, alpha: -0.75, beta: 1.5 };
      be.matmul(ga, gb, { ...o, out: gc });
      cpu.matmul(ca, cb, { ...o, out: cc });
      expectClose("matmul alpha/beta out", await be.read(gc), await cpu.read(cc), 1e-5, rng);
    }
  },
);

gpuTest("matmul beta = 0 ignores NaN already in out; out may alias an operand", be, async (be) => {
  const rng = new Rng();
  const a = rng.uniform(12 * 12);
  const [ga, ca] = both(be, a, [12, 12]);
  using gc = be.full([12, 12], NaN);
  be.matmul(ga, ga, { out: gc, beta: 0 });
  const ref = await cpu.read(cpu.matmul(ca, ca));
  expectClose("matmul beta=0 over NaN", await be.read(gc), ref, 1e-5, rng);
  // out = a: the product is formed in a temporary first (the reference works on a copy).
  be.matmul(ga, ga, { out: ga, alpha: 2, beta: 1 });
  using cc = cpu.upload(a, [12, 12]);
  cpu.matmul(ca, ca, { out: cc, alpha: 2, beta: 1 });
  expectClose("matmul out aliases A", await be.read(ga), await cpu.read(cc), 1e-5, rng);
});

gpuTest("matmul on rows() views and f16 output rounding matches the CPU", be, async (be) => {
  const rng = new Rng();
  const x = rng.uniform(40 * 24), w = rng.uniform(20 * 24);
  const [gx, cx] = both(be, x, [40, 24]);
  const [gw, cw] = both(be, w, [20, 24], "f16");
  using gv = be.rows(gx, 7, 21);
  const cv: Tensor = cpu.rows(cx, 7, 21);
  using g = be.matmul(gv, gw, { transB: true });
  expectClose(
    "matmul rows view · f16ᵀ",
    await be.read(g),
    await cpu.read(cpu.matmul(cv, cw, { transB: true })),
    1e-5,
    rng,
  );
  // f16 A gives an f16 C (the CPU rounds its f32 result to f16 the same way).
  using g16 = be.matmul(gw, gx, { transA: false, transB: true });
  const r16 = await cpu.read(cpu.matmul(cw, cx, { transB: true }));
  expectClose("matmul f16 output", await be.read(g16), r16, 2e-3, rng);
});

gpuTest("opt-in f16 partial sums (ACC16) stay within 1e-2 of the CPU on f16 operands", be, async (be) => {
  if (!be.rt.nativeF16) return;
  const rng = new Rng();
  for (const f of [FORMS[0], FORMS[2]]) {
    const [M, N, K] = [37, 29, 100];
    const [ga, ca] = both(be, rng.uniform(M * K), f.transA ? [K, M] : [M, K], "f16");
    const [gb, cb] = both(be, rng.uniform(K * N), f.transB ? [N, K] : [K, N], "f16");
    using gc = be.full([M, N], NaN);
    runMatmul(be.rt, gpu(ga), gpu(gb), gpu(gc), { ...f, f16Partials: true });
    const ref = await cpu.read(cpu.matmul(ca, cb, f));
    expectClose(
      `matmul f16 partials ${f.transA ? "Aᵀ" : "A"}·${f.transB ? "Bᵀ" : "B"}`,
      await be.read(gc),
      ref,
      1e-2,
      rng,
    );
  }
});

// naga bounds every WGSL loop (force_loop_bounding), so drivers stop unrolling them and arrays indexed
// by a loop variable go to local memory: 20× slower matmuls on an H100. These guard the straight-line
// kernels (no GPU needed).
Deno.test("matmul kernel: the only loop is the K-tile loop, for every tile and ACC16", () => {
  for (const t of [{ bm: 128, bn: 128, bk: 8 }, { bm: 64, bn: 128, bk: 16 }, { bm: 32, bn: 32, bk: 8 }]) {
    for (const acc16 of [false, true]) {
      const code = expandMatmul(WGSL_SOURCES.matmul, t, acc16);
      const entry = code.slice(code.indexOf("fn matmul("));
      const loops = entry.match(/\bfor \(/g) ?? [];
      if (loops.length !== 1 || !entry.includes("for (var t = 0u; t < tiles; t++)")) {
        throw new Error(`tile ${JSON.stringify(t)}: ${loops.length} loops in the matmul entry point`);
      }
      if (/^\s*\/\/ @expand \w+\s*$/m.test(code) || /\barray<vec4<|\bacc\[/.test(entry)) {
        throw new Error("unexpanded or indexed accumulators");
      }
      const fmas = (entry.match(/= fma\(/g) ?? []).length;
      if (fmas !== 16 * t.bk) throw new Error(`${fmas} fma lines, want ${16 * t.bk}`);
    }
  }
});

Deno.test("unrollMarked writes out marked loops (nested, constants from expressions)", () => {
  const src = [
    "const D: u32 = 16u;",
    "const C4: u32 = (D / 4u) / 2u;",
    "fn f() {",
    "  // @unroll",
    "  for (var cc = 0u; cc < C4; cc++) {",
    "    a[cc] = 0.0;",
    "    // @unroll",
    "    for (var c = 1u; c < C4 + 1u; c++) { b[c] = a[cc]; }",
    "  }",
    "}",
  ].join("\n");
  const out = unrollMarked(src);
  if (/\bfor \(|@unroll/.test(out)) throw new Error(`loops left:\n${out}`);
  for (const want of ["let cc = 0u;", "let cc = 1u;", "let c = 2u; b[c] = a[cc];"]) {
    if (!out.includes(want)) throw new Error(`missing "${want}" in:\n${out}`);
  }
  // The attention kernels keep no constant-bound loop over their register accumulators.
  for (const family of ["attention", "attentionBackward"] as const) {
    const code = kernelSource({
      family,
      entry: "x",
      bindings: [],
      consts: { D: 128, BQ: 16, BK: 16, TPR: 8 },
    }, false);
    if (/for \(var cc = 0u; cc < C4/.test(code) || /for \(var c = 0u; c < D4/.test(code)) {
      throw new Error(`${family}: a loop over C4 or D4 was not written out`);
    }
  }
});

reportErrors("webgpu_matmul_test");
