/**
 * One Linear in the GPTQ tensor layout of auto_round and auto_gptq, both directions: per quantized
 * Linear `qweight` int32 `[K·b/32, N]` packed along K, `qzeros` int32 `[G, N·b/32]` packed along N,
 * `scales` `[G, N]`, and for auto_gptq `g_idx` int32 `[K]`. auto_round stores zero points as they are
 * or minus one ("auto_round:auto_gptq" packing), auto_gptq minus one as an arithmetic over each packed
 * run (legacy GPTQ "v1"). Sources: auto_round/export/export_to_autoround/export.py,
 * export_to_autogptq/export.py and auto_round_extension/torch/qlinear_torch*.py (pack and forward).
 */
import { resolveGroupSize } from "../../qmath/int_quant.ts";
import type { QuantizedLinear } from "../../qmath/quantized.ts";
import { FormatError } from "../../errors.ts";
import {
  checkQweightTrio,
  checkScalesShape,
  checkTensorShape,
  groupsOf,
  layerSettings,
  type PackedLayer,
  type PackedReader,
  transpose,
} from "../layout.ts";
import {
  packQweightAlongK,
  packRowsAlongN,
  packZerosGptqV1,
  unpackQweightAlongK,
  unpackRowsAlongN,
  unpackZerosGptqV1,
} from "./pack.ts";

/** The bytes of one quantized Linear in the GPTQ tensor layout shared by auto_round and auto_gptq. */
export function gptqTensors(
  l: QuantizedLinear,
  zeroMinusOne: boolean,
): { qweight: Int32Array; qzeros: Int32Array; scales: Float32Array; groups: number } {
  const g = resolveGroupSize(l.groupSize, l.k);
  const G = Math.ceil(l.k / g);
  const qweight = packQweightAlongK(l.q.codes, l.n, l.k, l.bits);
  const zerosStored = Int32Array.from(l.q.zeros, (z) => (zeroMinusOne ? z - 1 : z));
  const qzeros = packRowsAlongN(transpose(zerosStored, l.n, G), G, l.n, l.bits);
  const scales = transpose(l.q.scales, l.n, G);
  return { qweight, qzeros, scales, groups: G };
}

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

/**
 * W[n, k] = scale[g, n] · (code[n, k] − zero[g, n]) with g = g_idx[k] (⌊k / groupSize⌋ without one).
 * GPTQ v1 zero points (`zeroPlusOne`) are restored by adding the ones pattern to each packed word.
 */
export function dequantizeGptq(
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

/**
 * The loader's reader of GPTQ-layout Linears; `zeroPlusOne` when zero points are stored minus one.
 * Per-layer bits and group size from {@link layerSettings}; `g_idx` is used when present.
 */
export function gptqReader(qc: Record<string, unknown>, zeroPlusOne: boolean): PackedReader {
  return {
    marker: ".qweight",
    layer: (t, layer, origin) => {
      const { bits, groupSize } = layerSettings(qc, layer);
      const shape = t.info(`${layer}.qweight`).shape;
      const p = { bits, groupSize, zeroPlusOne, n: shape[1], k: (shape[0] * 32) / bits };
      checkQweightTrio(t, layer, p, origin, (G) => [G, (p.n * bits) / 32]);
      if (t.has(`${layer}.g_idx`)) checkTensorShape(t, `${layer}.g_idx`, [p.k], origin);
      return p;
    },
    dequantize: async (t, layer, p, origin) => {
      const gIdx = t.has(`${layer}.g_idx`) ? await t.readInt32(`${layer}.g_idx`) : undefined;
      const { G } = groupsOf(p);
      const bad = gIdx?.findIndex((g) => g < 0 || g >= G) ?? -1;
      if (bad >= 0) {
        throw new FormatError(`${layer}.g_idx[${bad}] = ${gIdx![bad]} is not a group in [0, ${G})`, origin);
      }
      return dequantizeGptq(
        p,
        await t.readInt32(`${layer}.qweight`),
        await t.readInt32(`${layer}.qzeros`),
        await t.readF32(`${layer}.scales`),
        t.info(`${layer}.scales`).shape,
        origin,
        gIdx,
      );
    },
  };
}
