/**
 * `--format` (src/export/registry.ts): names, which scheme a combination of formats quantizes, the
 * one-line UsageErrors when formats cannot share a run, and a run that writes auto_round and GGUF
 * together (one pipeline pass; where the schemes agree the GGUF tensor can store the same codes).
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { UsageError } from "../src/errors.ts";
import { GgufExporter } from "../src/export/gguf.ts";
import type { ExportContext } from "../src/export/exporter.ts";
import type { QuantizedLinear } from "../src/qmath/quantized.ts";
import {
  checkFormats,
  createExporters,
  formatDirName,
  parseFormats,
  resolveRunScheme,
} from "../src/export/registry.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { unpackBlocks } from "../src/qmath/gguf/blocks.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { resolveLayerConfig } from "../src/quant/layer_config.ts";
import type { QuantScheme } from "../src/qmath/quantized.ts";
import { exportModel, STORIES } from "./consumers/helpers.ts";
import { join } from "./consumers/path.ts";

const W4A16: QuantScheme = { bits: 4, groupSize: 128, sym: true, dataType: "int" };

Deno.test("parseFormats: names, aliases, case, duplicates, q*_ bits, unknown names", () => {
  assertEquals(parseFormats("auto_round, GGUF:Q4_K_M,auto_round").map((f) => f.name), [
    "auto_round",
    "gguf:q4_k_m",
  ]);
  assertEquals(parseFormats("gptqmodel").map((f) => f.kind), ["auto_gptq"]);
  assertEquals(parseFormats("gguf:q*_k_s", 3)[0].name, "gguf:q3_k_s");
  assertEquals(parseFormats("gguf:q6_k_s")[0].gguf!.fileTypeName, "Q6_K");
  assertThrows(() => parseFormats("gguf:q7_k"), UsageError, 'unknown GGUF type "gguf:q7_k"');
  assertThrows(() => parseFormats("exl2"), UsageError, 'unknown format "exl2"');
  assertThrows(() => parseFormats("gguf:q2_k_mixed"), UsageError, "MoE");
  assertThrows(() => parseFormats(" , "), UsageError, "empty");
  assertEquals(formatDirName("gguf:q4_k_m"), "gguf-q4_k_m");
});

Deno.test("resolveRunScheme: GGUF decides without --scheme; packed formats must be able to store it", () => {
  const fmts = (s: string) => parseFormats(s);
  // GGUF alone: nothing to pack; the run is labelled with the GGUF type.
  const only = resolveRunScheme(fmts("gguf:q4_k_m"), undefined, W4A16);
  assertEquals([only.packs, only.describe], [false, "GGUF:Q4_K_M (per-tensor type mix)"]);
  // Q4_0 / Q8_0 / Q4_1 bases are integer grids auto_round can store: the scheme follows them.
  assertEquals(resolveRunScheme(fmts("auto_round,gguf:q4_0"), undefined, W4A16).scheme, {
    bits: 4,
    groupSize: 32,
    sym: true,
    dataType: "int",
  });
  assertEquals(resolveRunScheme(fmts("fake,gguf:q4_1"), undefined, W4A16).scheme, {
    bits: 4,
    groupSize: 32,
    sym: false,
    dataType: "int",
  });
  assertEquals(resolveRunScheme(fmts("auto_gptq,gguf:q8_0"), undefined, W4A16).scheme.bits, 8);
  // K-quant bases are not: one clear line.
  const e = assertThrows(
    () => resolveRunScheme(fmts("auto_round,gguf:q4_k_m"), undefined, W4A16),
    UsageError,
    "auto_round cannot store",
  );
  assert(!e.message.includes("\n") && e.message.includes("--scheme"), e.message);
  assertThrows(
    () => resolveRunScheme(fmts("auto_round,gguf:q5_0"), undefined, W4A16),
    UsageError,
    "cannot store",
  );
  // An explicit scheme: packed formats use it, GGUF keeps its own mix.
  const both = resolveRunScheme(fmts("auto_round,gguf:q4_k_m"), W4A16, W4A16);
  assertEquals([both.scheme, both.packs], [W4A16, true]);
  // Mixed GGUF bases follow no single scheme unless one is given; tuning must use the GGUF scheme.
  assertThrows(
    () => resolveRunScheme(fmts("gguf:q4_k_m,gguf:q8_0"), undefined, W4A16),
    UsageError,
    "different bases",
  );
  resolveRunScheme(fmts("gguf:q4_k_m,gguf:q8_0"), W4A16, W4A16);
  assertThrows(
    () => resolveRunScheme(fmts("auto_round,gguf:q4_k_m"), W4A16, W4A16, 200),
    UsageError,
    "tuning must use the GGUF scheme",
  );
  const g32: QuantScheme = { ...W4A16, groupSize: 32 };
  assertEquals(resolveRunScheme(fmts("auto_round,gguf:q4_0"), g32, W4A16, 200).scheme, g32);
});

Deno.test("checkFormats: auto_awq needs 4 bits (UsageError) and warns when symmetric; auto_gptq warns when asymmetric", async () => {
  using ck = await openCheckpoint(STORIES);
  const w8: QuantScheme = { bits: 8, groupSize: 32, sym: true, dataType: "int" };
  assertThrows(
    () => checkFormats(parseFormats("auto_awq"), resolveLayerConfig(ck.spec, w8), w8),
    UsageError,
    "4-bit weights only",
  );
  const mixed = resolveLayerConfig(ck.spec, W4A16, { "model.layers.0.self_attn.q_proj": { bits: 8 } });
  assertThrows(
    () => checkFormats(parseFormats("auto_awq"), mixed, W4A16),
    UsageError,
    "model.layers.0.self_attn.q_proj",
  );
  const warn = checkFormats(parseFormats("auto_awq,auto_gptq"), resolveLayerConfig(ck.spec, W4A16), W4A16);
  assertEquals(warn.length, 1);
  const asym = { ...W4A16, sym: false };
  assert(
    checkFormats(parseFormats("auto_gptq"), resolveLayerConfig(ck.spec, asym), asym)[0].includes(
      "asymmetrical",
    ),
  );
});

Deno.test("auto_round + gguf:q4_0 in one run: both written, one pipeline pass; Q4_0 can store the pipeline's own codes", async () => {
  const out = await Deno.makeTempDir({ prefix: "export_multi_" });
  try {
    const g32: QuantScheme = { bits: 4, groupSize: 32, sym: true, dataType: "int" };
    const run = await exportModel({ model: STORIES, formats: "auto_round,gguf:q4_0", out, scheme: g32 });
    await Deno.stat(join(out, "auto_round", "model.safetensors"));
    const gg = run.exporters[1] as GgufExporter;
    assertEquals(gg.path, join(out, "gguf-q4_0", "stories260K-Q4_0.gguf"));
    using ar = await openCheckpoint(join(out, "auto_round"));
    using f = await GgufFile.open(gg.path);
    // The GGUF exporter quantized from floats with its own (fp32-scale) search; the codes agree with
    // auto_round's for most groups. Handing it the pipeline's QuantizedLinear stores them exactly.
    const name = "model.layers.1.self_attn.q_proj";
    const fromFloat = unpackBlocks("Q4_0", await f.readBytes("blk.1.attn_q.weight"));
    const wq = await ar.weights.readF32(`${name}.weight`);
    let same = 0;
    const deq = (b: number, j: number) => (fromFloat.q[b * 32 + j] - 8) * fromFloat.d[b];
    // The GGUF rows are llama-permuted; compare per row sets via sorted values of each block instead.
    for (let b = 0; b < fromFloat.nb; b++) {
      const got = Array.from({ length: 32 }, (_, j) => deq(b, j)).sort().join();
      for (let c = 0; c < fromFloat.nb; c++) {
        const ref = Array.from(wq.subarray(c * 32, c * 32 + 32), (x) => Math.fround(x)).sort().join();
        if (got === ref) {
          same++;
          break;
        }
      }
    }
    console.log(`Q4_0 blocks quantized from floats equal to auto_round's: ${same}/${fromFloat.nb}`);
    assert(same / fromFloat.nb > 0.5, `only ${same}/${fromFloat.nb} blocks equal auto_round's`);

    // The pipeline-codes path (acceptsQuantized → writeQuantized): identical codes and scales.
    using ck = await openCheckpoint(STORIES);
    const layers = resolveLayerConfig(ck.spec, g32);
    const ectx: ExportContext = {
      spec: ck.spec,
      sourceDir: ck.dir,
      config: ck.config,
      maxShardSize: 1e9,
      run: {
        scheme: g32,
        layers,
        iters: 0,
        nsamples: 1,
        seqlen: 1,
        batchSize: 1,
        gradientAccumulateSteps: 1,
        enableMinmaxTuning: true,
        enableQuantedInput: false,
        lowGpuMemUsage: false,
        amp: false,
        dataset: "",
      },
    };
    const [e] = createExporters(["gguf:q4_0"], join(out, "direct"), ectx) as GgufExporter[];
    const codes = Uint8Array.from({ length: 64 * 64 }, (_, i) => (i * 11) % 16);
    const scales = Float32Array.from({ length: 64 * 2 }, (_, i) => Math.f16round(0.002 * (i + 1)));
    const l: QuantizedLinear = {
      name: "model.layers.0.self_attn.o_proj",
      n: 64,
      k: 64,
      bits: 4,
      groupSize: 32,
      sym: true,
      q: { codes, scales, zeros: new Int32Array(128).fill(8) },
    };
    assert(e.acceptsQuantized(l));
    await e.writeQuantized(l);
    await e.finish();
    using f2 = await GgufFile.open(e.path);
    const b2 = unpackBlocks("Q4_0", await f2.readBytes("blk.0.attn_output.weight"));
    assertEquals([...b2.q], [...codes]);
    assertEquals([...b2.d], [...scales]);
    assertEquals(e.records[0].fromGivenCodes, true);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
