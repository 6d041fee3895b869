/**
 * Flash-attention focus bench: forward and backward at Llama-3-8B's geometry (B=8, T=2048, 32
 * heads, 8 kv heads, head dim 128), each launched once after one warm-up unless `--reps N`; meant
 * for Nsight Compute (`ncu --kernel-name regex:flash_ deno run -A bench/cuda_attention.ts`) and for
 * quick timing of kernel variants.
 */
import { createCudaBackend } from "../src/backend/cuda/cuda_backend.ts";

const repsArg = Deno.args.indexOf("--reps");
const reps = repsArg >= 0 ? Number(Deno.args[repsArg + 1]) : 0;
const [B, T, H, KV, hd] = [8, 2048, 32, 8, 128];
using be = createCudaBackend();
const s = { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: hd, scale: 1 / Math.sqrt(hd) };
const rand = (shape: number[], seed: number) => {
  const t = be.full(shape, 0, "bf16");
  be.fillRandom(t, -1, 1, seed);
  return t;
};
using q = rand([B * T, H * hd], 1);
using k = rand([B * T, KV * hd], 2);
using v = rand([B * T, KV * hd], 3);
using dO = rand([B * T, H * hd], 4);
const f = be.attention(q, k, v, s);
const g = be.attentionBackward(q, k, v, f.out, f.lse, dO, s);
await be.sync();
if (reps > 0) {
  const fwdFlops = 4 * B * H * T * T * hd / 2;
  const msF = be.timeMs(
    () => {
      const r = be.attention(q, k, v, s);
      r.out[Symbol.dispose]();
      r.lse[Symbol.dispose]();
    },
    reps,
    3,
  );
  const msB = be.timeMs(
    () => {
      const r = be.attentionBackward(q, k, v, f.out, f.lse, dO, s);
      for (const t of [r.dq, r.dk, r.dv]) t[Symbol.dispose]();
    },
    reps,
    3,
  );
  console.log(`fwd ${msF.toFixed(3)} ms ${(fwdFlops / msF / 1e9).toFixed(1)} TFLOP/s`);
  console.log(`bwd ${msB.toFixed(3)} ms ${(2.5 * fwdFlops / msB / 1e9).toFixed(1)} TFLOP/s`);
}
for (const t of [f.out, f.lse, g.dq, g.dk, g.dv]) t[Symbol.dispose]();
