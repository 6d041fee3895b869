/**
 * The llm_compressor format (compressed-tensors `pack-quantized`, loaded by vLLM and transformers):
 * per quantized Linear `weight_packed` int32 `[N, ⌈K·b/32⌉]` (values densely packed along K, value i
 * at bit i·b), `weight_scale` `[N, G]` in the checkpoint dtype, `weight_zero_point` int32
 * `[⌈N·b/32⌉, G]` packed along N when asymmetric, `weight_shape` int64 `[2]`; `quantization_config`
 * with `quant_method: "compressed-tensors"`, `format: "pack-quantized"`, `config_groups` and
 * `ignore`. Spec: FORMATS.md § llm_compressor; sources: auto_round/export/export_to_llmcompressor/
 * export.py (`construct_ct_scheme`, `pack_layer`), compressed-tensors
 * `compressors/pack_quantized/{base,helpers}.py` (`pack_to_int32`: signed value + 2^(b−1), dense)
 * and `quantization/quant_{args,scheme,config}.py` (the serialized fields).
 */
import { SafetensorsWriter } from "../io/safetensors.ts";
import { resolveGroupSize } from "../qmath/int_quant.ts";
import { join } from "../std/path.ts";
import { encodeFloats, type StDType } from "../tensor/dtype.ts";
import { checkpointDType } from "./common.ts";
import type { ExportContext, Exporter } from "./exporter.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { copyModelSideFiles, writeJson } from "./hf_files.ts";
import { packDenseInt32, transpose } from "./pack.ts";

/**
 * Tensors of one Linear. Our codes are q + zp in [0, 2^b − 1]; compressed-tensors stores the signed
 * value q_ct = code − 2^(b−1) plus the same offset, so the packed value is the code itself, and its
 * zero point zp − 2^(b−1) likewise packs as zp.
 */
export function packQuantizedTensors(l: QuantizedLinear): {
  packed: Int32Array;
  packedCols: number;
  scale: Float32Array;
  zeroPoint?: Int32Array;
  groups: number;
} {
  const g = resolveGroupSize(l.groupSize, l.k);
  const G = Math.ceil(l.k / g);
  const packedCols = Math.ceil((l.k * l.bits) / 32);
  const packed = new Int32Array(l.n * packedCols);
  for (let r = 0; r < l.n; r++) {
    packed.set(packDenseInt32(l.q.codes.subarray(r * l.k, (r + 1) * l.k), l.bits), r * packedCols);
  }
  let zeroPoint: Int32Array | undefined;
  if (!l.sym) {
    // pack_to_int32(zero_point, packed_dim=0): pack each group's column of N zero points.
    const zt = transpose(l.q.zeros, l.n, G); // [G, N]
    const rowsPacked = Math.ceil((l.n * l.bits) / 32);
    const byGroup = new Int32Array(G * rowsPacked);
    for (let gi = 0; gi < G; gi++) {
      byGroup.set(packDenseInt32(zt.subarray(gi * l.n, (gi + 1) * l.n), l.bits), gi * rowsPacked);
    }
    zeroPoint = transpose(byGroup, G, rowsPacked); // [⌈N·b/32⌉, G]
  }
  return { packed, packedCols, scale: l.q.scales, zeroPoint, groups: G };
}

/** compressed-tensors QuantizationArgs as model_dump() serializes it for int weights. */
export function weightArgs(bits: number, groupSize: number, sym: boolean): Record<string, unknown> {
  const channel = groupSize <= 0;
  return {
    num_bits: bits,
    type: "int",
    symmetric: sym,
    group_size: channel ? null : groupSize,
    strategy: channel ? "channel" : "group",
    block_structure: null,
    dynamic: false,
    actorder: null,
    scale_dtype: null,
    zp_dtype: sym ? null : "torch.int8",
    observer: "memoryless_minmax",
    observer_kwargs: {},
  };
}

/** Writes an llm_compressor folder. */
export class LlmCompressorExporter implements Exporter {
  readonly format = "llm_compressor";
  private readonly writer: SafetensorsWriter;

  constructor(private readonly dir: string, private readonly ctx: ExportContext) {
    this.writer = new SafetensorsWriter(dir, { maxShardSize: ctx.maxShardSize });
  }

  async writeRaw(name: string, dtype: StDType, shape: number[], bytes: Uint8Array): Promise<void> {
    await this.writer.add(name, dtype, shape, bytes);
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

  /** QuantizationConfig.to_dict() of compressed-tensors for this run. */
  quantizationConfig(): Record<string, unknown> {
    const groups = new Map<string, { args: Record<string, unknown>; names: string[] }>();
    const ignore = ["lm_head"];
    for (const [name, p] of this.ctx.run.layers.layers) {
      if (!p.quantize) {
        ignore.push(name);
        continue;
      }
      const key = `${p.scheme.bits}/${p.scheme.groupSize}/${p.scheme.sym}`;
      const e = groups.get(key) ??
        { args: weightArgs(p.scheme.bits, p.scheme.groupSize, p.scheme.sym), names: [] };
      e.names.push(name);
      groups.set(key, e);
    }
    // One group targets "Linear"; several get their module names (_rewrite_config_group_targets).
    const config_groups: Record<string, unknown> = {};
    [...groups.values()].forEach((e, i) => {
      config_groups[`group_${i}`] = {
        targets: groups.size === 1 ? ["Linear"] : e.names.sort(),
        weights: e.args,
        input_activations: null,
        output_activations: null,
        format: "pack-quantized",
      };
    });
    return {
      config_groups,
      quant_method: "compressed-tensors",
      kv_cache_scheme: null,
      format: "pack-quantized",
      quantization_status: "compressed",
      global_compression_ratio: null,
      ignore,
    };
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
