/**
 * Quantization schemes: AutoRound's presets (auto_round/schemes.py) as data, and the rule that
 * turns `--scheme` plus explicit `--bits/--group_size/--asym` flags into the scheme to apply.
 */
import { QuantizeError, quote, UsageError } from "../errors.ts";
import type { QuantScheme } from "../qmath/quantized.ts";

/** Integer weight-only presets of schemes.py (W*A16 with int data). */
export const PRESET_SCHEMES: Readonly<Record<string, QuantScheme>> = {
  W4A16: { bits: 4, groupSize: 128, sym: true, dataType: "int" },
  W2A16: { bits: 2, groupSize: 128, sym: true, dataType: "int" },
  W3A16: { bits: 3, groupSize: 128, sym: true, dataType: "int" },
  W8A16: { bits: 8, groupSize: 128, sym: true, dataType: "int" },
  W5A16: { bits: 5, groupSize: 128, sym: true, dataType: "int" },
  W6A16: { bits: 6, groupSize: 128, sym: true, dataType: "int" },
  W2A16G64: { bits: 2, groupSize: 64, sym: true, dataType: "int" },
  W2A16G32: { bits: 2, groupSize: 32, sym: true, dataType: "int" },
  W4A16_MIXED: { bits: 4, groupSize: 128, sym: true, dataType: "int" },
  INT4: { bits: 4, groupSize: 128, sym: true, dataType: "int" },
};

/**
 * auto-round's float and activation-quantized presets (schemes.py:618-777), after its resolution
 * (`_override_scheme_with_user_specify`: act_dynamic None → true, act_group_size None → group_size):
 * spec/SCHEMES.md § 1.2–1.3. MXFP4_RCEIL/MXFP8_RCEIL quantize weights with the floor rule; only
 * their activations use RCEIL. NVFP4's activation data type `nv_fp` is auto-round's
 * `nv_fp4_with_static_gs` (a calibrated global scale; act_dynamic stays true as in the preset).
 */
