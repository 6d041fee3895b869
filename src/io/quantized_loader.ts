/**
 * Read quantized folders back: a WeightSource that serves `<layer>.weight` of every packed Linear
 * dequantized to f32 (W = scale · (code − zero)), and every other tensor as stored. Supports the
 * GPTQ tensor layout used by auto_round ("auto_round" and "auto_round:auto_gptq" packing) and
 * auto_gptq. The dequantization is the one the loaders' torch kernels do
 * (auto_round_extension/torch/qlinear_torch*.py forward).
 */
import { FormatError, UnsupportedError } from "../errors.ts";
import type { WeightSource } from "../model/transformer.ts";
import { unpackQweightAlongK, unpackRowsAlongN } from "../export/pack.ts";
import type { SafetensorsReader } from "./safetensors.ts";

/** How one packed layer is laid out. */
interface PackedLayer {
  bits: number;
  groupSize: number;
  /** Stored zero points are the true ones minus one (GPTQ convention). */
  zeroPlusOne: boolean;
  n: number;
  k: number;
}

/** Per-layer bits/group_size, defaulting to the global quantization_config. */
function layerSettings(qc: Record<string, unknown>, layer: string): { bits: number; groupSize: number } {
  const extra = (qc.extra_config ?? {}) as Record<string, Record<string, unknown>>;
  let bits = Number(qc.bits), groupSize = Number(qc.group_size);
  const apply = (o: Record<string, unknown>) => {
    if (typeof o.bits === "number") bits = o.bits;
    if (typeof o.group_size === "number") groupSize = o.group_size;
  };
  for (const [key, o] of Object.entries(extra)) {
    if (key === layer) continue;
    // auto-round also writes regex keys; match them like its loaders do (search semantics).
    try {
      if (new RegExp(key).test(layer) && /[.*^$|()[\]?+]/.test(key)) apply(o);
    } catch { /* not a regex */ }
  }
  if (extra[layer]) apply(extra[layer]);
  return { bits, groupSize };
}

/** True when stored zero points are one less than the true ones. */
function zeroConvention(qc: Record<string, unknown>): boolean {
  const method = String(qc.quant_method ?? "");
  if (method === "gptq") return true;
  if (method === "auto-round" || method === "auto_round" || method === "intel/auto-round") {
    const packing = String(qc.packing_format ?? "auto_round:auto_gptq");
    if (packing.includes("awq")) throw new UnsupportedError(`packing_format ${packing} is not readable yet`);
    // "auto_round:auto_gptq" and "auto_round:gptq*" use the GPTQ convention; plain "auto_round" not.
    return packing.includes("gptq");
  }
  throw new UnsupportedError(`quant_method "${method}" is not readable yet (auto-round, gptq are)`);
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
  const zeroPlusOne = zeroConvention(qc);
  const packed = new Map<string, PackedLayer>();
  for (const name of reader.names()) {
    if (!name.endsWith(".qweight")) continue;
    const layer = name.slice(0, -".qweight".length);
    const { bits, groupSize } = layerSettings(qc, layer);
    const [rows, n] = reader.info(name).shape;
    const k = (rows * 32) / bits;
    if (!Number.isInteger(k)) {
      throw new FormatError(`${name}: ${rows} packed rows do not fit ${bits}-bit codes`, origin);
    }
    for (const part of ["qzeros", "scales"]) {
      if (!reader.has(`${layer}.${part}`)) throw new FormatError(`${layer}.${part} is missing`, origin);
    }
    packed.set(`${layer}.weight`, { bits, groupSize, zeroPlusOne, n, k });
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
      const layer = name.slice(0, -".weight".length);
      return dequantizeLayer(
        p,
        await reader.readInt32(`${layer}.qweight`),
        await reader.readInt32(`${layer}.qzeros`),
        await reader.readF32(`${layer}.scales`),
        reader.info(`${layer}.scales`).shape,
        origin,
      );
    },
  };
}

/** W[n, k] = scale[g, n] · (code[n, k] − zero[g, n]), g = ⌊k / groupSize⌋. */
export function dequantizeLayer(
  p: PackedLayer,
  qweight: Int32Array,
  qzeros: Int32Array,
  scales: Float32Array,
  scalesShape: number[],
  origin = "",
): Float32Array {
  const g = p.groupSize <= 0 || p.groupSize > p.k ? p.k : p.groupSize;
  const G = Math.ceil(p.k / g);
  if (scalesShape[0] !== G || scalesShape[1] !== p.n) {
    throw new FormatError(
      `scales shape [${scalesShape}] does not match ${G} groups × ${p.n} outputs`,
      origin,
    );
  }
  const codes = unpackQweightAlongK(qweight, p.n, p.k, p.bits);
  const zeros = unpackRowsAlongN(qzeros, G, p.n, p.bits);
  const w = new Float32Array(p.n * p.k);
  for (let r = 0; r < p.n; r++) {
    for (let c = 0; c < p.k; c++) {
      const gi = Math.floor(c / g);
      const z = zeros[gi * p.n + r] + (p.zeroPlusOne ? 1 : 0);
      w[r * p.k + c] = scales[gi * p.n + r] * (codes[r * p.k + c] - z);
    }
  }
  return w;
}
