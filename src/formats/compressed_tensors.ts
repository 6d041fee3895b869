/**
 * The compressed-tensors `pack-quantized` format (our llm_compressor; loaded by vLLM and transformers):
 * per quantized Linear `weight_packed` int32 `[N, ⌈K·b/32⌉]` (values densely packed along K, value i
 * at bit i·b), `weight_scale` `[N, G]` in the checkpoint dtype, `weight_zero_point` int32
 * `[⌈N·b/32⌉, G]` packed along N when asymmetric, `weight_shape` int64 `[2]`; `quantization_config`
 * with `quant_method: "compressed-tensors"`, `format: "pack-quantized"`, `config_groups` and
 * `ignore`. Both directions: the exporter packs with {@link packQuantizedTensors}, the loader reads
 * with {@link compressedTensorsReader} (`PackedQuantizationCompressor.decompress`). Spec: FORMATS.md § llm_compressor; sources: auto_round/export/export_to_llmcompressor/
 * export.py (`construct_ct_scheme`, `pack_layer`), compressed-tensors
 * `compressors/pack_quantized/{base,helpers}.py` (`pack_to_int32`: signed value + 2^(b−1), dense)
 * and `quantization/quant_{args,scheme,config}.py` (the serialized fields).
 */
import { FormatError, quote, UnsupportedError } from "../errors.ts";
import { resolveGroupSize } from "../qmath/int_quant.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import {
  checkPackedLayer,
  checkTensorShape,
  configRegex,
  groupsOf,
  numberOf,
  type PackedLayer,
  type PackedReader,
  type PackedTensors,
  transpose,
} from "./layout.ts";
import type { RunInfo } from "./run.ts";

// ---------------------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------------------

/**
 * compressed-tensors `pack_to_int32` on one run of unsigned b-bit values (1 ≤ b ≤ 8): value i at
 * global bit i·b, little-endian across word boundaries, the last word zero-padded; returns
 * ⌈count·b/32⌉ words.
 */
export function packDenseInt32(values: ArrayLike<number>, bits: number): Int32Array {
  const words = Math.ceil((values.length * bits) / 32);
  const out = new Uint32Array(words);
  for (let i = 0; i < values.length; i++) {
    const bit = i * bits, w = bit >>> 5, off = bit & 31;
    const v = values[i] & ((1 << bits) - 1);
    out[w] = (out[w] | (v << off)) >>> 0;
    if (off + bits > 32) out[w + 1] = (out[w + 1] | (v >>> (32 - off))) >>> 0;
  }
  return new Int32Array(out.buffer);
}

