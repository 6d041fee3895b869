/**
 * The auto_gptq format (GPTQ loaders: gptqmodel, transformers + optimum, vLLM): the GPTQ tensor trio
 * of auto_round plus `g_idx` int32 `[K]` (k / group for desc_act=false), zero points stored minus one
 * (legacy GPTQ "v1" convention), every float tensor in fp16, `quantization_config` with
 * `quant_method: "gptq"` in config.json, quantize_config.json and quantization_config.json. Spec: FORMATS.md § auto_gptq;
 * source: auto_round/export/export_to_autogptq/export.py and auto_round_extension/torch/qlinear_torch_zp.py.
 */
import { SafetensorsWriter } from "../io/safetensors.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { PRODUCER } from "../version.ts";
import { convertFloat, layerDifferences, tuningConfig, withDType } from "./common.ts";
import type { ExportContext, Exporter } from "./exporter.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";
import { packQweightAlongK, packZerosGptqV1, transpose } from "./pack.ts";
import { resolveGroupSize } from "../qmath/int_quant.ts";
import { toStandardRegex } from "../quant/layer_config.ts";

/** `g_idx` for desc_act=false: input feature k belongs to group ⌊k / g⌋. */
export function gIdx(k: number, g: number): Int32Array {
  return Int32Array.from({ length: k }, (_, i) => Math.floor(i / g));
}

/** Tensors of one Linear in the auto_gptq layout. */
export function autoGptqTensors(l: QuantizedLinear): {
  qweight: Int32Array;
  qzeros: Int32Array;
  scales: Float32Array;
  gIdx: Int32Array;
  groups: number;
} {
  const g = resolveGroupSize(l.groupSize, l.k);
  const G = Math.ceil(l.k / g);
  return {
    qweight: packQweightAlongK(l.q.codes, l.n, l.k, l.bits),
    qzeros: packZerosGptqV1(transpose(l.q.zeros, l.n, G), G, l.n, l.bits),
    scales: transpose(l.q.scales, l.n, G),
    gIdx: gIdx(l.k, g),
    groups: G,
  };
}

/** Writes an auto_gptq folder. */
export class AutoGptqExporter implements Exporter {
  readonly format = "auto_gptq";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], bytes: Uint8Array): Promise<void> {
    // save_quantized_as_autogptq saves with dtype=torch.float16.
    const t = convertFloat(dtype, bytes, "F16");
    await this.writer.add(name, t.dtype, shape, t.bytes);
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
    const cfg: Record<string, unknown> = {
      ...tuningConfig(this.ctx),
      block_name_to_quantize: "model.layers",
      quant_method: "gptq",
      desc_act: false,
      true_sequential: false,
      damp_percent: 0.01,
      static_groups: false,
      checkpoint_format: "gptq",
      lm_head: false,
      provider: "auto-round",
      producer: PRODUCER,
    };
    // Per-layer differences as GPTQ "dynamic" rules ("+:regex" quantize with these settings,
    // "-:regex" keep in 16-bit; convert_to_autogptq_dynamic).
    const dynamic: Record<string, Record<string, unknown>> = {};
    const skipped: string[] = [];
    for (const [name, d] of layerDifferences(this.ctx)) {
      const re = toStandardRegex(name);
      if (d.bits >= 16) {
        dynamic[`-:${re}`] = {};
        skipped.push(name);
      } else dynamic[`+:${re}`] = { bits: d.bits, group_size: d.group_size, sym: d.sym };
    }
    if (Object.keys(dynamic).length) cfg.dynamic = dynamic;
    if (skipped.length) {
      // modules_in_block_to_quantize: the quantized layers of the blocks, relative to the block.
      const inBlock = new Set<string>();
      for (const [name, p] of this.ctx.run.layers.layers) {
        if (p.quantize) inBlock.add(name.replace(/^model\.layers\.\d+\./, ""));
      }
      cfg.modules_in_block_to_quantize = [[...inBlock].sort()];
    }
    return cfg;
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
