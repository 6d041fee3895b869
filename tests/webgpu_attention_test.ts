// WebGPU fused causal GQA attention (forward with log-sum-exp, backward) against the CPU reference:
// odd sequence lengths that do not divide the blocks, grouped kv heads, f32 and f16 inputs.
import type { AttentionShape } from "../src/backend/backend.ts";
import { both, cpu, expectClose, gpuTest, openGpu, reportErrors, Rng } from "./webgpu_helpers.ts";

const be = await openGpu();

const CASES: AttentionShape[] = [
  { batch: 2, seqLen: 37, nHeads: 4, nKvHeads: 2, headDim: 8, scale: 1 / Math.sqrt(8) },
  { batch: 1, seqLen: 21, nHeads: 2, nKvHeads: 1, headDim: 16, scale: 0.3 },
  // Head size 128 (Llama): 8 threads per row, the layout large GPUs run.
  { batch: 1, seqLen: 19, nHeads: 2, nKvHeads: 1, headDim: 128, scale: 1 / Math.sqrt(128) },
];

for (const dtype of ["f32", "f16"] as const) {
  gpuTest(`attention ${dtype} forward and backward match the CPU (GQA, odd lengths)`, be, async (be) => {
    const rng = new Rng();
    // f32 is checked against the f32 reference on the same values; f16 inputs are rounded the same
    // way on both sides and the outputs are f16 (one rounding of relative 2^-11).
    const bound = dtype === "f32" ? 1e-5 : 2e-3;
    // f16 runs the model-shaped case only (each head size compiles its own pipelines).
    for (const s of dtype === "f32" ? CASES : CASES.slice(0, 1)) {
      const rows = s.batch * s.seqLen, qw = s.nHeads * s.headDim, kw = s.nKvHeads * s.headDim;
      const [gq, cq] = both(be, rng.normal(rows * qw), [rows, qw], dtype);
      const [gk, ck] = both(be, rng.normal(rows * kw), [rows, kw], dtype);
      const [gv, cv] = both(be, rng.normal(rows * kw), [rows, kw], dtype);
      const [gdo, cdo] = both(be, rng.normal(rows * qw), [rows, qw], dtype);
      const g = be.attention(gq, gk, gv, s), c = cpu.attention(cq, ck, cv, s);
      const tag = `attention ${dtype} hd=${s.headDim}`;
      expectClose(`${tag} out`, await be.read(g.out), await cpu.read(c.out), bound, rng);
      expectClose(`${tag} lse`, await be.read(g.lse), await cpu.read(c.lse), 1e-5, rng);
      const gb = be.attentionBackward(gq, gk, gv, g.out, g.lse, gdo, s);
      const cb = cpu.attentionBackward(cq, ck, cv, c.out, c.lse, cdo, s);
      for (const k of ["dq", "dk", "dv"] as const) {
        expectClose(`${tag} ${k}`, await be.read(gb[k]), await cpu.read(cb[k]), bound * 4, rng);
        gb[k][Symbol.dispose]();
      }
      for (const t of [gq, gk, gv, gdo, g.out, g.lse]) t[Symbol.dispose]();
    }
  });
}

reportErrors("webgpu_attention_test");
