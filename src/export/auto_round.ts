/**
 * Writes an auto_round folder (vLLM, SGLang, transformers): the GPTQ tensor trio of every quantized
 * Linear (formats/gptq/tensors.ts), bias fp16, `quantization_config` in config.json and
 * quantization_config.json (formats/gptq/config.ts). Spec: FORMATS.md § auto_round; source:
 * auto_round/export/export_to_autoround/export.py.
 *
 * Zero-point convention follows `packing_format`: a symmetric default scheme is written as
 * "auto_round:auto_gptq" (zero points stored minus one, the GPTQ kernels' convention), an
 * asymmetric one as "auto_round" (stored as is).
 */
import { autoRoundFloatConfig } from "../formats/auto_round_fp.ts";
import { floatTensors } from "../formats/float_tensors.ts";
import { autoRoundPackingFormat, autoRoundQuantizationConfig } from "../formats/gptq/config.ts";
import { gptqTensors } from "../formats/gptq/tensors.ts";
import { SafetensorsWriter } from "../io/safetensors/writer.ts";
import type { FloatQuantizedLinear, QuantizedLinear } from "../qmath/quantized.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { checkpointDType, withDType } from "./common.ts";
import type { ExportContext, Exporter, RawSource } from "./exporter.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";

/** Writes an auto_round folder. */
export class AutoRoundExporter implements Exporter {
  readonly format = "auto_round";
  private readonly writer: SafetensorsWriter;
  private readonly packing: string;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
    this.packing = autoRoundPackingFormat(ctx.run.scheme.sym);
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], src: RawSource): Promise<void> {
    await this.writer.addFrom(name, dtype, shape, src);
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

  /**
   * A float-scheme Linear (SCHEMES.md § 10.7): the llm_compressor tensors, FP8 `weight_scale` `[out]`
   * (export_to_fp8.py, no unsqueeze) and per-tensor scales in the model dtype.
   */
  async writeFloatQuantized(l: FloatQuantizedLinear): Promise<void> {
    const modelDType = checkpointDType(this.ctx.spec);
    for (const t of floatTensors(l, { modelDType, fp8ScaleColumn: false })) {
      await this.writer.add(`${l.name}.${t.suffix}`, t.dtype, t.shape, t.bytes);
    }
  }

  /** `quantization_config` as auto-round writes it (plus the tuning settings FORMATS.md asks for). */
  quantizationConfig(): Record<string, unknown> {
    const fs = this.ctx.run.floatScheme;
    return fs
      ? autoRoundFloatConfig(this.ctx.run, fs)
      : autoRoundQuantizationConfig(this.ctx.run, this.packing);
  }

  async finish(): Promise<void> {
    await this.writer.finish();
    const qc = this.quantizationConfig();
    // FP8 with static activations: config.json torch_dtype bfloat16 (export_to_fp8.py; § 10.7).
    const fs = this.ctx.run.floatScheme;
    const base = qc.packing_format === "auto_round:fp8_static" && fs
      ? withDType(this.ctx.config, "bfloat16")
      : this.ctx.config;
    const config = { ...base, quantization_config: qc };
    await writeJson(join(this.dir, "config.json"), config);
    await writeJson(join(this.dir, "quantization_config.json"), qc);
    await copyModelSideFiles(this.ctx.sourceDir, this.dir);
  }
}
