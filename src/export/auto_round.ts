/**
 * The auto_round format (vLLM, SGLang, transformers): per quantized Linear `qweight` int32
 * `[K·b/32, N]` packed along K, `qzeros` int32 `[G, N·b/32]` packed along N, `scales` fp16 `[G, N]`,
 * bias fp16; `quantization_config` in config.json. Spec: FORMATS.md § auto_round; source:
 * auto_round/export/export_to_autoround/export.py and auto_round_extension/torch/qlinear_torch*.py.
 *
 * Zero-point convention follows `packing_format`: a symmetric default scheme is written as
 * "auto_round:auto_gptq" (zero points stored minus one, the GPTQ kernels' convention), an
 * asymmetric one as "auto_round" (stored as is).
 */
import type { ExportContext, Exporter } from "./exporter.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { packQweightAlongK, packRowsAlongN, transpose } from "./pack.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";
import { SafetensorsWriter } from "../io/safetensors.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { resolveGroupSize } from "../qmath/int_quant.ts";
import { AUTOROUND_COMPAT_VERSION, PRODUCER } from "../version.ts";

/** The packing_format string auto-round writes for a default scheme. */
export function autoRoundPackingFormat(sym: boolean): string {
  return sym ? "auto_round:auto_gptq" : "auto_round";
}

/** The bytes of one quantized Linear in the GPTQ tensor layout shared by auto_round and auto_gptq. */
export function gptqTensors(
  l: QuantizedLinear,
  zeroMinusOne: boolean,
): { qweight: Int32Array; qzeros: Int32Array; scales: Float32Array; groups: number } {
  const g = resolveGroupSize(l.groupSize, l.k);
  const G = Math.ceil(l.k / g);
  const qweight = packQweightAlongK(l.q.codes, l.n, l.k, l.bits);
  const zerosStored = Int32Array.from(l.q.zeros, (z) => (zeroMinusOne ? z - 1 : z));
  const qzeros = packRowsAlongN(transpose(zerosStored, l.n, G), G, l.n, l.bits);
  const scales = transpose(l.q.scales, l.n, G);
  return { qweight, qzeros, scales, groups: G };
}

/** Writes an auto_round folder. */
export class AutoRoundExporter implements Exporter {
  readonly format = "auto_round";
  private readonly writer: SafetensorsWriter;
  private readonly packing: string;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
    this.packing = autoRoundPackingFormat(ctx.run.scheme.sym);
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], bytes: Uint8Array): Promise<void> {
    await this.writer.add(name, dtype, shape, bytes);
  }

  async writeQuantized(l: QuantizedLinear): Promise<void> {
    const t = gptqTensors(l, this.packing === "auto_round:auto_gptq");
    await this.writer.add(
      `${l.name}.qweight`,
      "I32",
      [(l.k * l.bits) / 32, l.n],
      new Uint8Array(t.qweight.buffer),
    );
    await this.writer.add(
      `${l.name}.qzeros`,
      "I32",
      [t.groups, (l.n * l.bits) / 32],
      new Uint8Array(t.qzeros.buffer),
    );
    await this.writer.add(`${l.name}.scales`, "F16", [t.groups, l.n], encodeFloats(t.scales, "F16"));
    if (l.bias) await this.writer.add(`${l.name}.bias`, "F16", [l.n], encodeFloats(l.bias, "F16"));
  }

  /** `quantization_config` as auto-round writes it (plus the tuning settings FORMATS.md asks for). */
  quantizationConfig(): Record<string, unknown> {
    const r = this.ctx.run;
    const s = r.scheme;
    const extra: Record<string, Record<string, unknown>> = {};
    for (const [name, plan] of r.layers.layers) {
      if (!plan.quantize) {
        extra[name] = { bits: 16, data_type: "fp" };
        continue;
      }
      const diff: Record<string, unknown> = {};
      if (plan.scheme.bits !== s.bits) diff.bits = plan.scheme.bits;
      if (plan.scheme.groupSize !== s.groupSize) diff.group_size = plan.scheme.groupSize;
      if (plan.scheme.sym !== s.sym) diff.sym = plan.scheme.sym;
      if (Object.keys(diff).length) extra[name] = diff;
    }
    const cfg: Record<string, unknown> = {
      bits: s.bits,
      data_type: s.dataType,
      group_size: s.groupSize,
      sym: s.sym,
      batch_size: r.batchSize,
      gradient_accumulate_steps: r.gradientAccumulateSteps,
      iters: r.iters,
      nsamples: r.nsamples,
      seqlen: r.seqlen,
      enable_minmax_tuning: r.enableMinmaxTuning,
      enable_quanted_input: r.enableQuantedInput,
      low_gpu_mem_usage: r.lowGpuMemUsage,
      amp: r.amp,
      scale_dtype: "torch.float16",
      dataset: r.dataset,
      autoround_version: AUTOROUND_COMPAT_VERSION,
      block_name_to_quantize: "model.layers",
      quant_method: "auto-round",
      packing_format: this.packing,
      producer: PRODUCER,
    };
    if (r.lr !== undefined) cfg.lr = r.lr;
    if (r.minmaxLr !== undefined) cfg.minmax_lr = r.minmaxLr;
    if (Object.keys(extra).length) cfg.extra_config = extra;
    return cfg;
  }

  async finish(): Promise<void> {
    await this.writer.finish();
    const qc = this.quantizationConfig();
    const config = { ...this.ctx.config, quantization_config: qc };
    await writeJson(join(this.dir, "config.json"), config);
    await writeJson(join(this.dir, "quantization_config.json"), qc);
    await copyModelSideFiles(this.ctx.sourceDir, this.dir);
  }
}
