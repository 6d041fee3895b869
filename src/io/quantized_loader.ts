/**
 * Read quantized folders back: a WeightSource that serves `<layer>.weight` of every packed Linear
 * dequantized to f32, and every other tensor as stored. The dequantization is the one the loaders'
 * kernels do:
 * - auto_round ("auto_round", "auto_round:auto_gptq" packing) and auto_gptq/gptq: W = scale·(code − zero)
 *   with the GPTQ tensor trio (auto_round_extension/torch/qlinear_torch*.py forward); GPTQ "v1" zero
 *   points are stored minus one and restored as gptqmodel's v1 → v2 conversion does (adding the
 *   pattern back to each packed word); `g_idx` maps inputs to groups when present; per-layer bits from
 *   auto-round's `extra_config` or GPTQ's `dynamic` rules;
 * - awq (and auto-round's "auto_round:auto_awq" packing): AWQ GEMM layout, `dequantize_gemm` of
 *   auto_round/export/export_to_awq/utils.py;
 * - compressed-tensors `pack-quantized`: `PackedQuantizationCompressor.decompress` (unpack_from_int32
 *   minus 2^(b−1), then (q − zp)·scale), per-layer arguments from `config_groups`.
 * A fake-quantized folder has no quantization_config and is read as a plain checkpoint. The layouts
 * and config keys of each format are src/formats/; this file picks the format and serves its weights.
 */
import { quote, UnsupportedError } from "../errors.ts";
import { awqReader, checkAwqConfig } from "../formats/awq.ts";
import { compressedTensorsReader } from "../formats/compressed_tensors.ts";
import { autoRoundPacking } from "../formats/gptq/config.ts";
import { gptqReader } from "../formats/gptq/tensors.ts";
import type { PackedLayer, PackedReader } from "../formats/layout.ts";
import type { WeightSource } from "../model/transformer.ts";
import type { SafetensorsReader } from "./safetensors/reader.ts";

/** The format reader of a quantization_config, by its `quant_method` (and auto-round's packing). */
function readerOf(qc: Record<string, unknown>): PackedReader {
  const method = typeof qc.quant_method === "string" ? qc.quant_method : "";
  if (method === "gptq") return gptqReader(qc, true);
  if (method === "awq") {
    checkAwqConfig(qc);
    return awqReader(qc);
  }
  if (method === "compressed-tensors") return compressedTensorsReader(qc);
  if (method === "auto-round" || method === "auto_round" || method === "intel/auto-round") {
    const { awq, zeroPlusOne } = autoRoundPacking(qc);
    return awq ? awqReader(qc) : gptqReader(qc, zeroPlusOne);
  }
  throw new UnsupportedError(
    `quant_method ${
      quote(qc.quant_method ?? "")
    } is not readable yet (auto-round, gptq, awq, compressed-tensors are)`,
  );
}

/**
 * A WeightSource over a quantized folder.
 *
 * @example
 * ```ts
 * const src = openQuantizedSource(reader, config.quantization_config, dir);
 * const w = await src.readF32("model.layers.0.self_attn.q_proj.weight"); // dequantized
 * ```
 */
export function openQuantizedSource(
  reader: SafetensorsReader,
  qc: Record<string, unknown>,
  origin: string,
): WeightSource {
  const format = readerOf(qc);
  const packed = new Map<string, PackedLayer>();
  for (const name of reader.names()) {
    if (!name.endsWith(format.marker)) continue;
    const layer = name.slice(0, -format.marker.length);
    packed.set(`${layer}.weight`, format.layer(reader, layer, origin));
  }
  return {
    origin,
    has: (name) => packed.has(name) || reader.has(name),
    shape: (name) => {
      const p = packed.get(name);
      return p ? [p.n, p.k] : reader.info(name).shape;
    },
    readF32: async (name) => {
      const p = packed.get(name);
      if (!p) return await reader.readF32(name);
      return await format.dequantize(reader, name.slice(0, -".weight".length), p, origin);
    },
  };
}