/** Inverse of {@link packDenseInt32}: `count` unsigned values. */
export function unpackDenseInt32(words: Int32Array, count: number, bits: number): Uint8Array {
  const out = new Uint8Array(count);
  const mask = (1 << bits) - 1;
  for (let i = 0; i < count; i++) {
    const bit = i * bits, w = bit >>> 5, off = bit & 31;
    let v = (words[w] >>> off) & mask;
    if (off + bits > 32) v |= (words[w + 1] << (32 - off)) & mask;
    out[i] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// One Linear, both directions
// ---------------------------------------------------------------------------------------------------

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

/** compressed-tensors' weight_shape (I64 or I32 [2]) must agree with the shape derived from the other tensors. */
async function checkWeightShape(
  t: PackedTensors,
  layer: string,
  p: PackedLayer,
  origin: string,
): Promise<void> {
  const { dtype } = t.info(`${layer}.weight_shape`);
  if (dtype !== "I64" && dtype !== "I32") {
    throw new FormatError(`${layer}.weight_shape is ${dtype}, not I64 or I32`, origin);
  }
  checkTensorShape(t, `${layer}.weight_shape`, [2], origin);
  const b = await t.readBytes(`${layer}.weight_shape`);
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const wide = dtype === "I64";
  const [n, k] = wide
    ? [Number(v.getBigInt64(0, true)), Number(v.getBigInt64(8, true))]
    : [v.getInt32(0, true), v.getInt32(4, true)];
  if (n !== p.n || k !== p.k) {
    throw new FormatError(
      `${layer}.weight_shape [${n}, ${k}] does not match the packed tensors [${p.n}, ${p.k}]`,
      origin,
    );
  }
}

/**
 * The loader's reader of `pack-quantized` Linears (per-layer arguments from `config_groups`);
 * UnsupportedError for another compressed-tensors `format`.
 */
export function compressedTensorsReader(
  qc: Record<string, unknown>,
): PackedReader<PackedLayer & { sym: boolean }> {
  const fmt = typeof qc.format === "string" ? qc.format : "";
  if (fmt !== "pack-quantized") {
    throw new UnsupportedError(
      `compressed-tensors format ${quote(qc.format ?? "")} is not readable yet (pack-quantized is)`,
    );
  }
  return {
    marker: ".weight_packed",
    layer: (t, layer, origin) => {
      const a = ctArgs(qc, layer);
      if (!t.has(`${layer}.weight_scale`)) {
        throw new FormatError(`${layer}.weight_scale is missing`, origin);
      }
      const scaleShape = t.info(`${layer}.weight_scale`).shape;
      const packedShape = t.info(`${layer}.weight_packed`).shape;
      if (scaleShape.length !== 2 || packedShape.length !== 2) {
        throw new FormatError(
          `${layer}: weight_scale [${scaleShape}] and weight_packed [${packedShape}] are not 2-D`,
          origin,
        );
      }
      const [n, G] = scaleShape;
      // K from the groups (strategy group) or the packed width (channel); weight_shape is checked on read.
      const k = a.groupSize > 0 ? G * a.groupSize : Math.floor((packedShape[1] * 32) / a.bits);
      const p = { bits: a.bits, groupSize: a.groupSize, zeroPlusOne: false, n, k, sym: a.sym };
      checkPackedLayer(p, layer, origin);
      if (groupsOf(p).G !== G) {
        throw new FormatError(
          `${layer}.weight_scale: ${G} groups, but group_size ${a.groupSize} gives ${groupsOf(p).G}`,
          origin,
        );
      }
      checkTensorShape(t, `${layer}.weight_packed`, [n, Math.ceil((k * a.bits) / 32)], origin);
      if (t.has(`${layer}.weight_zero_point`)) {
        checkTensorShape(t, `${layer}.weight_zero_point`, [Math.ceil((n * a.bits) / 32), G], origin);
      }
      return p;
    },
    dequantize: async (t, layer, p, origin) => {
      if (t.has(`${layer}.weight_shape`)) await checkWeightShape(t, layer, p, origin);
      return dequantizePackQuantized(
        p,
        p.sym,
        await t.readInt32(`${layer}.weight_packed`),
        t.has(`${layer}.weight_zero_point`) ? await t.readInt32(`${layer}.weight_zero_point`) : undefined,
        await t.readF32(`${layer}.weight_scale`),
        origin,
      );
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// quantization_config
// ---------------------------------------------------------------------------------------------------

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

/** QuantizationConfig.to_dict() of compressed-tensors for this run. */
export function compressedTensorsConfig(run: RunInfo): Record<string, unknown> {
  const groups = new Map<string, { args: Record<string, unknown>; names: string[] }>();
  const ignore = ["lm_head"];
  for (const [name, p] of run.layers.layers) {
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

/** compressed-tensors: the weight arguments of the config group that targets `layer`. */
export function ctArgs(
  qc: Record<string, unknown>,
  layer: string,
): { bits: number; groupSize: number; sym: boolean } {
  const cg = qc.config_groups ?? {};
  if (typeof cg !== "object" || cg === null || Array.isArray(cg)) {
    throw new FormatError(`quantization_config.config_groups is not an object`);
  }
  const groups = Object.values(cg).map((g) =>
    (typeof g === "object" && g !== null ? g : {}) as Record<string, unknown>
  );
  const targetsOf = (g: Record<string, unknown>) =>
    Array.isArray(g.targets) ? g.targets.filter((t): t is string => typeof t === "string") : [];
  const matches = (t: string) => {
    if (t === "Linear") return true;
    if (t.startsWith("re:")) return configRegex(t.slice(3), "config_groups targets")?.test(layer) ?? false;
    return t === layer;
  };
  // Explicit names win over the class target "Linear".
  const byName = groups.find((g) => targetsOf(g).some((t) => t !== "Linear" && matches(t)));
  const g = byName ?? groups.find((x) => targetsOf(x).includes("Linear"));
  const w = (g?.weights ?? {}) as Record<string, unknown>;
  if (w.type !== undefined && w.type !== "int") {
    throw new UnsupportedError(`compressed-tensors weights of type ${quote(w.type)} are not readable yet`);
  }
  const strategy = typeof w.strategy === "string" ? w.strategy : "group";
  return {
    bits: numberOf(w.num_bits ?? 8),
    groupSize: strategy === "channel" ? -1 : numberOf(w.group_size ?? -1),
    sym: w.symmetric !== false,
  };
}
