/**
 * Causal GQA attention, forward (out and lse) and backward (dq, dk, dv), CUDA vs the CPU reference
 * on fresh random inputs: the tensor-core flash kernels (bf16/f16, head dim 64 and 128, sequence
 * lengths that are not multiples of the 64-row tile) and the general kernels (f32, head dims 8/16/
 * 40, and bf16 with a head dim the flash kernels do not take). Inputs are rounded to the tested
 * dtype on both sides, so the bound measures the kernels' own rounding (P and dS in 16 bits).
 */
import type { AttentionShape, DType } from "../src/backend/backend.ts";
import { cpu, cuda, cudaTest, expectClose, freshSeed, pair, poison, readBoth, Rng } from "./cuda_helpers.ts";

async function check(
  label: string,
  dt: DType,
  s: AttentionShape,
  fwdBound: number,
  bwdBound: number,
): Promise<void> {
  const be = cuda(), rng = new Rng(freshSeed());
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: hd } = s;
  const [q, qc] = pair(be, rng.normal(B * T * H * hd), [B * T, H * hd], dt);
  const [k, kc] = pair(be, rng.normal(B * T * KV * hd), [B * T, KV * hd], dt);
  const [v, vc] = pair(be, rng.normal(B * T * KV * hd), [B * T, KV * hd], dt);
  poison(be, [B * T, H * hd], dt);
  poison(be, [B * H * T], "f32");
  const f = be.attention(q, k, v, s), fc = cpu.attention(qc, kc, vc, s);
  expectClose(`attention ${label} out`, ...(await readBoth(f.out, fc.out)), fwdBound);
  expectClose(`attention ${label} lse`, ...(await readBoth(f.lse, fc.lse)), dt === "f32" ? 1e-5 : 1e-3);
  const [dO, dOc] = pair(be, rng.normal(B * T * H * hd), [B * T, H * hd], dt);
  // Both backwards start from the same forward output (the CPU's, uploaded), so only the backward
  // kernels are compared.
  const [o2] = pair(be, await cpu.read(fc.out), [B * T, H * hd], dt);
  const [l2] = pair(be, await cpu.read(fc.lse), [B * H * T], "f32");
  poison(be, [B * T, H * hd], dt);
  poison(be, [B * T, KV * hd], dt);
  const g = be.attentionBackward(q, k, v, o2, l2, dO, s);
  const gc = cpu.attentionBackward(qc, kc, vc, fc.out, fc.lse, dOc, s);
  expectClose(`attention ${label} dq`, ...(await readBoth(g.dq, gc.dq)), bwdBound);
  expectClose(`attention ${label} dk`, ...(await readBoth(g.dk, gc.dk)), bwdBound);
  expectClose(`attention ${label} dv`, ...(await readBoth(g.dv, gc.dv)), bwdBound);
  for (const t of [q, k, v, dO, o2, l2, f.out, f.lse, g.dq, g.dk, g.dv]) t[Symbol.dispose]();
}

const shape = (B: number, T: number, H: number, KV: number, hd: number): AttentionShape => ({
  batch: B,
  seqLen: T,
  nHeads: H,
  nKvHeads: KV,
  headDim: hd,
  scale: 1 / Math.sqrt(hd),
});

cudaTest("flash attention bf16, head dim 128, GQA 4:2, T = 150 (partial tiles)", async () => {
  await check("bf16 hd128 T150", "bf16", shape(2, 150, 4, 2, 128), 1e-2, 1e-2);
});

cudaTest("flash attention bf16, head dim 64, GQA 8:2, T = 64·3", async () => {
  await check("bf16 hd64 T192", "bf16", shape(1, 192, 8, 2, 64), 1e-2, 1e-2);
});

cudaTest("flash attention f16, head dim 128, MHA, T = 37", async () => {
  await check("f16 hd128 T37", "f16", shape(3, 37, 2, 2, 128), 5e-3, 5e-3);
});

cudaTest("flash attention bf16 at a long sequence (T = 1000, one batch)", async () => {
  await check("bf16 hd128 T1000", "bf16", shape(1, 1000, 2, 1, 128), 1e-2, 1e-2);
});

cudaTest("general attention f32 (head dims 8, 40, 128) and bf16 head dim 40", async () => {
  await check("f32 hd8 T33 (stories260K's geometry)", "f32", shape(2, 33, 8, 4, 8), 1e-5, 1e-5);
  await check("f32 hd40 T70", "f32", shape(1, 70, 6, 3, 40), 1e-5, 1e-5);
  await check("f32 hd128 T65", "f32", shape(1, 65, 2, 1, 128), 1e-5, 1e-5);
  await check("bf16 hd40 T50 (general kernel)", "bf16", shape(2, 50, 4, 4, 40), 1e-2, 1e-2);
});
