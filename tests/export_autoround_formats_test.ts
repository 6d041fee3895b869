/**
 * auto_gptq and auto_awq against Intel auto-round's own exporters: plain-RTN runs of stories260K
 * (no calibration data, so both sides quantize the same weights the same way) written by auto-round
 * v0.15 on the GPU machine (tools/autoround_oracle.py formats; hashes in
 * tests/fixtures/autoround_format_exports.json by tools/hash_exports.py). Every quantized tensor
 * (qweight, qzeros, scales, g_idx) must be byte-identical. Unquantized tensors: auto-round keeps an
 * fp32 model's norms and embeddings in fp32 although config.json says float16; we write fp16, and
 * our bytes must equal its values cast to fp16. llm_compressor is not covered: auto-round needs the
 * compressed-tensors package for it, which the GPU machine lacks.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import { silentLog } from "../src/log.ts";
import { quantize } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { assert, assertEquals, fixture, sha256 } from "./assert.ts";

interface Recorded {
  tensors: Record<string, { dtype: string; shape: number[]; sha256: string; sha256_f16?: string }>;
  quantization_config: Record<string, unknown>;
}

const RUNS = [
  ["rtnplain_W4G32", "W4A16", true, ["auto_gptq", "auto_awq"]],
  ["rtnplain_W4G32asym", "W4A16", false, ["auto_gptq", "auto_awq"]],
  ["rtnplain_W3G32", "W3A16", true, ["auto_gptq"]],
  ["rtnplain_W2G32asym", "W2A16", false, ["auto_gptq"]],
] as const;

const QUANTIZED = /\.(qweight|qzeros|scales|g_idx)$/;

Deno.test("auto_gptq and auto_awq exports of stories260K equal auto-round's, tensor by tensor", async () => {
  const recorded: Record<string, Recorded> = JSON.parse(
    await Deno.readTextFile(fixture("autoround_format_exports.json")),
  );
  for (const [name, scheme, sym, formats] of RUNS) {
    const out = await Deno.makeTempDir();
    try {
      await quantize({
        model: fixture("stories260K"),
        outputDir: `${out}/q`,
        formats: [...formats],
        scheme: resolveScheme(scheme, { groupSize: 32, sym }),
        iters: 0,
        nsamples: 1,
        seqlen: 256,
        batchSize: 8,
        dataset: "unused-without-calibration",
        disableOptRtn: true,
        maxShardSize: 5e9,
        backend: new CpuBackend(),
      }, silentLog);
      for (const format of formats) {
        const ref = recorded[`${name}__${format}`];
        const dir = formats.length > 1 ? `${out}/q/${format}` : `${out}/q`; // several formats: OUT/<format>
        using r = await SafetensorsReader.open(dir);
        assertEquals(r.names().sort(), Object.keys(ref.tensors).sort(), `${name} ${format}: tensor names`);
        let quantized = 0;
        for (const t of r.names()) {
          const info = r.info(t), want = ref.tensors[t], label = `${name} ${format}: ${t}`;
          assertEquals(info.shape, want.shape, `${label} shape`);
          const hash = await sha256(await r.readBytes(t));
          if (QUANTIZED.test(t) || want.dtype !== "F32") {
            assertEquals([info.dtype, hash], [want.dtype, want.sha256], label);
            quantized += QUANTIZED.test(t) ? 1 : 0;
          } else {
            assertEquals(
              [info.dtype, hash],
              ["F16", want.sha256_f16],
              `${label} (fp16 of auto-round's fp32)`,
            );
          }
        }
        assert(quantized >= 20, `${name} ${format}: only ${quantized} quantized tensors compared`);
        const qc = JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).quantization_config;
        const rq = ref.quantization_config;
        for (
          const key of ["quant_method", "bits", "group_size", "sym", "desc_act", "zero_point", "version"]
        ) {
          assertEquals(qc[key], rq[key], `${name} ${format}: quantization_config.${key}`);
        }
        for (const key of ["modules_to_not_convert", "modules_in_block_to_quantize"]) {
          if (rq[key] === undefined) continue;
          const sorted = (v: unknown) => JSON.stringify(v, (_k, x) => Array.isArray(x) ? [...x].sort() : x);
          assertEquals(sorted(qc[key]), sorted(rq[key]), `${name} ${format}: ${key} (as sets)`);
        }
        if (rq.dynamic) {
          assertEquals(Object.keys(qc.dynamic).sort(), Object.keys(rq.dynamic as object).sort(), "dynamic");
        }
        const saved = JSON.parse(await Deno.readTextFile(`${dir}/quantization_config.json`));
        assertEquals(saved.quant_method, rq.quant_method, `${name} ${format}: quantization_config.json`);
      }
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
});
