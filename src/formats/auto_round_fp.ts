/**
 * The auto_round format for auto-round's float and activation-quantized schemes, both directions
 * (spec/SCHEMES.md § 10.7): the tensors are those of the llm_compressor packers
 * (formats/float_tensors.ts; FP8 `weight_scale` `[out]` without unsqueeze), the config the serialized
 * compressor settings with `packing_format` "auto_round:llm_compressor" (MX / NV), "auto_round"
 * (MXINT4), "auto_round:fp8_static" (FP8_STATIC, plus `fmt`/`activation_scheme`) and none for
 * FPW8A16 (autoround.py:205-209). INT8_W8A8 has no auto_round form (auto-round resets it to fake,
 * formats/base.py:205-214).
 */
import type { ActQuant, FloatScheme } from "../qmath/quantized.ts";
import { type FloatLayout, floatLayout } from "./float_tensors.ts";
import { autoRoundQuantizationConfig } from "./gptq/config.ts";
import { numberOf } from "./layout.ts";
import type { RunInfo } from "./run.ts";

/** auto-round's act_data_type names (NV: `nv_fp4_with_static_gs`, required by its loader, § 10.7). */
function actDataTypeName(a: ActQuant): string {
  return a.dataType === "nv_fp" ? "nv_fp4_with_static_gs" : a.dataType;
}

/**
 * The `packing_format` of a float scheme in the auto_round format: a string, null for FPW8A16 (no
 * key), or undefined when auto_round cannot store the scheme (§ 10.1).
 */
export function autoRoundFloatPacking(s: FloatScheme): string | null | undefined {
  const layout = floatLayout(s);
  if (layout === "nvfp4" || layout === "mxfp4" || layout === "mxfp8") return "auto_round:llm_compressor";
  if (layout === "mxint4") return "auto_round";
  if (layout === "fp8") return s.act && s.act.bits <= 8 ? "auto_round:fp8_static" : null;
  return undefined;
}

/**
 * quantization_config of an auto_round folder quantized with `s`: the integer config's tuning keys,
 * `extra_config` and version, with the scheme's `bits`/`group_size`/`sym`/`data_type`, the `act_*`
 * keys when activations are quantized (filter_quantization_config drops them at act_bits ≥ 16,
 * export/utils.py:334-382), and the packing of {@link autoRoundFloatPacking}.
 */
export function autoRoundFloatConfig(run: RunInfo, s: FloatScheme): Record<string, unknown> {
  const packing = autoRoundFloatPacking(s);
  if (packing === undefined) throw new RangeError(`auto_round cannot store this float scheme`);
  const cfg = autoRoundQuantizationConfig(run, packing ?? "");
  cfg.bits = s.bits;
  cfg.group_size = s.groupSize;
  cfg.sym = s.sym;
  cfg.data_type = s.dataType;
  delete cfg.scale_dtype; // the integer scale dtype; float scales are fixed by the data type
  if (packing === null) delete cfg.packing_format;
  if (s.act && s.act.bits < 16) {
    cfg.act_bits = s.act.bits;
    cfg.act_group_size = s.act.groupSize;
    cfg.act_sym = s.act.sym;
    cfg.act_data_type = actDataTypeName(s.act);
    cfg.act_dynamic = s.act.dynamic;
  }
  if (floatLayout(s) === "fp8") {
    // export_to_fp8.py:106-304: fmt and the activation scheme of FP8QLinear.
    cfg.fmt = "e4m3";
    cfg.activation_scheme = s.act && s.act.bits <= 8 && !s.act.dynamic ? "static" : "dynamic";
  }
  return cfg;
}

/**
 * The float layout of an auto-round config, or undefined for the integer packings (GPTQ/AWQ
 * layouts). Data types may carry bits after unwrapping (`mx_fp4`, `nv_fp4`, `fp8`; § 12.12).
 */
export function autoRoundFloatLayout(qc: Record<string, unknown>): FloatLayout | undefined {
  const dt = typeof qc.data_type === "string" ? qc.data_type : "int";
  const packing = typeof qc.packing_format === "string" ? qc.packing_format : undefined;
  const bits = numberOf(qc.bits);
  if (dt.startsWith("nv_fp") && packing === "auto_round:llm_compressor") return "nvfp4";
  if (dt.startsWith("mx_fp") && packing === "auto_round:llm_compressor") {
    return bits === 8 ? "mxfp8" : "mxfp4";
  }
  if (dt.startsWith("mx_int")) return "mxint4";
  if (packing === "auto_round:fp8_static") return "fp8";
  if ((dt === "fp" || dt === "fp8") && bits === 8 && packing === undefined) return "fp8";
  return undefined;
}

const ACT_TYPES: Readonly<Record<string, ActQuant["dataType"]>> = {
  mx_fp: "mx_fp",
  mx_fp_rceil: "mx_fp_rceil",
  mx_int: "mx_int",
  nv_fp: "nv_fp",
  nv_fp4: "nv_fp",
  nv_fp4_with_static_gs: "nv_fp",
  fp: "fp",
  fp8: "fp",
  int: "int",
  int_sym: "int",
};

/**
 * The activation quantizer an auto-round config records (`act_*` keys, defaults as § 1.3 resolves
 * them: group size and data type of the weights, symmetric, dynamic), or undefined when act_bits is
 * absent or ≥ 16.
 */
export function autoRoundActQuant(qc: Record<string, unknown>): ActQuant | undefined {
  const bits = numberOf(qc.act_bits ?? 16);
  if (!(bits < 16)) return undefined;
  const dtName = String(qc.act_data_type ?? qc.data_type ?? "").replace(/^(mx_fp|mx_int)\d+$/, "$1");
  if (!Object.hasOwn(ACT_TYPES, dtName)) return undefined;
  const dataType = ACT_TYPES[dtName];
  return {
    bits,
    groupSize: numberOf(qc.act_group_size ?? qc.group_size),
    sym: qc.act_sym !== false,
    dataType,
    dynamic: qc.act_dynamic !== false,
  };
}
