/**
 * compressed-tensors (our llm_compressor) for auto-round's float and activation-quantized schemes,
 * both directions: the `quantization_config` auto-round writes (spec/SCHEMES.md § 10.2 NVFP4
 * `nvfp4-pack-quantized`, § 10.3 MXFP4/MXFP8 `mxfp4-pack-quantized`/`mxfp8-quantized`, § 10.4
 * FP8_STATIC `float-quantized`, § 10.5 FPW8A16 and INT8_W8A8 through the generic path) and, for the
 * loader, the layout and activation quantizer a config names. The tensors are formats/float_tensors.ts.
 *
 * The `weights`/`input_activations` objects follow the key set and values of § 10.2 (current
 * compressed-tensors `QuantizationArgs.model_dump()`; § 13: version-dependent): `observer`
 * "memoryless_minmax" for static arguments, none for `dynamic: true` (quant_args.py
 * `validate_model_after`), `scale_dtype` of the preset (E4M3 for NV, uint8 for MX) else null.
 */
import { FormatError, quote } from "../errors.ts";
import type { ActQuant, FloatScheme } from "../qmath/quantized.ts";
import { type FloatLayout, floatLayout } from "./float_tensors.ts";
import { numberOf } from "./layout.ts";
import type { RunInfo } from "./run.ts";

/** The top-level `format` of each layout (§ 10.2–10.5). */
const CT_FORMAT: Readonly<Record<FloatLayout, string | undefined>> = {
  nvfp4: "nvfp4-pack-quantized",
  mxfp4: "mxfp4-pack-quantized",
  mxfp8: "mxfp8-quantized",
  fp8: "float-quantized",
  int8: "int-quantized",
  mxint4: undefined, // § 10.1: MXINT4 fails in auto-round's llm_compressor check (llm_compressor.py:155-167)
};

/** One compressed-tensors QuantizationArgs as § 10.2 serializes it. */
function args(
  bits: number,
  type: "int" | "float",
  strategy: string,
  groupSize: number | null,
  dynamic: boolean | "local",
  scaleDType: string | null,
  observer: string | null,
): Record<string, unknown> {
  return {
    num_bits: bits,
    type,
    symmetric: true,
    group_size: groupSize,
    strategy,
    block_structure: null,
    dynamic,
    actorder: null,
    scale_dtype: scaleDType,
    zp_dtype: null,
    observer,
    observer_kwargs: {},
  };
}

/** Generic-path strategy of a group size (construct_ct_scheme, export.py:66-95; § 10.5). */
function strategyOf(g: number, token: boolean): { strategy: string; groupSize: number | null } {
  if (g === 0) return { strategy: "tensor", groupSize: null };
  if (g === -1) return { strategy: token ? "token" : "channel", groupSize: null };
  return { strategy: "group", groupSize: g };
}

/** `weights` and `input_activations` of a scheme's config group. */
function schemeArgs(s: FloatScheme, layout: FloatLayout) {
  const a = s.act;
  if (layout === "nvfp4") {
    // § 10.2, exactly (preset NVFP4 of compressed-tensors).
    const e4m3 = "torch.float8_e4m3fn";
    return {
      weights: args(4, "float", "tensor_group", 16, false, e4m3, "memoryless_minmax"),
      input: args(4, "float", "tensor_group", 16, "local", e4m3, "static_minmax"),
    };
  }
  if (layout === "mxfp4" || layout === "mxfp8") {
    // § 10.3: presets MXFP4/MXFP8, group 32, uint8 (E8M0) scales, dynamic activations.
    return {
      weights: args(s.bits, "float", "group", 32, false, "torch.uint8", "memoryless_minmax"),
      input: args(s.bits, "float", "group", 32, true, "torch.uint8", null),
    };
  }
  const type = layout === "int8" ? "int" : "float";
  const w = strategyOf(s.groupSize, false);
  const weights = args(s.bits, type, w.strategy, w.groupSize, false, null, "memoryless_minmax");
  if (!a || a.bits >= 16) return { weights, input: null };
  const x = strategyOf(a.groupSize, true);
  const input = args(
    a.bits,
    type,
    x.strategy,
    x.groupSize,
    a.dynamic,
    null,
    a.dynamic ? null : "memoryless_minmax",
  );
  return { weights, input };
}

