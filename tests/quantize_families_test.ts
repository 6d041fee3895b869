/**
 * SignRound end to end on the tiny checkpoint of each family of issue 18 (tests/fixtures/models/):
 * every block's loss falls; the auto_round and auto_gptq folders load back (dequantized) to exactly
 * the tuned in-memory weights, every other tensor is the checkpoint's own (or its float16 rounding,
 * where the format stores float16: all of auto_gptq, the biases of quantized Linears in auto_round),
 * and an auto_round folder without such biases gives the in-memory model's logits bit for bit; MoE
 * routers stay 16-bit and are listed so; the checkpoint's own names are kept (Mixtral's w1/w2/w3,
 * Phi-3's fused Linears).
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { openCheckpoint, overlaySource } from "../src/io/checkpoint.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { blockLinears } from "../src/model/block_layout.ts";
import { blockPrefix } from "../src/model/config.ts";
import { LoadedModel, type WeightSource } from "../src/model/transformer.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { assert, assertEquals, fixture, maxRelError } from "./assert.ts";
import { quantizeStories } from "./stories_quantize.ts";

const FAMILIES = ["qwen2_moe", "qwen3_moe", "mixtral", "gemma2", "gemma3_text", "phi3_longrope"];

async function logits(be: CpuBackend, spec: LoadedModel["spec"], src: WeightSource, ids: Int32Array) {
  using m = await LoadedModel.load(be, spec, src, { positions: 64 });
  using h = m.hidden(ids, { batch: 1, seqLen: ids.length });
  using lg = m.logits(h);
  return await be.read(lg);
}

for (const family of FAMILIES) {
  Deno.test(`${family}: SignRound W4G32 lowers every block's loss; auto_round and auto_gptq load back to the tuned model`, async () => {
    using be = new CpuBackend();
    const model = fixture(`models/${family}`);
    const run = await quantizeStories(be, {
      model,
      formats: ["auto_round", "auto_gptq"],
      scheme: resolveScheme("W4A16", { groupSize: 32 }),
      iters: 10,
      nsamples: 8,
      seqlen: 32,
    });
    try {
      using fp = await openCheckpoint(model);
      const spec = fp.spec;
      for (const b of run.blocks) {
        assert(b.lossBest! < b.lossStart!, `block ${b.block}: ${b.lossStart} → ${b.lossBest}`);
      }
      const quantizable = blockLinears(spec, 0).filter((l) =>
        !l.router && l.out % 32 === 0 && l.in % 32 === 0
      );
      assertEquals(run.blocks[0].quantized.length, quantizable.length);
      const ids = Int32Array.from({ length: 40 }, (_, i) => 3 + (i * 37) % 500);
      const mem = await logits(be, spec, overlaySource(fp.weights, run.fake), ids);
      for (const format of ["auto_round", "auto_gptq"]) {
        const dir = `${run.dir}/${format}`;
        using q = await openCheckpoint(dir);
        for (const [name, v] of run.fake) {
          const got = await q.weights.readF32(name);
          assertEquals(maxRelError(got, v), 0, `${format} ${name}`);
        }
        let f16 = 0;
        const out = await SafetensorsReader.open(dir);
        try {
          for (const name of out.names()) {
            if (!fp.weights.has(name) || run.fake.has(name)) continue;
            const orig = await fp.weights.readF32(name), got = await out.readF32(name);
            const same = orig.every((v, i) => v === got[i]);
            if (!same) f16++;
            assert(same || orig.every((v, i) => Math.f16round(v) === got[i]), `${format} ${name} changed`);
          }
        } finally {
          out.close();
        }
        const e = maxRelError(await logits(be, q.spec, q.weights, ids), mem);
        console.log(
          `  ${family} ${format}: logits vs in-memory ${e.toExponential(2)}, ${f16} tensors as float16`,
        );
        if (f16 === 0) assert(e === 0, `${format}: ${e}`);
        if (spec.moe) {
          const router = blockLinears(spec, 0).find((l) => l.router)!.name;
          assert(!run.fake.has(blockPrefix(0, spec) + router), "the router is not quantized");
          if (format === "auto_round") {
            const qc = q.config.quantization_config as { extra_config: Record<string, { bits: number }> };
            assertEquals(qc.extra_config[blockPrefix(0, spec) + router]?.bits, 16);
          }
        }
      }
    } finally {
      await run.cleanup();
    }
  });
}
