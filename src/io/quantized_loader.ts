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
 * A fake-quantized folder has no quantization_config and is read as a plain checkpoint.
 */
import { FormatError, UnsupportedError } from "../errors.ts";
import type { WeightSource } from "../model/transformer.ts";
import {
  unpackAwqAlongN,
  unpackDenseInt32,
  unpackQweightAlongK,
  unpackRowsAlongN,
  unpackZerosGptqV1,
} from "../export/pack.ts";
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

/** Layouts a quantized folder can have. */
type Layout = "gptq" | "awq" | "pack-quantized";

/** Per-layer bits/group_size, defaulting to the global quantization_config. */
function layerSettings(qc: Record<string, unknown>, layer: string): { bits: number; groupSize: number } {
  const extra = (qc.extra_config ?? {}) as Record<string, Record<string, unknown>>;
  let bits = Number(qc.bits ?? qc.w_bit), groupSize = Number(qc.group_size ?? qc.q_group_size);
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
  // GPTQ "dynamic": "+:regex" → these settings, "-:regex" → not quantized (gptqmodel semantics).
  const dynamic = (qc.dynamic ?? {}) as Record<string, Record<string, unknown>>;
  for (const [key, o] of Object.entries(dynamic)) {
    const m = /^([+-]):(.*)$/.exec(key) ?? [key, "+", key];
    try {
      if (m[1] === "+" && new RegExp(m[2]).test(layer)) apply(o);
    } catch { /* not a regex */ }
  }
  return { bits, groupSize };
}

/** The layout and zero-point convention of a quantization_config. */
function layoutOf(qc: Record<string, unknown>): { layout: Layout; zeroPlusOne: boolean } {
  const method = String(qc.quant_method ?? "");
  if (method === "gptq") return { layout: "gptq", zeroPlusOne: true };
  if (method === "awq") {
    const version = String(qc.version ?? "gemm").toLowerCase();
    if (version !== "gemm") throw new UnsupportedError(`AWQ version "${version}" is not readable (gemm is)`);
    return { layout: "awq", zeroPlusOne: false };
  }
  if (method === "compressed-tensors") {
    const fmt = String(qc.format ?? "");
    if (fmt !== "pack-quantized") {
      throw new UnsupportedError(
        `compressed-tensors format "${fmt}" is not readable yet (pack-quantized is)`,
      );
    }
    return { layout: "pack-quantized", zeroPlusOne: false };
  }
  if (method === "auto-round" || method === "auto_round" || method === "intel/auto-round") {
    const packing = String(qc.packing_format ?? "auto_round:auto_gptq");
    if (packing.includes("awq")) return { layout: "awq", zeroPlusOne: false };
    // "auto_round:auto_gptq" and "auto_round:gptq*" use the GPTQ convention; plain "auto_round" not.
    return { layout: "gptq", zeroPlusOne: packing.includes("gptq") };
  }
  throw new UnsupportedError(
    `quant_method "${method}" is not readable yet (auto-round, gptq, awq, compressed-tensors are)`,
  );
}

