/**
 * auto_gptq, auto_awq, llm_compressor and fake: one quantization run written in every format loads
 * back through our loader to the in-memory fake-quantized model, with the same perplexity. (The
 * layouts of one Linear, both directions, are tests/formats_test.ts.)
 */
import { assert, assertEquals } from "./assert.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import type { QuantScheme } from "../src/qmath/quantized.ts";
import type { WeightSource } from "../src/model/transformer.ts";
import { exportModel, fakeQuantSource, perplexityOf, STORIES, storiesEvalIds } from "./consumers/helpers.ts";
import { join } from "./consumers/path.ts";

/** Max |a − b| / max |b| over the quantized layers of a folder vs the in-memory fake quantization. */
async function compareToFake(dir: string, fake: Map<string, Float32Array>): Promise<number> {
  using ck = await openCheckpoint(dir);
  let worst = 0;
  for (const [name, ref] of fake) {
    const got = await ck.weights.readF32(name);
    let d = 0, m = 0;
    for (let i = 0; i < ref.length; i++) {
      d = Math.max(d, Math.abs(got[i] - ref[i]));
      m = Math.max(m, Math.abs(ref[i]));
    }
    worst = Math.max(worst, d / m);
  }
  return worst;
}

async function oneRunAllFormats(scheme: QuantScheme, formats: string[], windows = 8) {
  const out = await Deno.makeTempDir({ prefix: "export_all_" });
  try {
    const run = await exportModel({ model: STORIES, formats: formats.join(","), out, scheme });
    const ids = (await storiesEvalIds()).subarray(0, windows * 256);
    const src = await fakeQuantSource(STORIES, run.fakeWeights);
    let pplFake: number, pplFake16: number;
    try {
      pplFake = await perplexityOf(src.ckpt.spec, src.weights, ids);
      // auto_gptq and auto_awq save every float tensor in fp16 (auto-round's save_model dtype):
      // the same fake quantization with the other tensors rounded to fp16.
      const fp16: WeightSource = {
        ...src.weights,
        readF32: async (
          n,
        ) => (run.fakeWeights.has(n)
          ? run.fakeWeights.get(n)!
          : (await src.weights.readF32(n)).map(Math.f16round)),
      };
      pplFake16 = await perplexityOf(src.ckpt.spec, fp16, ids);
    } finally {
      src.ckpt[Symbol.dispose]();
    }
    const rows: { format: string; weightDiff: number; ppl: number; quantMethod?: string }[] = [];
    for (const f of formats) {
      const dir = join(out, f);
      using ck = await openCheckpoint(dir);
      rows.push({
        format: f,
        weightDiff: await compareToFake(dir, run.fakeWeights),
        ppl: await perplexityOf(ck.spec, ck.weights, ids),
        quantMethod: ck.quantMethod,
      });
    }
    const configs = Object.fromEntries(
      await Promise.all(
        formats.map(async (f) => [f, JSON.parse(await Deno.readTextFile(join(out, f, "config.json")))]),
      ),
    );
    return { pplFake, pplFake16, rows, configs, layers: run.fakeWeights.size };
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

Deno.test("one W4 group-32 asym run in every safetensors format reads back as the in-memory fake quantization", async () => {
  const formats = ["auto_round", "auto_gptq", "auto_awq", "llm_compressor", "fake"];
  const r = await oneRunAllFormats({ bits: 4, groupSize: 32, sym: false, dataType: "int" }, formats);
  console.log(
    `in-memory fake quantization: ppl ${r.pplFake.toFixed(6)}, with fp16 float tensors ${
      r.pplFake16.toFixed(6)
    } (8 windows of 256)`,
  );
  for (const row of r.rows) {
    console.log(
      `  ${row.format.padEnd(15)} ${row.quantMethod ?? "(plain)"}  max rel weight diff ${
        row.weightDiff.toExponential(2)
      }  ppl ${row.ppl.toFixed(6)}`,
    );
  }
  for (const row of r.rows) {
    // Weights: exact up to f32 rounding of scale·(q − z) (scales are fp16 values everywhere).
    assert(row.weightDiff < 1e-6, `${row.format}: weights differ by ${row.weightDiff}`);
    const ref = row.format === "auto_gptq" || row.format === "auto_awq" ? r.pplFake16 : r.pplFake;
    assert(Math.abs(row.ppl - ref) / ref <= 1e-9, `${row.format}: ppl ${row.ppl} vs ${ref}`);
  }
  assertEquals(r.rows.map((x) => x.quantMethod), [
    "auto-round",
    "gptq",
    "awq",
    "compressed-tensors",
    undefined,
  ]);
  const gptq = r.configs.auto_gptq.quantization_config;
  assertEquals([
    gptq.quant_method,
    gptq.bits,
    gptq.group_size,
    gptq.sym,
    gptq.desc_act,
    gptq.checkpoint_format,
  ], ["gptq", 4, 32, false, false, "gptq"]);
  assertEquals(r.configs.auto_gptq.torch_dtype, "float16");
  const awq = r.configs.auto_awq.quantization_config;
  assertEquals([awq.quant_method, awq.bits, awq.group_size, awq.zero_point, awq.version], [
    "awq",
    4,
    32,
    true,
    "gemm",
  ]);
  assert(
    awq.modules_to_not_convert.includes("lm_head") &&
      awq.modules_to_not_convert.includes("model.layers.0.mlp.down_proj"),
  );
  const ct = r.configs.llm_compressor.quantization_config;
  assertEquals([ct.quant_method, ct.format, ct.quantization_status], [
    "compressed-tensors",
    "pack-quantized",
    "compressed",
  ]);
  assertEquals(ct.config_groups.group_0.targets, ["Linear"]);
  assertEquals(ct.config_groups.group_0.weights.num_bits, 4);
  assertEquals([ct.config_groups.group_0.weights.strategy, ct.config_groups.group_0.weights.symmetric], [
    "group",
    false,
  ]);
  assert(ct.ignore.includes("lm_head") && ct.ignore.includes("model.layers.4.mlp.down_proj"));
  assertEquals(r.configs.fake.quantization_config, undefined);
});

Deno.test("3-bit group 32 and 8-bit per-channel symmetric runs read back in auto_gptq, llm_compressor, fake", async () => {
  for (
    const scheme of [
      { bits: 3, groupSize: 32, sym: true, dataType: "int" as const },
      { bits: 8, groupSize: -1, sym: true, dataType: "int" as const },
    ]
  ) {
    const r = await oneRunAllFormats(scheme, ["auto_round", "auto_gptq", "llm_compressor", "fake"], 4);
    for (const row of r.rows) {
      assert(row.weightDiff < 1e-6, `${scheme.bits}b ${row.format}: weights differ by ${row.weightDiff}`);
      const ref = row.format === "auto_gptq" ? r.pplFake16 : r.pplFake;
      assert(
        Math.abs(row.ppl - ref) / ref <= 1e-9,
        `${scheme.bits}b ${row.format}: ppl ${row.ppl} vs ${ref}`,
      );
    }
    const w = r.configs.llm_compressor.quantization_config.config_groups.group_0.weights;
    assertEquals(
      [w.num_bits, w.strategy, w.group_size, w.symmetric],
      scheme.groupSize > 0 ? [3, "group", 32, true] : [8, "channel", null, true],
    );
  }
});
