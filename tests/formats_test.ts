/**
 * Each format module of src/formats/, both directions: one Linear packed by the format and unpacked
 * again gives back the same integers (checked against bit-level references of the layouts in
 * FORMATS.md and the sources cited in each module), and a Linear written by the format's exporter
 * reads back through our loader as exactly W̃ = scale·(code − zero); GGUF blocks of every type pack
 * and unpack exactly and read back through the GGUF file reader as their dequantization.
 */
import { assert, assertEquals } from "./assert.ts";
import { awqTensors, packAwqAlongN, unpackAwqAlongN } from "../src/formats/awq.ts";
import {
  dequantizePackQuantized,
  packDenseInt32,
  packQuantizedTensors,
  unpackDenseInt32,
} from "../src/formats/compressed_tensors.ts";
import { unpackQweightAlongK, unpackRowsAlongN, unpackZerosGptqV1 } from "../src/formats/gptq/pack.ts";
import { autoGptqTensors, gptqTensors } from "../src/formats/gptq/tensors.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { GgufWriter } from "../src/formats/gguf/writer.ts";
import { transpose } from "../src/formats/layout.ts";
import type { LayerPlan, RunInfo } from "../src/formats/run.ts";
import { createExporters } from "../src/export/registry.ts";
import type { ExportContext } from "../src/export/exporter.ts";
import { readConfig } from "../src/io/checkpoint.ts";
import { openQuantizedSource } from "../src/io/quantized_loader.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { dequantizeBlocks, packBlocks, unpackBlocks } from "../src/qmath/gguf/blocks.ts";
import { type QuantGgmlType, quantizeTensor, TYPE_QUANT } from "../src/qmath/gguf/quantize.ts";
import { dequantizeLinear, type QuantizedLinear, type QuantScheme } from "../src/qmath/quantized.ts";
import { STORIES } from "./consumers/helpers.ts";
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

Deno.test("auto_round layout: qzeros as they are (asym) or minus one (sym, auto_round:auto_gptq) round-trip", () => {
  for (const bits of [2, 3, 4, 8]) {
    for (const sym of [true, false]) {
      const l = linear(64, 128, bits, 32, sym, 20 + bits);
      const t = gptqTensors(l, sym);
      assertEquals([...unpackQweightAlongK(t.qweight, 64, 128, bits)], [...l.q.codes], `${bits}b codes`);
      const stored = unpackRowsAlongN(t.qzeros, 4, 64, bits).map((z) => z + (sym ? 1 : 0));
      assertEquals([...stored], [...transpose(l.q.zeros, 64, 4)], `${bits}b zeros`);
      assertEquals([...t.scales], [...transpose(l.q.scales, 64, 4)], `${bits}b scales`);
    }
  }
});

/** A run that quantizes one Linear with `scheme`, as the formats record it. */
function runOf(layer: string, scheme: QuantScheme): RunInfo {
  const plan: LayerPlan = { quantize: true, scheme, fromUser: false };
  return {
    scheme,
    layers: { layers: new Map([[layer, plan]]) },
    iters: 0,
    nsamples: 128,
    seqlen: 2048,
    batchSize: 8,
    gradientAccumulateSteps: 1,
    enableMinmaxTuning: true,
    enableQuantedInput: false,
    lowGpuMemUsage: false,
    amp: false,
    dataset: "test",
  };
}

Deno.test("every safetensors format: a Linear its exporter writes reads back through the loader as exactly W̃", async () => {
  const config = JSON.parse(await Deno.readTextFile(join(STORIES, "config.json")));
  const spec = parseModelConfig(config, STORIES);
  const name = "model.layers.0.mlp.down_proj";
  const cases: { format: string; bits: number[]; sym: boolean[] }[] = [
    { format: "auto_round", bits: [2, 3, 4, 8], sym: [true, false] },
    { format: "auto_gptq", bits: [2, 3, 4, 8], sym: [true, false] },
    { format: "auto_awq", bits: [4], sym: [true, false] },
    { format: "llm_compressor", bits: [2, 3, 4, 8], sym: [true, false] },
  ];
  const out = await Deno.makeTempDir({ prefix: "formats_" });
  try {
    for (const c of cases) {
      for (const bits of c.bits) {
        for (const sym of c.sym) {
          const what = `${c.format} ${bits}b ${sym ? "sym" : "asym"}`;
          const l = { ...linear(64, 128, bits, 32, sym, bits * 7 + (sym ? 1 : 0)), name };
          const dir = join(out, `${c.format}-${bits}-${sym}`);
          const scheme: QuantScheme = { bits, groupSize: 32, sym, dataType: "int" };
          const ctx: ExportContext = {
            spec,
            sourceDir: join(out, "no-such-source"),
            config,
            run: runOf(name, scheme),
            maxShardSize: 1 << 30,
          };
          const [e] = createExporters([c.format], dir, ctx);
          await e.writeQuantized(l);
          await e.finish();
          using reader = await SafetensorsReader.open(dir);
          const qc = (await readConfig(dir)).quantization_config as Record<string, unknown>;
          const src = openQuantizedSource(reader, qc, dir);
          assertEquals(src.shape(`${name}.weight`), [64, 128], what);
          const got = await src.readF32(`${name}.weight`);
          const want = dequantizeLinear(l);
          assert(got.every((v, i) => v === want[i]), `${what}: W̃ differs`);
        }
      }
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});

Deno.test("GGUF: blocks of every type pack → unpack exactly and read back through the file reader as their W̃", async () => {
  const n = 4, k = 512;
  const path = await Deno.makeTempFile({ suffix: ".gguf" });
  try {
    const w = await GgufWriter.create(path);
    const written = new Map<string, Float32Array>();
    for (const type of Object.keys(TYPE_QUANT) as QuantGgmlType[]) {
      let s = 5;
      const x = Float32Array.from(
        { length: n * k },
        () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32) - 0.5,
      );
      const blocks = quantizeTensor(type, x, n, k, { optRtn: false });
      const bytes = packBlocks(blocks);
      const back = unpackBlocks(type, bytes);
      assertEquals([...back.q], [...blocks.q], `${type} codes`);
      assertEquals([...back.d], [...blocks.d].map(Math.f16round), `${type} d`);
      assertEquals([...packBlocks(back)], [...bytes], `${type} bytes`);
      await w.addTensor(`t.${type}`, type, [k, n], bytes);
      written.set(`t.${type}`, dequantizeBlocks(back));
    }
    await w.finish();
    using f = await GgufFile.open(path);
    for (const [t, want] of written) {
      const got = await f.readF32(t);
      assert(got.every((v, i) => v === want[i]), `${t}: dequantized values differ`);
    }
  } finally {
    await Deno.remove(path);
  }
});
