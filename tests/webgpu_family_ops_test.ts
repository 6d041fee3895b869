// WebGPU ops of issue 18 against the CPU reference, tiny shapes for llvmpipe: attention with the
// soft cap and a sliding window (forward, lse, backward; GQA, batch 2, windows shorter than the
// sequence, window 1, window ≥ seqLen), partial rotary (forward and inverse, the rest untouched),
// geluTanhMul(+Backward) and tanhSoftcap. The CPU side is itself checked against f64 references and
// finite differences (attention_softcap_window_test.ts, rope_partial_test.ts, gelu_tanh_test.ts).
import type { AttentionShape } from "../src/backend/backend.ts";
import { assert } from "./assert.ts";
import { both, cpu, expectClose, gpuTest, openGpu, relErr, reportErrors, Rng } from "./webgpu_helpers.ts";

const be = await openGpu();

const GQA = { batch: 2, nHeads: 4, nKvHeads: 2 };
const CASES: [string, AttentionShape][] = [
  ["softcap 1.5 + window 5", { ...GQA, seqLen: 37, headDim: 8, scale: 0.5, softcap: 1.5, window: 5 }],
  ["window 20", { ...GQA, seqLen: 45, headDim: 16, scale: 0.3, window: 20 }],
  // Longer than the query and key blocks (64/32 rows at head dim 8, 32/16 at 32): the loops start
  // at the window's first block and the dK/dV loop stops at its last query.
  ["T 150 window 20", { ...GQA, seqLen: 150, headDim: 8, scale: 0.5, window: 20 }],
  ["T 70 hd 32 softcap 1.5 + window 9", {
    ...GQA,
    seqLen: 70,
    headDim: 32,
    scale: 0.3,
    softcap: 1.5,
    window: 9,
  }],
  ["softcap 1", { ...GQA, seqLen: 23, headDim: 8, scale: 0.5, softcap: 1 }],
  ["window 1 + softcap 2", { ...GQA, seqLen: 11, headDim: 8, scale: 0.5, softcap: 2, window: 1 }],
  ["window 40 ≥ seqLen 19", { ...GQA, seqLen: 19, headDim: 8, scale: 0.5, window: 40 }],
];

gpuTest(
  "attention with softcap and window: forward, lse and backward match the CPU (f32)",
  be,
  async (be) => {
    const rng = new Rng();
    for (const [name, s] of CASES) {
      const rows = s.batch * s.seqLen, qw = s.nHeads * s.headDim, kw = s.nKvHeads * s.headDim;
      // Scores of a few units, so that a cap of 1–2 bends them.
      const [gq, cq] = both(be, rng.normal(rows * qw, 1.5), [rows, qw]);
      const [gk, ck] = both(be, rng.normal(rows * kw, 1.5), [rows, kw]);
      const [gv, cv] = both(be, rng.normal(rows * kw), [rows, kw]);
      const [gdo, cdo] = both(be, rng.normal(rows * qw), [rows, qw]);
      const g = be.attention(gq, gk, gv, s), c = cpu.attention(cq, ck, cv, s);
      const tag = `attention ${name}`;
      expectClose(`${tag} out`, await be.read(g.out), await cpu.read(c.out), 1e-5, rng);
      expectClose(`${tag} lse`, await be.read(g.lse), await cpu.read(c.lse), 1e-5, rng);
      const gb = be.attentionBackward(gq, gk, gv, g.out, g.lse, gdo, s);
      const cb = cpu.attentionBackward(cq, ck, cv, c.out, c.lse, cdo, s);
      for (const k of ["dq", "dk", "dv"] as const) {
        expectClose(`${tag} ${k}`, await be.read(gb[k]), await cpu.read(cb[k]), 4e-5, rng);
      }
      // The options took effect: plain causal attention on the GPU gives another output.
      if (s.softcap !== undefined || (s.window ?? Infinity) < s.seqLen) {
        const plain = be.attention(gq, gk, gv, { ...s, softcap: undefined, window: undefined });
        const moved = relErr(await be.read(plain.out), await be.read(g.out));
        assert(moved > 1e-2, `${tag}: the options changed the output by only ${moved}`);
      }
    }
  },
);

gpuTest(
  "partial rope (rotaryDim 8 of headDim 16) forward and inverse match the CPU; the rest is untouched",
  be,
  async (be) => {
    const rng = new Rng();
    const geo = { batch: 2, seqLen: 5, nHeads: 3, headDim: 16, rotaryDim: 8, posOffset: 3 };
    const rows = 10, width = 48, x = rng.normal(rows * width);
    const [gc, cc] = both(be, rng.uniform(8 * 4), [8, 4]), [gs, cs] = both(be, rng.uniform(8 * 4), [8, 4]);
    for (const inverse of [false, true]) {
      const [gx, cx] = both(be, x, [rows, width]);
      be.rope(gx, gc, gs, geo, inverse);
      cpu.rope(cx, cc, cs, geo, inverse);
      const got = await be.read(gx);
      expectClose(`rope rotaryDim 8 inverse ${inverse}`, got, await cpu.read(cx), 1e-6, rng);
      for (let i = 0; i < x.length; i++) {
        if (i % 16 >= 8) assert(got[i] === x[i], `element ${i} should pass through`);
      }
      assert(relErr(got, x) > 1e-2, "nothing rotated");
    }
  },
);

gpuTest("geluTanhMul(+Backward) and tanhSoftcap match the CPU (f32)", be, async (be) => {
  const rng = new Rng(), n = 3001;
  const [gg, cg] = both(be, rng.normal(n, 3), [n]), [gu, cu] = both(be, rng.normal(n), [n]);
  const [gdh, cdh] = both(be, rng.normal(n), [n]);
  expectClose(
    "geluTanhMul",
    await be.read(be.geluTanhMul(gg, gu)),
    await cpu.read(cpu.geluTanhMul!(cg, cu)),
    1e-5,
    rng,
  );
  const gb = be.geluTanhMulBackward(gg, gu, gdh), cb = cpu.geluTanhMulBackward!(cg, cu, cdh);
  expectClose("geluTanhMulBackward dg", await be.read(gb.dg), await cpu.read(cb.dg), 1e-5, rng);
  expectClose("geluTanhMulBackward du", await be.read(gb.du), await cpu.read(cb.du), 1e-5, rng);
  const [gx, cx] = both(be, rng.normal(n, 60), [n]);
  be.tanhSoftcap(gx, 30);
  cpu.tanhSoftcap!(cx, 30);
  const got = await be.read(gx);
  expectClose("tanhSoftcap", got, await cpu.read(cx), 1e-5, rng);
  assert(got.every((v) => Math.abs(v) <= 30), "capped values exceed the cap");
});

reportErrors("webgpu_family_ops_test");