/** The compressed-tensors format a float scheme is written as, or undefined when it cannot be (§ 10.1). */
export function compressedTensorsFloatFormat(s: FloatScheme): string | undefined {
  const layout = floatLayout(s);
  return layout ? CT_FORMAT[layout] : undefined;
}

/**
 * quantization_config of an llm_compressor folder quantized with `s` (§ 10.2–10.5): one config group
 * targeting "Linear", `ignore` = lm_head and the Linears kept in float, `provider` auto-round.
 */
export function compressedTensorsFloatConfig(run: RunInfo, s: FloatScheme): Record<string, unknown> {
  const layout = floatLayout(s);
  const format = layout && CT_FORMAT[layout];
  if (!layout || !format) throw new RangeError(`llm_compressor cannot store this float scheme`);
  const ignore = ["lm_head"];
  for (const [name, p] of run.layers.layers) if (!p.quantize) ignore.push(name);
  const { weights, input } = schemeArgs(s, layout);
  return {
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights,
        input_activations: input,
        output_activations: null,
        format: null,
      },
    },
    quant_method: "compressed-tensors",
    kv_cache_scheme: null,
    format,
    quantization_status: "compressed",
    global_compression_ratio: null,
    ignore,
    provider: "auto-round",
  };
}

const BY_FORMAT: Readonly<Record<string, FloatLayout>> = {
  "nvfp4-pack-quantized": "nvfp4",
  "mxfp4-pack-quantized": "mxfp4",
  "mxfp8-quantized": "mxfp8",
  "float-quantized": "fp8",
  "int-quantized": "int8",
};

/** The config group that targets "Linear" (or the only one). */
function linearGroup(qc: Record<string, unknown>): Record<string, unknown> {
  const cg = qc.config_groups;
  if (typeof cg !== "object" || cg === null || Array.isArray(cg)) {
    throw new FormatError(`quantization_config.config_groups is not an object`);
  }
  const groups = Object.values(cg).filter((g): g is Record<string, unknown> =>
    typeof g === "object" && g !== null
  );
  return groups.find((g) => Array.isArray(g.targets) && g.targets.includes("Linear")) ?? groups[0] ?? {};
}

/**
 * The float layout a compressed-tensors config names, or undefined for the integer
 * `pack-quantized` format (read by compressed_tensors.ts). `naive-quantized` (the generic path's
 * inferred format, § 10.5) is read by the weights' type.
 */
export function compressedTensorsFloatLayout(qc: Record<string, unknown>): FloatLayout | undefined {
  const fmt = typeof qc.format === "string" ? qc.format : "";
  if (Object.hasOwn(BY_FORMAT, fmt)) return BY_FORMAT[fmt];
  if (fmt !== "naive-quantized") return undefined;
  const w = (linearGroup(qc).weights ?? {}) as Record<string, unknown>;
  if (numberOf(w.num_bits) !== 8) {
    throw new FormatError(`naive-quantized weights of ${quote(w.num_bits)} bits`);
  }
  return w.type === "float" ? "fp8" : "int8";
}

/**
 * The activation quantizer of a compressed-tensors float config (`input_activations` of the Linear
 * group), or undefined for weight-only configs. MX activations read as `mx_fp` (RCEIL is not
 * representable, § 10.1); NV as `nv_fp` (dynamic per-16 scales, static global scale).
 */
export function compressedTensorsActQuant(
  qc: Record<string, unknown>,
  layout: FloatLayout,
): ActQuant | undefined {
  const a = linearGroup(qc).input_activations;
  if (typeof a !== "object" || a === null) return undefined;
  const x = a as Record<string, unknown>;
  const bits = numberOf(x.num_bits);
  const strategy = typeof x.strategy === "string" ? x.strategy : "tensor";
  const groupSize = strategy === "tensor"
    ? 0
    : strategy === "token" || strategy === "channel"
    ? -1
    : numberOf(x.group_size);
  if (!Number.isInteger(bits) || !Number.isInteger(groupSize)) {
    throw new FormatError(`input_activations ${quote(x, 120)} has no integer num_bits/group_size`);
  }
  const dataType: ActQuant["dataType"] = layout === "nvfp4"
    ? "nv_fp"
    : layout === "mxfp4" || layout === "mxfp8"
    ? "mx_fp"
    : x.type === "int"
    ? "int"
    : "fp";
  return { bits, groupSize, sym: x.symmetric !== false, dataType, dynamic: x.dynamic !== false };
}