/** compressed-tensors: the weight arguments of the config group that targets `layer`. */
function ctArgs(
  qc: Record<string, unknown>,
  layer: string,
): { bits: number; groupSize: number; sym: boolean } {
  const groups = Object.values((qc.config_groups ?? {}) as Record<string, Record<string, unknown>>);
  const matches = (t: string) => {
    if (t === "Linear") return true;
    if (t.startsWith("re:")) {
      try {
        return new RegExp(t.slice(3)).test(layer);
      } catch {
        return false;
      }
    }
    return t === layer;
  };
  // Explicit names win over the class target "Linear".
  const byName = groups.find((g) =>
    ((g.targets ?? []) as string[]).some((t) => t !== "Linear" && matches(t))
  );
  const g = byName ?? groups.find((x) => ((x.targets ?? []) as string[]).includes("Linear"));
  const w = (g?.weights ?? {}) as Record<string, unknown>;
  if (w.type !== undefined && w.type !== "int") {
    throw new UnsupportedError(`compressed-tensors weights of type "${w.type}" are not readable yet`);
  }
  const strategy = String(w.strategy ?? "group");
  return {
    bits: Number(w.num_bits ?? 8),
    groupSize: strategy === "channel" ? -1 : Number(w.group_size ?? -1),
    sym: w.symmetric !== false,
  };
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
  const { layout, zeroPlusOne } = layoutOf(qc);
  const packed = new Map<string, PackedLayer & { sym?: boolean }>();
  const marker = layout === "pack-quantized" ? ".weight_packed" : ".qweight";
  for (const name of reader.names()) {
    if (!name.endsWith(marker)) continue;
    const layer = name.slice(0, -marker.length);
    const shape = reader.info(name).shape;
    if (layout === "pack-quantized") {
      const a = ctArgs(qc, layer);
      if (!reader.has(`${layer}.weight_scale`)) {
        throw new FormatError(`${layer}.weight_scale is missing`, origin);
      }
      const [n, G] = reader.info(`${layer}.weight_scale`).shape;
      // K from the groups (strategy group) or the packed width (channel); weight_shape is checked on read.
      const k = a.groupSize > 0 ? G * a.groupSize : Math.floor((shape[1] * 32) / a.bits);
      packed.set(`${layer}.weight`, { bits: a.bits, groupSize: a.groupSize, zeroPlusOne, n, k, sym: a.sym });
      continue;
    }
    const { bits, groupSize } = layerSettings(qc, layer);
    let n: number, k: number;
    if (layout === "awq") {
      [k, n] = [shape[0], (shape[1] * 32) / bits];
    } else {
      const rows = shape[0];
      n = shape[1];
      k = (rows * 32) / bits;
    }
    if (!Number.isInteger(k) || !Number.isInteger(n)) {
      throw new FormatError(`${name}: shape [${shape}] does not fit ${bits}-bit codes`, origin);
    }
    for (const part of ["qzeros", "scales"]) {
      if (!reader.has(`${layer}.${part}`)) throw new FormatError(`${layer}.${part} is missing`, origin);
    }
    packed.set(`${layer}.weight`, { bits, groupSize, zeroPlusOne, n, k });
  }
  /** compressed-tensors' weight_shape (I64 or I32 [2]) must agree with the shape derived above. */
  const checkShape = async (layer: string, p: PackedLayer) => {
    const b = await reader.readBytes(`${layer}.weight_shape`);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const wide = reader.info(`${layer}.weight_shape`).dtype === "I64";
    const [n, k] = wide
      ? [Number(v.getBigInt64(0, true)), Number(v.getBigInt64(8, true))]
      : [v.getInt32(0, true), v.getInt32(4, true)];
    if (n !== p.n || k !== p.k) {
      throw new FormatError(
        `${layer}.weight_shape [${n}, ${k}] does not match the packed tensors [${p.n}, ${p.k}]`,
        origin,
      );
    }
  };
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
      if (layout === "pack-quantized") {
        if (reader.has(`${layer}.weight_shape`)) await checkShape(layer, p);
        return dequantizePackQuantized(
          p,
          p.sym ?? true,
          await reader.readInt32(`${layer}.weight_packed`),
          reader.has(`${layer}.weight_zero_point`)
            ? await reader.readInt32(`${layer}.weight_zero_point`)
            : undefined,
          await reader.readF32(`${layer}.weight_scale`),
          origin,
        );
      }
      if (layout === "awq") {
        return dequantizeAwq(
          p,
          await reader.readInt32(`${layer}.qweight`),
          await reader.readInt32(`${layer}.qzeros`),
          await reader.readF32(`${layer}.scales`),
          reader.info(`${layer}.scales`).shape,
          origin,
        );
      }
      const gIdx = reader.has(`${layer}.g_idx`) ? await reader.readInt32(`${layer}.g_idx`) : undefined;
      return dequantizeLayer(
        p,
        await reader.readInt32(`${layer}.qweight`),
        await reader.readInt32(`${layer}.qzeros`),
        await reader.readF32(`${layer}.scales`),
        reader.info(`${layer}.scales`).shape,
        origin,
        gIdx,
      );
    },
  };
}

function groupsOf(p: PackedLayer): { g: number; G: number } {
  const g = p.groupSize <= 0 || p.groupSize > p.k ? p.k : p.groupSize;
  return { g, G: Math.ceil(p.k / g) };
}

/**
 * W[n, k] = scale[g, n] · (code[n, k] − zero[g, n]) with g = g_idx[k] (⌊k / groupSize⌋ without one).
 * GPTQ v1 zero points (`zeroPlusOne`) are restored by adding the ones pattern to each packed word.
 */
