/**
 * The AWQ format (AutoAWQ GEMM kernels, transformers' AWQ integration, vLLM; auto_round's
 * "auto_round:auto_awq" packing): per quantized Linear `qweight` int32 `[K, N/8]` packed along N in
 * AWQ's interleaved order [0, 4, 1, 5, 2, 6, 3, 7], `qzeros` int32 `[G, N/8]` (same order, zero points
 * as they are), `scales` fp16 `[G, N]`, bias fp16; `quantization_config` `quant_method: "awq"`,
 * `version: "gemm"`, `zero_point` (= not sym). 4 bits only. Both directions: the exporter packs with
 * {@link awqTensors}, the loader unpacks with {@link dequantizeAwq}. Spec: FORMATS.md § auto_awq;
 * source: auto_round/export/export_to_awq/{export.py, utils.py} (`WQLinear_GEMM.from_linear`,
 * `dequantize_gemm`).
 */
import { FormatError, quote, UnsupportedError, UsageError } from "../errors.ts";
import { resolveGroupSize } from "../qmath/int_quant.ts";
import type { QuantizedLinear, QuantScheme } from "../qmath/quantized.ts";
import { PRODUCER } from "../version.ts";
import {
  checkQweightTrio,
  checkScalesShape,
  groupsOf,
  layerSettings,
  type PackedLayer,
  type PackedReader,
  transpose,
} from "./layout.ts";
import { type PlannedLayers, type RunInfo, tuningConfig } from "./run.ts";

// ---------------------------------------------------------------------------------------------------
// Packing
// ---------------------------------------------------------------------------------------------------

/** AutoAWQ's order of 4-bit values inside a word (export_to_awq/utils.py `new_order_map`). */
export const AWQ_PACK_ORDER = [0, 4, 1, 5, 2, 6, 3, 7] as const;

/**
 * AWQ GEMM packing of `values` `[rows, N]` (row-major, unsigned b-bit) along N: word w of a row
 * holds columns 8w..8w+7, column 8w + j at nibble AWQ_PACK_ORDER[j]. → int32 `[rows, N·b/32]`.
 */
export function packAwqAlongN(
  values: Int32Array | Uint8Array,
  rows: number,
  n: number,
  bits: number,
): Int32Array {
  if (bits !== 4) throw new FormatError(`AWQ packing supports 4 bits, got ${bits}`);
  if (n % 8 !== 0) throw new FormatError(`AWQ packing needs a multiple of 8 columns, got ${n}`);
  const cols = n / 8;
  const out = new Int32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let w = 0; w < cols; w++) {
      let word = 0;
      for (let j = 0; j < 8; j++) word |= (values[r * n + w * 8 + j] & 0xf) << (AWQ_PACK_ORDER[j] * 4);
      out[r * cols + w] = word;
    }
  }
  return out;
}

/** Inverse of {@link packAwqAlongN} → `[rows, N]` (AWQ_REVERSE_ORDER applied). */
export function unpackAwqAlongN(q: Int32Array, rows: number, n: number, bits: number): Int32Array {
  if (bits !== 4) throw new FormatError(`AWQ unpacking supports 4 bits, got ${bits}`);
  const cols = n / 8;
  const out = new Int32Array(rows * n);
  for (let r = 0; r < rows; r++) {
    for (let w = 0; w < cols; w++) {
      const word = q[r * cols + w] >>> 0;
      for (let j = 0; j < 8; j++) out[r * n + w * 8 + j] = (word >>> (AWQ_PACK_ORDER[j] * 4)) & 0xf;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// One Linear, both directions
// ---------------------------------------------------------------------------------------------------

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

/** The loader's reader of AWQ GEMM Linears; per-layer bits and group size from {@link layerSettings}. */
export function awqReader(qc: Record<string, unknown>): PackedReader {
  return {
    marker: ".qweight",
    layer: (t, layer, origin) => {
      const { bits, groupSize } = layerSettings(qc, layer);
      const shape = t.info(`${layer}.qweight`).shape;
      const p = { bits, groupSize, zeroPlusOne: false, n: (shape[1] * 32) / bits, k: shape[0] };
      // The GEMM layout packs eight 4-bit values a word (AWQ_PACK_ORDER): 4 bits only.
      checkQweightTrio(t, layer, p, origin, (G) => [G, shape[1]], [4]);
      return p;
    },
    dequantize: async (t, layer, p, origin) =>
      dequantizeAwq(
        p,
        await t.readInt32(`${layer}.qweight`),
        await t.readInt32(`${layer}.qzeros`),
        await t.readF32(`${layer}.scales`),
        t.info(`${layer}.scales`).shape,
        origin,
      ),
  };
}

// ---------------------------------------------------------------------------------------------------
// quantization_config and checks
// ---------------------------------------------------------------------------------------------------

/** `quantization_config` as save_quantized_as_autoawq writes it. */
export function awqQuantizationConfig(run: RunInfo): Record<string, unknown> {
  const notConverted = ["lm_head"];
  for (const [name, p] of run.layers.layers) if (!p.quantize) notConverted.push(name);
  return {
    ...tuningConfig(run),
    provider: "auto-round",
    quant_method: "awq",
    zero_point: !run.scheme.sym,
    version: "gemm",
    modules_to_not_convert: notConverted,
    producer: PRODUCER,
  };
}

/** The loader reads the GEMM layout only; throws UnsupportedError for another `version`. */
export function checkAwqConfig(qc: Record<string, unknown>): void {
  const version = typeof qc.version === "string" ? qc.version.toLowerCase() : qc.version ?? "gemm";
  if (version !== "gemm") {
    throw new UnsupportedError(`AWQ version ${quote(version)} is not readable (gemm is)`);
  }
}

/**
 * Whether a run can be written as auto_awq: 4-bit layers only (UsageError otherwise); returns the
 * warnings to log (a symmetric scheme writes zero_point: false).
 */
export function checkAwqScheme(layers: PlannedLayers, scheme: QuantScheme): string[] {
  const bad = [...layers.layers].filter(([, p]) => p.quantize && p.scheme.bits !== 4).map(([n]) => n);
  if (scheme.bits !== 4 || bad.length) {
    throw new UsageError(
      `--format auto_awq stores 4-bit weights only (AWQ GEMM kernels), but ${
        bad.length
          ? `${bad.length} layers use other bits (${bad[0]} …)`
          : `the scheme has ${scheme.bits} bits`
      }; use auto_round or auto_gptq`,
    );
  }
  return scheme.sym
    ? [`auto_awq with a symmetric scheme writes zero_point: false; the classic AWQ kernels need --asym`]
    : [];
}
