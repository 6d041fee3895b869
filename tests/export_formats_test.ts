/**
 * auto_gptq, auto_awq, llm_compressor and fake: the packed layouts round-trip to the same integers
 * (checked against bit-level references of the layouts in FORMATS.md and the sources cited in each
 * exporter), and one quantization run written in every format loads back through our loader to the
 * in-memory fake-quantized model, with the same perplexity.
 */
import { assert, assertEquals } from "./assert.ts";
import { awqTensors } from "../src/formats/awq.ts";
import { autoGptqTensors } from "../src/formats/gptq/tensors.ts";
import type { QuantizedLinear } from "../src/qmath/quantized.ts";
import { packQuantizedTensors } from "../src/formats/compressed_tensors.ts";
import { unpackQweightAlongK, unpackZerosGptqV1 } from "../src/formats/gptq/pack.ts";
import { packDenseInt32, unpackDenseInt32 } from "../src/formats/compressed_tensors.ts";
import { packAwqAlongN, unpackAwqAlongN } from "../src/formats/awq.ts";
import { transpose } from "../src/formats/layout.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { dequantizePackQuantized } from "../src/formats/compressed_tensors.ts";
import type { QuantScheme } from "../src/qmath/quantized.ts";
import type { WeightSource } from "../src/model/transformer.ts";
import { exportModel, fakeQuantSource, perplexityOf, STORIES, storiesEvalIds } from "./consumers/helpers.ts";
import { join } from "./consumers/path.ts";

function linear(n: number, k: number, bits: number, g: number, sym: boolean, seed = 1): QuantizedLinear {
  let s = seed;
  const r = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 4294967296);
  const G = k / g, top = 2 ** bits - 1;
  const codes = Uint8Array.from({ length: n * k }, () => Math.floor(r() * (top + 1)));
  // Zero points include 0 (asym), which the GPTQ "minus one" convention must survive.
  const zeros = Int32Array.from(
    { length: n * G },
    (_, i) => (sym ? 2 ** (bits - 1) : i % 5 === 0 ? 0 : Math.floor(r() * (top + 1))),
  );
  const scales = Float32Array.from({ length: n * G }, () => Math.f16round(0.001 + r() * 0.01));
  return { name: "l", n, k, bits, groupSize: g, sym, q: { codes, scales, zeros } };
}

/** Bit-by-bit reference: value i of `vals` at global bit i·b, little-endian (compressed-tensors, GPTQ). */
function denseReference(vals: ArrayLike<number>, bits: number): Int32Array {
  const words = new Int32Array(Math.ceil((vals.length * bits) / 32));
  for (let i = 0; i < vals.length; i++) {
    for (let b = 0; b < bits; b++) {
      if ((vals[i] >> b) & 1) words[(i * bits + b) >> 5] |= 1 << ((i * bits + b) & 31);
    }
  }
  return words;
}

Deno.test("auto_gptq layout: qweight/qzeros/g_idx round-trip; zero points stored minus one (v1), 0 survives", () => {
  for (const bits of [2, 3, 4, 8]) {
    for (const sym of [true, false]) {
      const l = linear(64, 128, bits, 32, sym, bits);
      const t = autoGptqTensors(l);
      assertEquals([...unpackQweightAlongK(t.qweight, 64, 128, bits)], [...l.q.codes], `${bits}b codes`);
      assertEquals(
        [...unpackZerosGptqV1(t.qzeros, 4, 64, bits)],
        [...transpose(l.q.zeros, 64, 4)],
        `${bits}b zeros`,
      );
      assertEquals([...t.gIdx.slice(30, 34)], [0, 0, 1, 1]);
      // Every column of qweight is the dense little-endian packing of that column's codes.
      const col0 = Array.from({ length: 128 }, (_, i) => l.q.codes[i]);
      const ref = denseReference(col0, bits);
      assertEquals(Array.from(ref, (_, w) => t.qweight[w * 64]), [...ref], `${bits}b packing`);
    }
  }
  // Symmetric 4-bit: zero point 8 is stored as 7 in every nibble.
  const s = autoGptqTensors(linear(8, 32, 4, 32, true));
  assertEquals(s.qzeros[0] >>> 0, 0x77777777);
});

Deno.test("auto_awq layout: nibble order [0, 4, 1, 5, 2, 6, 3, 7], qweight [K, N/8], round trip", () => {
  assertEquals(packAwqAlongN(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7]), 1, 8, 4)[0] >>> 0, 0x75316420);
  const l = linear(64, 128, 4, 32, false, 9);
  const t = awqTensors(l);
  const back = unpackAwqAlongN(t.qweight, 128, 64, 4); // [K, N]
  for (let n = 0; n < 64; n++) {
    for (let k = 0; k < 128; k++) assertEquals(back[k * 64 + n], l.q.codes[n * 128 + k]);
  }
  assertEquals([...unpackAwqAlongN(t.qzeros, 4, 64, 4)], [...transpose(l.q.zeros, 64, 4)]);
});

Deno.test("llm_compressor pack-quantized: dense int32 packing (3-bit values straddle words), zero points along N", () => {
  for (const bits of [2, 3, 4, 8]) {
    const vals = Array.from({ length: 70 }, (_, i) => (i * 5 + 3) % 2 ** bits);
    assertEquals([...packDenseInt32(vals, bits)], [...denseReference(vals, bits)], `${bits} bits`);
    assertEquals([...unpackDenseInt32(packDenseInt32(vals, bits), 70, bits)], vals);
  }
  for (const sym of [true, false]) {
    const l = linear(40, 96, 3, 32, sym, 4);
    const t = packQuantizedTensors(l);
    assertEquals(t.packedCols, Math.ceil((96 * 3) / 32));
    // compressed-tensors dequantize: (q_ct − zp_ct)·scale with q_ct = code − 4, zp_ct = zp − 4.
    const w = dequantizePackQuantized(
      { bits: 3, groupSize: 32, zeroPlusOne: false, n: 40, k: 96 },
      sym,
      t.packed,
      t.zeroPoint,
      t.scale,
    );
    for (let i = 0; i < w.length; i += 37) {
      const r = Math.floor(i / 96), g = Math.floor((i % 96) / 32);
      assertEquals(w[i], (l.q.codes[i] - l.q.zeros[r * 3 + g]) * l.q.scales[r * 3 + g]);
    }
    if (!sym) assertEquals(t.zeroPoint!.length, Math.ceil((40 * 3) / 32) * 3);
  }
});

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
