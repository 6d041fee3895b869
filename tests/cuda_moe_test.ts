/**
 * Mixture-of-experts on the CUDA backend (ffi/cuda/moe.cu, src/backend/cuda/moe_ops.ts): the row ops
 * against the CPU backend (f32 bit for bit where the math is one multiply-add, bf16 within one
 * rounding), the whole qwen2_moe / qwen3_moe / mixtral fixtures' logits in f32 against
 * transformers' float64 reference, and SignRound on the qwen3_moe fixture lowering every block's loss
 * (no CUDA graph: routing reads the router's logits back every forward).
 */
import type { Backend } from "../src/backend/backend.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { assert } from "./assert.ts";
import { cpu, cuda, cudaTest, expectClose } from "./cuda_helpers.ts";
import { quantizeStories } from "./stories_quantize.ts";

function rand(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 * 2 - 1;
  });
}

cudaTest(
  "MoE row ops: gatherRows, scatterAddRows (unique and repeated rows), rowDots, readSync match the CPU",
  async () => {
    const be = cuda("f32");
    const T = 37, H = 96, n = 23;
    const x = rand(T * H, 1), src = rand(n * H, 2), base = rand(T * H, 3), sc = rand(n, 4);
    const uniqueRows = Int32Array.from({ length: n }, (_, i) => (i * 7) % T);
    const repeated = Int32Array.from({ length: n }, (_, i) => (i * 5) % 9);
    for (const dtype of ["f32", "bf16"] as const) {
      const bound = dtype === "f32" ? 1e-6 : 1e-2;
      for (
        const [what, rows, unique] of [["unique", uniqueRows, true], ["repeated", repeated, false]] as const
      ) {
        const run = async (b: Backend) => {
          using X = b.upload(x, [T, H], dtype),
            S = b.upload(src, [n, H], dtype),
            O = b.upload(base, [T, H], dtype);
          using R = b.uploadInt(rows, [n]), C = b.upload(sc, [n]);
          using g = b.gatherRows!(X, R, C);
          b.scatterAddRows!(O, S, R, C, unique);
          using d = b.rowDots!(g, S);
          return [await b.read(g), await b.read(O), await b.read(d), b.readSync!(O)];
        };
        const [c, g] = [await run(cpu), await run(be)];
        for (const [i, name] of ["gatherRows", "scatterAddRows", "rowDots", "readSync"].entries()) {
          expectClose(`${name} ${dtype} ${what}`, g[i], c[i], bound);
        }
      }
    }
  },
);

for (const family of ["qwen2_moe", "qwen3_moe", "mixtral"]) {
  cudaTest(`${family} fixture logits on CUDA (f32) match transformers' float64 reference`, async () => {
    const dir = new URL(`./fixtures/models/${family}/`, import.meta.url).pathname;
    const r = await SafetensorsReader.open(dir + "reference.safetensors");
    const ids = await r.readInt32("ids"), ref = await r.readF32("logits");
    r.close();
    using ckpt = await openCheckpoint(dir);
    using m = await LoadedModel.load(cuda("f32"), ckpt.spec, ckpt.weights, { positions: 64, dtype: "f32" });
    using h = m.hidden(ids.subarray(0, 48), { batch: 1, seqLen: 48 });
    using lg = m.logits(h);
    expectClose(`${family} logits`, await m.be.read(lg), ref, 1e-5);
  });
}

cudaTest("SignRound W4G32 on the qwen3_moe fixture on CUDA lowers every block's loss", async () => {
  const run = await quantizeStories(cuda("bf16"), {
    model: new URL("./fixtures/models/qwen3_moe", import.meta.url).pathname,
    scheme: resolveScheme("W4A16", { groupSize: 32 }),
    iters: 10,
    nsamples: 8,
    seqlen: 32,
  });
  try {
    for (const b of run.blocks) {
      assert(b.lossBest! < b.lossStart!, `block ${b.block}: ${b.lossStart} → ${b.lossBest}`);
    }
    console.log(
      `  losses ${run.blocks.map((b) => `${b.lossStart!.toExponential(2)}→${b.lossBest!.toExponential(2)}`)}`,
    );
  } finally {
    await run.cleanup();
  }
});
