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
 * - the float and activation-quantized schemes (spec/SCHEMES.md § 10.2–10.7: NVFP4, MXFP4, MXFP8,
 *   MXINT4, FP8_STATIC, FPW8A16, INT8_W8A8) of both compressed-tensors and auto-round, as the engines
 *   dequantize them (formats/float_tensors.ts); {@link withActivationQuant} adds the activation
 *   quantizer the config records, with each Linear's static `input_scale` / `input_global_scale`.
 * A fake-quantized folder has no quantization_config and is read as a plain checkpoint. The layouts
 * and config keys of each format are src/formats/; this file picks the format and serves its weights.
 */
import { quote, UnsupportedError } from "../errors.ts";
import { autoRoundActQuant, autoRoundFloatLayout } from "../formats/auto_round_fp.ts";
import { compressedTensorsActQuant, compressedTensorsFloatLayout } from "../formats/compressed_tensors_fp.ts";
import { type FloatLayout, floatPackedReader, readScalar } from "../formats/float_tensors.ts";
import type { ActQuant } from "../qmath/quantized.ts";
import { awqReader, checkAwqConfig } from "../formats/awq.ts";
import { compressedTensorsReader } from "../formats/compressed_tensors.ts";
import { autoRoundPacking } from "../formats/gptq/config.ts";
import { gptqReader } from "../formats/gptq/tensors.ts";
import type { PackedLayer, PackedReader } from "../formats/layout.ts";
import type { WeightSource } from "../model/transformer.ts";
import type { SafetensorsReader } from "./safetensors/reader.ts";

const AUTO_ROUND_METHODS = ["auto-round", "auto_round", "intel/auto-round"];

/**
 * The float layout and activation quantizer of a quantization_config, or undefined for the integer
 * formats (SCHEMES.md § 10.2–10.7).
 */
export function floatSchemeOf(
  qc: Record<string, unknown>,
): { layout: FloatLayout; act?: ActQuant } | undefined {
  const method = typeof qc.quant_method === "string" ? qc.quant_method : "";
  if (method === "compressed-tensors") {
    const layout = compressedTensorsFloatLayout(qc);
    return layout && { layout, act: compressedTensorsActQuant(qc, layout) };
  }
  if (AUTO_ROUND_METHODS.includes(method)) {
    const layout = autoRoundFloatLayout(qc);
    return layout && { layout, act: autoRoundActQuant(qc) };
  }
  return undefined;
}

/** The format reader of a quantization_config, by its `quant_method` (and auto-round's packing). */
function readerOf(qc: Record<string, unknown>): PackedReader {
  const float = floatSchemeOf(qc);
  if (float) return floatPackedReader(float.layout);
  const method = typeof qc.quant_method === "string" ? qc.quant_method : "";
  if (method === "gptq") return gptqReader(qc, true);
  if (method === "awq") {
    checkAwqConfig(qc);
    return awqReader(qc);
  }
  if (method === "compressed-tensors") return compressedTensorsReader(qc);
  if (AUTO_ROUND_METHODS.includes(method)) {
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

/** The activation quantizer of one Linear as WeightSource.activationQuant returns it. */
export interface LayerActQuant {
  act: ActQuant;
  /** FP8_STATIC's stored `input_scale`. */
  inputScale?: number;
  /** NVFP4's stored `input_global_scale`. */
  inputGlobalScale?: number;
}

/**
 * `src` with `activationQuant` answering for every float-quantized Linear of a folder whose config
 * quantizes activations (the static input_scale / input_global_scale read here, once); `src` as it is
 * for weight-only and integer folders.
 *
 * @example
 * ```ts
 * const src = await withActivationQuant(openQuantizedSource(reader, qc, dir), reader, qc);
 * src.activationQuant?.("model.layers.0.mlp.up_proj"); // { act: {bits: 4, …}, inputGlobalScale: … }
 * ```
 */
export async function withActivationQuant(
  src: WeightSource,
  reader: SafetensorsReader,
  qc: Record<string, unknown>,
): Promise<WeightSource> {
  const float = floatSchemeOf(qc);
  if (!float?.act) return src;
  const act = float.act, marker = floatPackedReader(float.layout).marker;
  const layers = new Map<string, LayerActQuant>();
  for (const name of reader.names()) {
    if (!name.endsWith(marker)) continue;
    const layer = name.slice(0, -marker.length);
    const e: LayerActQuant = { act };
    const inputScale = await readScalar(reader, `${layer}.input_scale`);
    const inputGlobalScale = await readScalar(reader, `${layer}.input_global_scale`);
    if (inputScale !== undefined) e.inputScale = inputScale;
    if (inputGlobalScale !== undefined) e.inputGlobalScale = inputGlobalScale;
    layers.set(layer, e);
  }
  return { ...src, activationQuant: (layer) => layers.get(layer) };
}
