/**
 * Writes an auto_awq folder (AutoAWQ GEMM kernels, transformers' AWQ integration, vLLM): the AWQ
 * GEMM tensors of every quantized Linear (formats/awq.ts), every float tensor in fp16,
 * `quantization_config` `quant_method: "awq"` in config.json and quantization_config.json. 4 bits
 * only. Spec: FORMATS.md § auto_awq; source: auto_round/export/export_to_awq/export.py.
 */
import { awqQuantizationConfig, awqTensors } from "../formats/awq.ts";
import { SafetensorsWriter } from "../io/safetensors/writer.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { convertFloatSource, withDType } from "./common.ts";
import type { ExportContext, Exporter, RawSource } from "./exporter.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";

/** Writes an auto_awq folder. */
export class AutoAwqExporter implements Exporter {
  readonly format = "auto_awq";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], src: RawSource): Promise<void> {
    const t = convertFloatSource(dtype, src, "F16"); // save_quantized_as_autoawq: dtype=torch.float16
    await this.writer.addFrom(name, t.dtype, shape, t.src);
  }

  async writeQuantized(l: QuantizedLinear): Promise<void> {
    const t = awqTensors(l);
    const u8 = (a: Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    await this.writer.add(`${l.name}.qweight`, "I32", [l.k, l.n / 8], u8(t.qweight));
    await this.writer.add(`${l.name}.qzeros`, "I32", [t.groups, l.n / 8], u8(t.qzeros));
    await this.writer.add(`${l.name}.scales`, "F16", [t.groups, l.n], encodeFloats(t.scales, "F16"));
    if (l.bias) await this.writer.add(`${l.name}.bias`, "F16", [l.n], encodeFloats(l.bias, "F16"));
  }

  /** `quantization_config` as save_quantized_as_autoawq writes it. */
  quantizationConfig(): Record<string, unknown> {
    return awqQuantizationConfig(this.ctx.run);
  }

  async finish(): Promise<void> {
    await this.writer.finish();
    const qc = this.quantizationConfig();
    await writeJson(join(this.dir, "config.json"), {
      ...withDType(this.ctx.config, "float16"),
      quantization_config: qc,
    });
    await writeJson(join(this.dir, "quantization_config.json"), qc); // as auto-round writes it
    await copyModelSideFiles(this.ctx.sourceDir, this.dir);
  }
}
