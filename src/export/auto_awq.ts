/**
 * The auto_awq format (AutoAWQ GEMM kernels, transformers' AWQ integration, vLLM): per quantized
 * Linear `qweight` int32 `[K, N/8]` packed along N in AWQ's interleaved order [0, 4, 1, 5, 2, 6, 3, 7],
 * `qzeros` int32 `[G, N/8]` (same order, zero points as they are), `scales` fp16 `[G, N]`, bias fp16;
 * every float tensor saved in fp16; `quantization_config` `quant_method: "awq"`, `version: "gemm"`,
 * `zero_point` (= not sym). 4 bits only. Spec: FORMATS.md § auto_awq; source:
 * auto_round/export/export_to_awq/{export.py, utils.py} (`WQLinear_GEMM.from_linear`).
 */
import { FormatError } from "../errors.ts";
import { SafetensorsWriter } from "../io/safetensors.ts";
import { resolveGroupSize } from "../qmath/int_quant.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { PRODUCER } from "../version.ts";
import { convertFloat, tuningConfig, withDType } from "./common.ts";
import type { ExportContext, Exporter } from "./exporter.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";
import { packAwqAlongN, transpose } from "./pack.ts";

/** Tensors of one Linear in the AWQ GEMM layout. */
export function awqTensors(
  l: QuantizedLinear,
): { qweight: Int32Array; qzeros: Int32Array; scales: Float32Array; groups: number } {
  if (l.bits !== 4) {
    throw new FormatError(`${l.name}: auto_awq stores 4-bit weights only, got ${l.bits} bits`);
  }
  const g = resolveGroupSize(l.groupSize, l.k);
  const G = Math.ceil(l.k / g);
  // intweight [N, K] → transposed [K, N] and packed along N.
  const codesKN = new Int32Array(l.n * l.k);
  for (let r = 0; r < l.n; r++) for (let c = 0; c < l.k; c++) codesKN[c * l.n + r] = l.q.codes[r * l.k + c];
  return {
    qweight: packAwqAlongN(codesKN, l.k, l.n, 4),
    qzeros: packAwqAlongN(transpose(l.q.zeros, l.n, G), G, l.n, 4),
    scales: transpose(l.q.scales, l.n, G),
    groups: G,
  };
}

/** Writes an auto_awq folder. */
export class AutoAwqExporter implements Exporter {
  readonly format = "auto_awq";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], bytes: Uint8Array): Promise<void> {
    const t = convertFloat(dtype, bytes, "F16"); // save_quantized_as_autoawq: dtype=torch.float16
    await this.writer.add(name, t.dtype, shape, t.bytes);
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
    const notConverted = ["lm_head"];
    for (const [name, p] of this.ctx.run.layers.layers) if (!p.quantize) notConverted.push(name);
    return {
      ...tuningConfig(this.ctx),
      provider: "auto-round",
      quant_method: "awq",
      zero_point: !this.ctx.run.scheme.sym,
      version: "gemm",
      modules_to_not_convert: notConverted,
      producer: PRODUCER,
    };
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