export function dequantizeLayer(
  p: PackedLayer,
  qweight: Int32Array,
  qzeros: Int32Array,
  scales: Float32Array,
  scalesShape: number[],
  origin = "",
  gIdx?: Int32Array,
): Float32Array {
  const { g, G } = groupsOf(p);
  checkScalesShape(scalesShape, G, p.n, origin);
  const codes = unpackQweightAlongK(qweight, p.n, p.k, p.bits);
  const zeros = p.zeroPlusOne
    ? unpackZerosGptqV1(qzeros, G, p.n, p.bits)
    : unpackRowsAlongN(qzeros, G, p.n, p.bits);
  const w = new Float32Array(p.n * p.k);
  for (let r = 0; r < p.n; r++) {
    for (let c = 0; c < p.k; c++) {
      const gi = gIdx ? gIdx[c] : Math.floor(c / g);
      w[r * p.k + c] = scales[gi * p.n + r] * (codes[r * p.k + c] - zeros[gi * p.n + r]);
    }
  }
  return w;
}

/** GPTQ and AWQ store scales as [groups, outputs]. */
function checkScalesShape(shape: number[], G: number, n: number, origin: string): void {
  if (shape[0] !== G || shape[1] !== n) {
    throw new FormatError(`scales shape [${shape}] does not match ${G} groups × ${n} outputs`, origin);
  }
}

/** AWQ GEMM: W[n, k] = (iw[k, n] − iz[k/g, n]) · scales[k/g, n] (export_to_awq/utils.py dequantize_gemm). */
export function dequantizeAwq(
  p: PackedLayer,
  qweight: Int32Array,
  qzeros: Int32Array,
  scales: Float32Array,
  scalesShape: number[],
  origin = "",
): Float32Array {
  const { g, G } = groupsOf(p);
  checkScalesShape(scalesShape, G, p.n, origin);
  const iw = unpackAwqAlongN(qweight, p.k, p.n, p.bits);
  const iz = unpackAwqAlongN(qzeros, G, p.n, p.bits);
  const w = new Float32Array(p.n * p.k);
  for (let c = 0; c < p.k; c++) {
    const gi = Math.floor(c / g);
    for (let r = 0; r < p.n; r++) {
      w[r * p.k + c] = (iw[c * p.n + r] - iz[gi * p.n + r]) * scales[gi * p.n + r];
    }
  }
  return w;
}

/** compressed-tensors pack-quantized: W[n, k] = (u[n, k] − zp[n, g]) · scale[n, g] (u, zp unsigned). */
export function dequantizePackQuantized(
  p: PackedLayer,
  sym: boolean,
  packed: Int32Array,
  zeroPoint: Int32Array | undefined,
  scale: Float32Array,
  origin = "",
): Float32Array {
  const { g, G } = groupsOf(p);
  if (scale.length !== p.n * G) {
    throw new FormatError(`weight_scale holds ${scale.length} values, not ${p.n}×${G}`, origin);
  }
  const words = Math.ceil((p.k * p.bits) / 32);
  const offset = 1 << (p.bits - 1);
  let zp: Int32Array | undefined;
  if (!sym) {
    if (!zeroPoint) throw new FormatError(`asymmetric layer without weight_zero_point`, origin);
    // Packed along N (dim 0): [⌈N·b/32⌉, G] → per group a dense run of N values.
    const rowsPacked = Math.ceil((p.n * p.bits) / 32);
    zp = new Int32Array(p.n * G);
    for (let gi = 0; gi < G; gi++) {
      const run = new Int32Array(rowsPacked);
      for (let r = 0; r < rowsPacked; r++) run[r] = zeroPoint[r * G + gi];
      const z = unpackDenseInt32(run, p.n, p.bits);
      for (let r = 0; r < p.n; r++) zp[r * G + gi] = z[r];
    }
  }
  const w = new Float32Array(p.n * p.k);
  for (let r = 0; r < p.n; r++) {
    const u = unpackDenseInt32(packed.subarray(r * words, (r + 1) * words), p.k, p.bits);
    for (let c = 0; c < p.k; c++) {
      const gi = Math.floor(c / g);
      const z = zp ? zp[r * G + gi] : offset;
      w[r * p.k + c] = (u[c] - z) * scale[r * G + gi];
    }
  }
  return w;
}
