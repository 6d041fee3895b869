/**
 * The Gemma 2/3 and Phi-3 fixtures (tests/fixtures/models/) on the WebGPU backend: soft-capping,
 * sliding-window layers, GeGLU, (1 + w) norms, partial rotary and longrope through the WebGPU kernels,
 * logits of a 48-token sequence against transformers' float64 reference; and the MoE refusal (WebGPU
 * cannot read the router's logits back inside the synchronous block forward).
 */
import type { Backend } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { blockBackward, blockForward } from "../src/model/block.ts";
import { loadBlockWeights, LoadedModel, uploadRope } from "../src/model/transformer.ts";
import { assertThrows } from "./assert.ts";
import { expectClose, gpuTest, openGpu, reportErrors } from "./webgpu_helpers.ts";

const be = await openGpu();
const dir = (f: string) => new URL(`./fixtures/models/${f}/`, import.meta.url).pathname;

for (const family of ["gemma2", "gemma3_text_linear", "phi3_longrope"]) {
  gpuTest(`${family} logits on WebGPU (f32) match transformers' float64 reference`, be, async (be) => {
    const r = await SafetensorsReader.open(dir(family) + "reference.safetensors");
    const ids = await r.readInt32("ids"), ref = await r.readF32("logits");
    r.close();
    using ckpt = await openCheckpoint(dir(family));
    using m = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 64 });
    using h = m.hidden(ids.subarray(0, 48), { batch: 1, seqLen: 48 });
    using lg = m.logits(h);
    expectClose(`${family} logits`, await be.read(lg), ref, 1e-5);
  });
}

gpuTest("a MoE fixture on WebGPU is refused with the way out (--device cpu or cuda)", be, async (be) => {
  using ckpt = await openCheckpoint(dir("qwen3_moe"));
  using m = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 64 });
  assertThrows(
    () => m.hidden(Int32Array.from({ length: 8 }, (_, i) => i + 3), { batch: 1, seqLen: 8 }),
    Error,
    "use --device cpu",
  );
});

for (const family of ["phi3_longrope", "gemma2"]) {
  gpuTest(
    `${family} block 0 backward on WebGPU matches the CPU (fused gradients written into row slices)`,
    be,
    async (be) => {
      using ckpt = await openCheckpoint(dir(family));
      const spec = ckpt.spec, geo = { batch: 2, seqLen: 12 }, M = 24;
      const rnd = (n: number, seed: number) => {
        let s = seed;
        return Float32Array.from(
          { length: n },
          () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5,
        );
      };
      const x = rnd(M * spec.hidden, 5), dy = rnd(M * spec.hidden, 9);
      const run = async (b: Backend) => {
        using w = await loadBlockWeights(b, spec, ckpt.weights, 0);
        using rope = uploadRope(b, spec, geo.seqLen);
        const { saved } = blockForward(b, spec, w, b.upload(x, [M, spec.hidden]), geo, rope, { save: true });
        const grads = blockBackward(
          b,
          spec,
          w,
          saved!,
          b.upload(dy, [M, spec.hidden]),
          geo,
          rope,
          () => true,
        );
        const out = new Map<string, Float32Array>();
        for (const [n, g] of grads) out.set(n, await b.read(g));
        return out;
      };
      const want = await run(new CpuBackend()), got = await run(be);
      for (const [n, g] of want) expectClose(`${family} d${n}`, got.get(n)!, g, 1e-5);
    },
  );
}
reportErrors("webgpu_families_test");
