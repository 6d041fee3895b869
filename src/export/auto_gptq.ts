/**
 * Writes an auto_gptq folder (GPTQ loaders: gptqmodel, transformers + optimum, vLLM): the GPTQ tensor
 * trio plus `g_idx` with zero points stored minus one (formats/gptq/tensors.ts), every float tensor
 * in fp16, `quantization_config` with `quant_method: "gptq"` (formats/gptq/config.ts) in config.json,
 * quantize_config.json and quantization_config.json. Spec: FORMATS.md § auto_gptq; source:
 * auto_round/export/export_to_autogptq/export.py.
 */
import { autoGptqQuantizationConfig } from "../formats/gptq/config.ts";
import { autoGptqTensors } from "../formats/gptq/tensors.ts";
import { SafetensorsWriter } from "../io/safetensors/writer.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { convertFloatSource, withDType } from "./common.ts";
import type { ExportContext, Exporter, RawSource } from "./exporter.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";

/** Writes an auto_gptq folder. */
export class AutoGptqExporter implements Exporter {
  readonly format = "auto_gptq";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], src: RawSource): Promise<void> {
    // save_quantized_as_autogptq saves with dtype=torch.float16.
    const t = convertFloatSource(dtype, src, "F16");
    await this.writer.addFrom(name, t.dtype, shape, t.src);
  }

  async writeQuantized(l: QuantizedLinear): Promise<void> {
    const t = autoGptqTensors(l);
    const u8 = (a: Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    await this.writer.add(`${l.name}.qweight`, "I32", [(l.k * l.bits) / 32, l.n], u8(t.qweight));
    await this.writer.add(`${l.name}.qzeros`, "I32", [t.groups, (l.n * l.bits) / 32], u8(t.qzeros));
    await this.writer.add(`${l.name}.scales`, "F16", [t.groups, l.n], encodeFloats(t.scales, "F16"));
    await this.writer.add(`${l.name}.g_idx`, "I32", [l.k], u8(t.gIdx));
    if (l.bias) await this.writer.add(`${l.name}.bias`, "F16", [l.n], encodeFloats(l.bias, "F16"));
  }

  /** `quantization_config` as save_quantized_as_autogptq writes it. */
  quantizationConfig(): Record<string, unknown> {
    return autoGptqQuantizationConfig(this.ctx.run);
  }

  async finish(): Promise<void> {
    await this.writer.finish();
    const qc = this.quantizationConfig();
    await writeJson(join(this.dir, "config.json"), {
      ...withDType(this.ctx.config, "float16"),
      quantization_config: qc,
    });
    // quantize_config.json for AutoGPTQ/gptqmodel; quantization_config.json as auto-round writes it.
    await writeJson(join(this.dir, "quantize_config.json"), qc);
    await writeJson(join(this.dir, "quantization_config.json"), qc);
    await copyModelSideFiles(this.ctx.sourceDir, this.dir);
  }
}
