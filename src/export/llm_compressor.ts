/**
 * Writes an llm_compressor folder (compressed-tensors `pack-quantized`, loaded by vLLM and
 * transformers): `weight_packed`, `weight_scale` in the checkpoint dtype, `weight_zero_point` when
 * asymmetric and `weight_shape` per quantized Linear (formats/compressed_tensors.ts), and the
 * compressed-tensors `quantization_config` in config.json. Spec: FORMATS.md § llm_compressor; source:
 * auto_round/export/export_to_llmcompressor/export.py.
 */
import { compressedTensorsConfig, packQuantizedTensors } from "../formats/compressed_tensors.ts";
import { compressedTensorsFloatConfig } from "../formats/compressed_tensors_fp.ts";
import { floatTensors } from "../formats/float_tensors.ts";
import { SafetensorsWriter } from "../io/safetensors/writer.ts";
import type { FloatQuantizedLinear, QuantizedLinear } from "../qmath/quantized.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { checkpointDType } from "./common.ts";
import type { ExportContext, Exporter, RawSource } from "./exporter.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";

/** Writes an llm_compressor folder. */
export class LlmCompressorExporter implements Exporter {
  readonly format = "llm_compressor";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], src: RawSource): Promise<void> {
    await this.writer.addFrom(name, dtype, shape, src);
  }

  async writeQuantized(l: QuantizedLinear): Promise<void> {
    const t = packQuantizedTensors(l);
    const dt = checkpointDType(this.ctx.spec);
    const u8 = (a: Int32Array | BigInt64Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    await this.writer.add(`${l.name}.weight_packed`, "I32", [l.n, t.packedCols], u8(t.packed));
    await this.writer.add(`${l.name}.weight_scale`, dt, [l.n, t.groups], encodeFloats(t.scale, dt));
    if (t.zeroPoint) {
      await this.writer.add(
        `${l.name}.weight_zero_point`,
        "I32",
        [t.zeroPoint.length / t.groups, t.groups],
        u8(t.zeroPoint),
      );
    }
    await this.writer.add(
      `${l.name}.weight_shape`,
      "I64",
      [2],
      u8(BigInt64Array.from([BigInt(l.n), BigInt(l.k)])),
    );
    if (l.bias) await this.writer.add(`${l.name}.bias`, dt, [l.n], encodeFloats(l.bias, dt));
  }

  /**
   * A float-scheme Linear (SCHEMES.md § 10.2–10.5): NVFP4/MXFP4 `weight_packed`, MXFP8/FP8/INT8
   * `weight`, `weight_scale` (FP8 per channel `[out, 1]`; FPW8A16's per-tensor scale float32 as the
   * quantizer holds it, § 2.3), the static activation scales and the bias.
   */
  async writeFloatQuantized(l: FloatQuantizedLinear): Promise<void> {
    const modelDType = checkpointDType(this.ctx.spec);
    for (const t of floatTensors(l, { modelDType, fp8ScaleColumn: true, fp8TensorScaleDType: "F32" })) {
      await this.writer.add(`${l.name}.${t.suffix}`, t.dtype, t.shape, t.bytes);
    }
  }

  /** QuantizationConfig.to_dict() of compressed-tensors for this run. */
  quantizationConfig(): Record<string, unknown> {
    const fs = this.ctx.run.floatScheme;
    return fs ? compressedTensorsFloatConfig(this.ctx.run, fs) : compressedTensorsConfig(this.ctx.run);
  }

  async finish(): Promise<void> {
    await this.writer.finish();
    await writeJson(join(this.dir, "config.json"), {
      ...this.ctx.config,
      quantization_config: this.quantizationConfig(),
    });
    await copyModelSideFiles(this.ctx.sourceDir, this.dir);
  }
}
