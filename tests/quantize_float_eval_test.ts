/**
 * Float-scheme checkpoints read back and evaluated as a serving engine computes them (issue 17,
 * deliverable 3): a stories260K run's exported folder (llm_compressor or auto_round) loads to the
 * weights the run fake-quantized in memory (bit for bit; NVFP4 within its double-reciprocal ulp),
 * reports each quantized Linear's activation quantizer with the run's static parameters, and its
 * perplexity with activations quantized equals the in-memory model's; quantizing activations changes
 * the perplexity (it is applied), and with them off the loaded weights alone give another.
 */
import { assert, assertEquals, fixture } from "./assert.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { documentStream, windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { LoadedModel, type WeightSource } from "../src/model/transformer.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { quantizeStories } from "./stories_quantize.ts";

const CASES: [scheme: string, format: string, iters: number][] = [
  ["MXFP4", "llm_compressor", 4],
  ["NVFP4", "llm_compressor", 4],
  ["FP8_STATIC", "llm_compressor", 0],
  ["FP8_STATIC", "auto_round", 4],
  ["INT8_W8A8", "llm_compressor", 0],
  ["MXINT4", "auto_round", 0],
  ["MXFP8", "auto_round", 0],
];

/** The checkpoint's tensors with some replaced (the run's fake-quantized weights). */
function overlay(
  base: WeightSource,
  fake: Map<string, Float32Array>,
  acts?: WeightSource["activationQuant"],
) {
  const src: WeightSource = {
    origin: `${base.origin} (in memory)`,
    has: (n) => fake.has(n) || base.has(n),
    shape: (n) => base.shape(n),
    readF32: (n) => fake.has(n) ? Promise.resolve(fake.get(n)!) : base.readF32(n),
    activationQuant: acts,
  };
  return src;
}

Deno.test("float checkpoints load to the run's weights and evaluate with its activation quantizers", async () => {
  using be = new CpuBackend();
  const tok = await Tokenizer.fromDir(fixture("stories260K"));
  const text = await Deno.readTextFile(fixture("stories260K/eval.txt"));
  const ids = documentStream(text, (l) => tok.encode(l)).subarray(0, 4 * 256);
  const ppl = async (src: WeightSource, spec: Parameters<typeof LoadedModel.load>[1]) => {
    using m = await LoadedModel.load(be, spec, src, { positions: 256 });
    return (await windowedPerplexity(m, ids, { seqlen: 256, batch: 4 })).ppl;
  };
  using fp = await openCheckpoint(fixture("stories260K"));
  for (const [scheme, format, iters] of CASES) {
    const tag = `${scheme} → ${format} (iters ${iters})`;
    const run = await quantizeStories(be, {
      scheme: resolveScheme(scheme),
      formats: [format],
      iters,
      nsamples: 8,
      seqlen: 64,
      batchSize: 4,
      disableOptRtn: true,
    });
    try {
      using ck = await openCheckpoint(run.dir);
      const s = resolveScheme(scheme);
      let worst = 0;
      for (const [name, want] of run.fake) {
        const got = await ck.weights.readF32(name);
        for (let i = 0; i < want.length; i++) {
          if (got[i] === want[i]) continue;
          worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-30));
        }
        const a = ck.weights.activationQuant?.(name.replace(/\.weight$/, ""));
        assertEquals(a?.act, s.act, `${tag} ${name}: activation quantizer`);
        if (s.act && !s.act.dynamic) assert(a!.inputScale! > 0, `${tag} ${name}: input_scale`);
        if (s.act?.dataType === "nv_fp") {
          assert(a!.inputGlobalScale! > 0, `${tag} ${name}: input_global_scale`);
        }
      }
      // NVFP4 stores s8 and gs: the engine's code·s8/gs vs the fake quant's code·(1/(1/(s8/gs))).
      const bound = s.dataType === "nv_fp" ? 4 * 2 ** -24 : 0;
      assert(worst <= bound, `${tag}: loaded weights differ from the run's by ${worst} (bound ${bound})`);
      const loaded = await ppl(ck.weights, ck.spec);
      const inMemory = await ppl(overlay(fp.weights, run.fake, ck.weights.activationQuant), fp.spec);
      const weightsOnly = await ppl(overlay(fp.weights, run.fake), fp.spec);
      console.log(
        `  ${tag}: ppl loaded ${loaded.toFixed(6)}, in memory ${inMemory.toFixed(6)}, weights only ${
          weightsOnly.toFixed(6)
        }, weights max rel diff ${worst.toExponential(2)}`,
      );
      if (bound === 0) assertEquals(loaded, inMemory, tag);
      else assert(Math.abs(loaded - inMemory) <= 1e-5 * inMemory, `${tag}: ${loaded} vs ${inMemory}`);
      if (s.act) assert(loaded !== weightsOnly, `${tag}: activation quantization changed nothing`);
    } finally {
      await run.cleanup();
    }
  }
});