export const FLOAT_PRESET_SCHEMES: Readonly<Record<string, QuantScheme>> = {
  MXFP4: mx("mx_fp", 4, "mx_fp"),
  MXFP6: mx("mx_fp", 6, "mx_fp"),
  MXFP8: mx("mx_fp", 8, "mx_fp"),
  MXFP4_RCEIL: mx("mx_fp", 4, "mx_fp_rceil"),
  MXFP8_RCEIL: mx("mx_fp", 8, "mx_fp_rceil"),
  MXINT4: mx("mx_int", 4, "mx_int"),
  NVFP4: {
    bits: 4,
    groupSize: 16,
    sym: true,
    dataType: "nv_fp",
    act: { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp", dynamic: true },
  },
  FPW8A16: { bits: 8, groupSize: 0, sym: true, dataType: "fp" },
  FP8_STATIC: {
    bits: 8,
    groupSize: -1,
    sym: true,
    dataType: "fp",
    act: { bits: 8, groupSize: 0, sym: true, dataType: "fp", dynamic: false },
  },
  INT8_W8A8: {
    bits: 8,
    groupSize: -1,
    sym: true,
    dataType: "int",
    act: { bits: 8, groupSize: -1, sym: true, dataType: "int", dynamic: true },
  },
};

function mx(
  dataType: "mx_fp" | "mx_int",
  bits: number,
  act: "mx_fp" | "mx_fp_rceil" | "mx_int",
): QuantScheme {
  return {
    bits,
    groupSize: 32,
    sym: true,
    dataType,
    act: { bits, groupSize: 32, sym: true, dataType: act, dynamic: true },
  };
}

/** Preset aliases: auto-round's `INT8` is the same object as `INT8_W8A8` (schemes.py:765-777). */
const ALIASES: Readonly<Record<string, string>> = { INT8: "INT8_W8A8" };

/** Preset names AutoRound has that this build does not implement yet (clear message, not "unknown"). */
const NOT_YET = [
  // UE5M3 block scales (nvfp4_v2) and 128×128 FP8 blocks: not implemented.
  "NVFP4_E5M3",
  "FP8_BLOCK",
  // bits 16: never quantized; an AutoScheme option only.
  "BF16",
];

/** Element bit widths per float weight data type (SCHEMES.md § 2.1; mx_fp6 is E2M3). */
const FLOAT_BITS: Readonly<Record<string, readonly number[]>> = {
  mx_fp: [4, 6, 8],
  mx_int: [4],
  nv_fp: [4],
  fp: [8],
};

/**
 * Integer bit widths the quantizer runs (schemes.py W2…W8A16). The packing formats store fewer
 * (formats/layout.ts PACKED_BITS; W5/W6 go to `fake`, as auto-round's only exporters for them are
 * fake and MLX).
 */
export const SUPPORTED_BITS = [2, 3, 4, 5, 6, 8] as const;

/** Check bits and group size of a scheme; throws QuantizeError naming the problem. */
export function validateScheme(s: QuantScheme, where = "scheme"): QuantScheme {
  if (s.dataType !== "int") return validateFloatScheme(s, where);
  if (!(SUPPORTED_BITS as readonly number[]).includes(s.bits)) {
    throw new QuantizeError(
      `${where}: bits ${quote(s.bits)} is not supported (use one of ${SUPPORTED_BITS.join(", ")})`,
    );
  }
  if (!Number.isInteger(s.groupSize) || !(s.groupSize === -1 || s.groupSize > 0)) {
    throw new QuantizeError(
      `${where}: group_size ${
        quote(s.groupSize)
      } is invalid (use -1 for per-channel or a positive size such as 32, 64, 128)`,
    );
  }
  if (typeof s.sym !== "boolean") {
    throw new QuantizeError(`${where}: sym ${quote(s.sym)} is not true or false`);
  }
  validateAct(s, where);
  if (s.act && (s.bits !== 8 || !s.sym || s.groupSize !== -1)) {
    throw new QuantizeError(
      `${where}: activation quantization with int weights needs INT8_W8A8's 8-bit sym per-channel weights`,
    );
  }
  return s;
}

/** The activation quantizers implemented (SCHEMES.md § 8): data type → bits and group sizes. */
function validateAct(s: QuantScheme, where: string): void {
  const a = s.act;
  if (!a) return;
  const fail = (why: string) =>
    new QuantizeError(
      `${where}: activation quantizer ${a.dataType} ${a.bits}-bit group ${a.groupSize} ${why}`,
    );
  if (a.dataType.startsWith("mx_")) {
    const fmtBits = a.dataType === "mx_int" ? [4] : [4, 6, 8];
    if (!fmtBits.includes(a.bits) || a.groupSize <= 0 || !a.dynamic) {
      throw fail("is not an MX quantizer (dynamic, bits 4/6/8, positive group)");
    }
  } else if (a.dataType === "nv_fp") {
    if (a.bits !== 4 || a.groupSize !== 16) throw fail("is not NVFP4's (4-bit, group 16)");
  } else if (a.dataType === "fp") {
    if (a.bits !== 8 || (!a.dynamic && a.groupSize !== 0)) {
      throw fail("is not FP8 (8-bit; static needs group 0)");
    }
  } else if (a.bits !== 8 || a.groupSize !== -1 || !a.dynamic) {
    throw fail("is not INT8_W8A8's (8-bit, per token, dynamic)");
  }
}

function validateFloatScheme(s: QuantScheme, where: string): QuantScheme {
  const bits = FLOAT_BITS[s.dataType];
  if (!bits.includes(s.bits)) {
    throw new QuantizeError(
      `${where}: data_type ${s.dataType} has no ${s.bits}-bit format (use ${bits.join(", ")})`,
    );
  }
  if (!s.sym) throw new QuantizeError(`${where}: data_type ${s.dataType} is symmetric only (drop --asym)`);
  const g = s.groupSize;
  const groupOk = s.dataType === "fp"
    ? g === 0 || g === -1 || g > 0
    : s.dataType === "nv_fp"
    ? g === 16
    : g > 0;
  if (!Number.isInteger(g) || !groupOk) {
    const want = s.dataType === "fp"
      ? "0 (per tensor), -1 (per channel) or a positive size"
      : s.dataType === "nv_fp"
      ? "16"
      : "a positive size such as 32";
    throw new QuantizeError(`${where}: group_size ${quote(g)} is invalid for ${s.dataType} (use ${want})`);
  }
  validateAct(s, where);
  return s;
}

/**
 * The scheme for a run: the preset named by `--scheme`, with explicit flags overriding its fields
 * (AutoRound's `_override_scheme_with_user_specify`).
 *
 * @example
 * ```ts
 * resolveScheme("W4A16", { groupSize: 32, sym: false }); // 4 bits, group 32, asym
 * ```
 */
export function resolveScheme(
  name: string,
  overrides: SchemeOverrides = {},
): QuantScheme {
  const upper = name.toUpperCase();
  const key = ALIASES[upper] ?? upper;
  const preset = Object.hasOwn(PRESET_SCHEMES, key)
    ? PRESET_SCHEMES[key]
    : Object.hasOwn(FLOAT_PRESET_SCHEMES, key)
    ? FLOAT_PRESET_SCHEMES[key]
    : undefined;
  if (!preset) {
    if (NOT_YET.includes(key) || key.startsWith("GGUF:")) {
      throw new UsageError(`scheme ${name} is not supported by this build yet (supported: ${schemeNames()})`);
    }
    throw new UsageError(`unknown scheme "${name}" (supported: ${schemeNames()})`);
  }
  const dt = overrides.dataType === undefined ? undefined : parseDataType(overrides.dataType);
  const dataType = dt?.dataType ?? preset.dataType;
  // auto-round's _reconcile_bits_and_dtype: bits carried by the data type name win (mx_fp8 → 8).
  const bits = dt?.bits ?? overrides.bits ?? preset.bits;
  const s: QuantScheme = {
    bits,
    groupSize: overrides.groupSize ?? preset.groupSize,
    sym: overrides.sym ?? preset.sym,
    dataType,
  };
  // A data type other than the preset's keeps act_bits 16 unless the preset quantizes activations
  // of the same type (auto-round: act_data_type = data_type when act_bits < 16).
  if (preset.act && dataType === preset.dataType) {
    s.act = { ...preset.act, bits: preset.act.bits === preset.bits ? bits : preset.act.bits };
    if (preset.act.groupSize === preset.groupSize) s.act.groupSize = s.groupSize;
  }
  applyActOverrides(s, overrides);
  return validateScheme(s, "--scheme/--bits/--group_size/--data_type/--act_*");
}

/** Flags that override a preset's fields (auto-round's cli/parser.py scheme group). */
export interface SchemeOverrides {
  bits?: number;
  groupSize?: number;
  sym?: boolean;
  dataType?: string;
  /** --act_bits: 16 (or more) keeps activations unquantized. */
  actBits?: number;
  actGroupSize?: number;
  actDataType?: string;
  /** false for --disable_act_dynamic. */
  actDynamic?: boolean;
}

/** Activation data types per weight data type when --act_data_type is not given (schemes.py:482-488). */
const ACT_TYPES = ["mx_fp", "mx_fp_rceil", "mx_int", "nv_fp", "fp", "int"] as const;

/**
 * --act_bits/--act_group_size/--act_data_type/--disable_act_dynamic on top of the resolved scheme
 * (auto-round _override_scheme_with_user_specify: act_group_size defaults to group_size, act_data_type
 * to the weight's data type, act_dynamic to true).
 */
function applyActOverrides(s: QuantScheme, o: SchemeOverrides): void {
  const given = o.actBits !== undefined || o.actGroupSize !== undefined || o.actDataType !== undefined ||
    o.actDynamic !== undefined;
  if (!given) return;
  const bits = o.actBits ?? s.act?.bits ?? 16;
  if (bits >= 16) {
    delete s.act;
    return;
  }
  let dataType = o.actDataType?.toLowerCase() ?? s.act?.dataType ?? s.dataType;
  // auto-round's "nv_fp4_with_static_gs" is our nv_fp activation quantizer; "mx_fp4" carries its bits.
  if (dataType.startsWith("nv_fp")) dataType = "nv_fp";
  dataType = dataType.replace(/^(mx_fp|mx_int|fp|int)\d+$/, "$1");
  if (!(ACT_TYPES as readonly string[]).includes(dataType)) {
    throw new UsageError(
      `act_data_type "${o.actDataType ?? dataType}" is not supported (use ${ACT_TYPES.join(", ")})`,
    );
  }
  s.act = {
    bits,
    groupSize: o.actGroupSize ?? s.act?.groupSize ?? s.groupSize,
    sym: true,
    dataType: dataType as (typeof ACT_TYPES)[number],
    dynamic: o.actDynamic ?? s.act?.dynamic ?? true,
  };
}

/**
 * `--data_type` values: int, mx_fp, mx_int, nv_fp, fp, optionally with the bits (mx_fp8, nv_fp4, fp8),
 * as auto-round's infer_bits_by_data_type reads them.
 */
export function parseDataType(v: string): { dataType: QuantScheme["dataType"]; bits?: number } {
  const m = /^(int|mx_fp|mx_int|nv_fp|fp)(\d*)$/.exec(v.toLowerCase());
  if (!m) {
    throw new UsageError(
      `data_type "${v}" is not supported (use int, mx_fp, mx_int, nv_fp or fp, optionally with bits: mx_fp8)`,
    );
  }
  return { dataType: m[1] as QuantScheme["dataType"], bits: m[2] ? Number(m[2]) : undefined };
}

/** Comma-separated preset names for messages and --help. */
export function schemeNames(): string {
  return [...Object.keys(PRESET_SCHEMES), ...Object.keys(FLOAT_PRESET_SCHEMES), ...Object.keys(ALIASES)].join(
    ", ",
  );
}
