/**
 * The fake format: the checkpoint with every quantized Linear weight replaced by its dequantized
 * value W̃ = scale · (code − zero), in the checkpoint's dtype, and config.json unchanged (no
 * quantization_config), so anything that loads the original model loads it. Source:
 * auto_round/export/formats/backends/fake.py (saves the model after quantize-dequantize).
 */
import { SafetensorsWriter } from "../io/safetensors/writer.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { checkpointDType } from "./common.ts";
import { dequantizeFloatLinear, dequantizeLinear } from "../qmath/quantized.ts";
import type { ExportContext, Exporter, RawSource } from "./exporter.ts";
import type { FloatQuantizedLinear, QuantizedLinear } from "../qmath/quantized.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";

/** Writes a fake-quantized checkpoint folder. */
export class FakeExporter implements Exporter {
  readonly format = "fake";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], src: RawSource): Promise<void> {
    await this.writer.addFrom(name, dtype, shape, src);
  }

  async writeQuantized(l: QuantizedLinear): Promise<void> {
    const dt = checkpointDType(this.ctx.spec);
    await this.writer.add(`${l.name}.weight`, dt, [l.n, l.k], encodeFloats(dequantizeLinear(l), dt));
    if (l.bias) await this.writer.add(`${l.name}.bias`, dt, [l.n], encodeFloats(l.bias, dt));
  }

  /** A float-scheme Linear: its W̃ (dequantizeFloatLinear) in the checkpoint dtype (SCHEMES.md § 10.8). */
  async writeFloatQuantized(l: FloatQuantizedLinear): Promise<void> {
    const dt = checkpointDType(this.ctx.spec);
    await this.writer.add(`${l.name}.weight`, dt, [l.n, l.k], encodeFloats(dequantizeFloatLinear(l), dt));
    if (l.bias) await this.writer.add(`${l.name}.bias`, dt, [l.n], encodeFloats(l.bias, dt));
  }

  async finish(): Promise<void> {
    await this.writer.finish();
    await writeJson(join(this.dir, "config.json"), this.ctx.config);
    await copyModelSideFiles(this.ctx.sourceDir, this.dir);
  }
}
