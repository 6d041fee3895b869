/**
 * The Gemma 2/3 and Phi-3 fixtures (tests/fixtures/models/) on the WebGPU backend: soft-capping,
 * sliding-window layers, GeGLU, (1 + w) norms, partial rotary and longrope through the WebGPU kernels,
 * logits of a 48-token sequence against transformers' float64 reference; and the MoE refusal (WebGPU
 * cannot read the router's logits back inside the synchronous block forward).
 */
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { assertThrows } from "./assert.ts";
import { expectClose, gpuTest, openGpu } from "./webgpu_helpers.ts";

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
