/**
 * The CPU forward of every family of issue 18 against Hugging Face transformers: the tiny
 * random-initialised checkpoints of tests/fixtures/models/ (made with transformers 5.17, see its
 * README) and their float64 reference logits and hidden states.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { blockForward } from "../src/model/block.ts";
import { KvCacheDecoder } from "../src/eval/generate.ts";
import { LoadedModel, scaleEmbeddings } from "../src/model/transformer.ts";
import { assert, fixture, maxRelError } from "./assert.ts";

const FAMILIES = [
  "qwen2_moe",
  "qwen2_moe_norm",
  "qwen3_moe",
  "mixtral",
  "gemma2",
  "gemma3_text",
  "gemma3_text_linear",
  "phi3",
  "phi3_longrope",
];

async function reference(dir: string) {
  const r = await SafetensorsReader.open(`${dir}/reference.safetensors`);
  try {
    return {
      ids: await r.readInt32("ids"),
      logits: await r.readF32("logits"),
      last: await r.readF32("last_logits"),
      hiddenFirst: await r.readF32("hidden_first"),
      hiddenLast: await r.readF32("hidden_last"),
    };
  } finally {
    r.close();
  }
}

// Only f32: transformers' float64 run still computes RoPE angles in float32 (inv_freq and cos/sin
// are float tensors there), so our f64 forward agrees with it to about 1e-6 too, no better.
const precision = "f32", bound = 1e-5;
{
  for (const family of FAMILIES) {
    Deno.test(`${family}: ${precision} logits and hidden states match transformers (max|Δ|/max|ref| ≤ ${bound})`, async () => {
      const dir = fixture(`models/${family}`);
      const ref = await reference(dir);
      using ckpt = await openCheckpoint(dir);
      using be = new CpuBackend({ precision });
      using m = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 64 });
      const T = 48, V = ckpt.spec.vocab, H = ckpt.spec.hidden;
      // Sequence 0, every position.
      using h = m.hidden(ref.ids.subarray(0, T), { batch: 1, seqLen: T });
      using lg = m.logits(h);
      const all = await be.read(lg);
      const eAll = maxRelError(all, ref.logits);
      // All three sequences as one batch: the last positions.
      using h3 = m.hidden(ref.ids, { batch: 3, seqLen: T });
      using lg3 = m.logits(h3);
      const l3 = await be.read(lg3);
      const last = new Float32Array(3 * V);
      for (let b = 0; b < 3; b++) last.set(l3.subarray(((b + 1) * T - 1) * V, (b + 1) * T * V), b * V);
      const eLast = maxRelError(last, ref.last);
      // Hidden states after block 0 and after the last block.
      using idT = be.uploadInt(ref.ids.subarray(0, T), [T]);
      let x = scaleEmbeddings(be, ckpt.spec, be.embedding(m.embed, idT));
      const hs: Float32Array[] = [];
      for (const b of m.blocks) {
        const { y } = blockForward(be, ckpt.spec, b, x, { batch: 1, seqLen: T }, m.rope);
        x[Symbol.dispose]();
        x = y;
        hs.push(await be.read(x));
      }
      x[Symbol.dispose]();
      const eFirst = maxRelError(hs[0], ref.hiddenFirst), eLastH = maxRelError(hs.at(-1)!, ref.hiddenLast);
      console.log(
        `  ${family} ${precision}: logits ${eAll.toExponential(2)}, last ${eLast.toExponential(2)}, ` +
          `block0 ${eFirst.toExponential(2)}, last block ${eLastH.toExponential(2)} (H ${H})`,
      );
      for (
        const [what, e] of [["logits", eAll], ["last", eLast], ["block 0", eFirst], ["last block", eLastH]]
      ) {
        assert((e as number) <= bound, `${family} ${precision} ${what}: ${e} > ${bound}`);
      }
    });
  }
}

Deno.test("generation (KvCacheDecoder) of every family: prefill and a step give transformers' logits", async () => {
  for (const family of FAMILIES) {
    const dir = fixture(`models/${family}`);
    const ref = await reference(dir);
    using ckpt = await openCheckpoint(dir);
    using be = new CpuBackend();
    using m = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: 64 });
    const V = ckpt.spec.vocab, ids = Array.from(ref.ids.subarray(0, 48));
    const dec = new KvCacheDecoder(m, 64);
    const a = await dec.prefill(ids.slice(0, 40));
    const b = await dec.step(ids[40]);
    const ea = maxRelError(a, ref.logits.subarray(39 * V, 40 * V)),
      eb = maxRelError(b, ref.logits.subarray(40 * V, 41 * V));
    console.log(`  ${family}: prefill ${ea.toExponential(2)}, step ${eb.toExponential(2)}`);
    assert(ea <= 1e-5 && eb <= 1e-5, `${family}: ${ea}, ${eb}`);
  }
});
