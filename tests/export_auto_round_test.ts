/**
 * The auto_round format against Intel auto-round: its QuantLinear packing (goldens from
 * auto_round_extension/torch/qlinear_torch*.py), whole exports of stories260K compared tensor by
 * tensor with the sha256 of AutoRound's own output (tests/fixtures/autoround_rtn_exports.json), and
 * our loader reading the export back to the same perplexity as the in-memory fake-quantized model.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { gptqTensors } from "../src/formats/gptq/tensors.ts";
import {
  packQweightAlongK,
  packRowsAlongN,
  unpackQweightAlongK,
  unpackRowsAlongN,
} from "../src/formats/gptq/pack.ts";
import { documentStream, windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint, overlaySource } from "../src/io/checkpoint.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { silentLog } from "../src/log.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { quantize } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { roundHalfEven } from "../src/tensor/dtype.ts";
import { assert, assertAlmostEquals, assertEquals, assertSameNumbers, fixture, sha256 } from "./assert.ts";

interface PackCase {
  bits: number;
  sym: boolean;
  n: number;
  k: number;
  group_size: number;
  weight_qdq: number[];
  scale: number[];
  zp: number[] | number;
  bias: number[];
  qweight: number[];
  qzeros: number[];
  scales: number[];
  bias_f16: number[];
}

Deno.test("packing equals auto-round's QuantLinear.pack (qweight, qzeros, fp16 scales; 2/3/4/8 bits, sym and asym)", async () => {
  const { packs }: { packs: PackCase[] } = JSON.parse(
    await Deno.readTextFile(fixture("autoround_goldens.json")),
  );
  assertEquals(packs.length, 8);
  for (const c of packs) {
    const G = c.k / c.group_size;
    // The integer codes auto-round packs: round(W/scale + zp) of its fake-quantized weight.
    const zeros = new Int32Array(c.n * G);
    for (let i = 0; i < zeros.length; i++) zeros[i] = typeof c.zp === "number" ? c.zp : c.zp[i];
    const codes = new Uint8Array(c.n * c.k);
    for (let r = 0; r < c.n; r++) {
      for (let j = 0; j < c.k; j++) {
        const g = r * G + Math.floor(j / c.group_size);
        codes[r * c.k + j] = roundHalfEven(c.weight_qdq[r * c.k + j] / c.scale[g] + zeros[g]);
      }
    }
    const t = gptqTensors({
      name: "x",
      n: c.n,
      k: c.k,
      bits: c.bits,
      groupSize: c.group_size,
      sym: c.sym,
      q: { codes, scales: Float32Array.from(c.scale), zeros },
    }, c.sym);
    const label = `${c.bits}b ${c.sym ? "sym" : "asym"}`;
    assertEquals(Array.from(t.qweight), c.qweight, `${label} qweight`);
    assertEquals(Array.from(t.qzeros), c.qzeros, `${label} qzeros`);
    assertEquals(Array.from(t.scales, Math.f16round), c.scales.map(Math.f16round), `${label} scales`);
  }
});

Deno.test("pack → unpack returns the same integers (random codes, 2/3/4/8 bits)", () => {
  for (const bits of [2, 3, 4, 8]) {
    const n = 64, k = 96 * (bits === 3 ? 1 : 1) + (bits === 3 ? 32 : 0);
    const codes = Uint8Array.from({ length: n * k }, () => Math.floor(Math.random() * 2 ** bits));
    assertEquals(unpackQweightAlongK(packQweightAlongK(codes, n, k, bits), n, k, bits), codes);
    const zeros = Int32Array.from({ length: 3 * n }, () => Math.floor(Math.random() * 2 ** bits));
    assertEquals(unpackRowsAlongN(packRowsAlongN(zeros, 3, n, bits), 3, n, bits), zeros);
  }
});

interface ExportRecord {
  tensors: Record<string, { dtype: string; shape: number[]; sha256: string }>;
}

// Plain RTN needs no calibration data, so these must be byte-identical to what AutoRound wrote.
// (AutoRound's optimized-RTN exports differ: see tools/autoround_probe.py — its calibration replay
// runs attention with a float 0/1 mask, i.e. non-causally, on transformers 5.17.)
const PLAIN = [
  ["rtnplain_W4G32", "W4A16", 32, true],
  ["rtnplain_W3G32", "W3A16", 32, true],
  ["rtnplain_W2G32", "W2A16", 32, true],
  ["rtnplain_W3G32asym", "W3A16", 32, false],
  ["rtnplain_W2G32asym", "W2A16", 32, false],
] as const;

Deno.test("plain-RTN exports of stories260K are byte-identical to AutoRound's, tensor by tensor", async () => {
  const records: Record<string, ExportRecord> = JSON.parse(
    await Deno.readTextFile(fixture("autoround_rtn_exports.json")),
  );
  for (const [name, scheme, g, sym] of PLAIN) {
    const out = await Deno.makeTempDir();
    try {
      await quantize({
        model: fixture("stories260K"),
        outputDir: `${out}/q`,
        formats: ["auto_round"],
        scheme: resolveScheme(scheme, { groupSize: g, sym }),
        iters: 0,
        nsamples: 1,
        seqlen: 256,
        batchSize: 8,
        dataset: "unused-without-calibration",
        disableOptRtn: true,
        maxShardSize: 5e9,
        backend: new CpuBackend(),
      }, silentLog);
      using r = await SafetensorsReader.open(`${out}/q`);
      const ref = records[name].tensors;
      assertEquals(r.names().sort(), Object.keys(ref).sort(), `${name}: tensor names`);
      for (const t of r.names()) {
        const info = r.info(t);
        assertEquals([info.dtype, info.shape], [ref[t].dtype, ref[t].shape], `${name}: ${t}`);
        assertEquals(await sha256(await r.readBytes(t)), ref[t].sha256, `${name}: bytes of ${t}`);
      }
      const cfg = JSON.parse(await Deno.readTextFile(`${out}/q/config.json`)).quantization_config;
      assertEquals(cfg.packing_format, sym ? "auto_round:auto_gptq" : "auto_round");
      assertEquals([cfg.quant_method, cfg.bits, cfg.group_size, cfg.sym], [
        "auto-round",
        Number(scheme[1]),
        g,
        sym,
      ]);
      assertEquals(cfg.extra_config["model.layers.0.mlp.down_proj"], { bits: 16, data_type: "fp" });
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
});

Deno.test("an opt-RTN W4G32 export read back by our loader gives the in-memory fake-quant perplexity", async () => {
  const out = await Deno.makeTempDir();
  try {
    const fake = new Map<string, Float32Array>();
    using be = new CpuBackend();
    await quantize({
      model: fixture("stories260K"),
      outputDir: `${out}/q`,
      formats: ["auto_round"],
      scheme: resolveScheme("W4A16", { groupSize: 32 }),
      iters: 0,
      nsamples: 16,
      seqlen: 256,
      batchSize: 8,
      dataset: fixture("tinystories-calib.jsonl"),
      maxShardSize: 5e9,
      backend: be,
      onFakeWeight: (n, v) => fake.set(n, v),
    }, silentLog);
    assertEquals(fake.size, 20); // q, k, v, o of 5 blocks; the MLP stays 16-bit (172 % 32 ≠ 0)
    using fp = await openCheckpoint(fixture("stories260K"));
    using q = await openCheckpoint(`${out}/q`);
    assertEquals(q.quantMethod, "auto-round");
    const tok = await Tokenizer.fromDir(fp.dir);
    // A 32-window slice keeps the test short; the full-file figure is in the closing note.
    const ids = documentStream(await Deno.readTextFile(fixture("stories260K/eval.txt")), (l) => tok.encode(l))
      .subarray(0, 32 * 256);
    using mem = await LoadedModel.load(be, fp.spec, overlaySource(fp.weights, fake), { positions: 256 });
    using loaded = await LoadedModel.load(be, q.spec, q.weights, { positions: 256 });
    const a = await windowedPerplexity(mem, ids, { seqlen: 256 });
    const b = await windowedPerplexity(loaded, ids, { seqlen: 256 });
    using plain = await LoadedModel.load(be, fp.spec, fp.weights, { positions: 256 });
    const base = await windowedPerplexity(plain, ids, { seqlen: 256 });
    console.log(
      `  fp ${base.ppl.toFixed(6)}, in-memory fake-quant ${a.ppl.toFixed(6)}, export via loader ${
        b.ppl.toFixed(6)
      }`,
    );
    assert(a.ppl > base.ppl, "quantization must change the model");
    assertAlmostEquals(b.ppl, a.ppl, 1e-9 * a.ppl);
    for (const [name, values] of fake) assertSameNumbers(await q.weights.readF32(name), values, name);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
