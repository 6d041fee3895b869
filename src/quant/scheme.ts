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

/** Preset names AutoRound has that this build does not implement yet (clear message, not "unknown"). */
const NOT_YET = [
  "MXFP4",
  "MXFP6",
  "MXFP8",
  "MXFP4_RCEIL",
  "MXFP8_RCEIL",
  "MXINT4",
  "NVFP4",
  "NVFP4_E5M3",
  "FPW8A16",
  "FP8_STATIC",
  "FP8_BLOCK",
  "INT8",
  "INT8_W8A8",
  "BF16",
];

/**
 * Integer bit widths the quantizer runs (schemes.py W2…W8A16). The packing formats store fewer
 * (formats/layout.ts PACKED_BITS; W5/W6 go to `fake`, as auto-round's only exporters for them are
 * fake and MLX).
 */
export const SUPPORTED_BITS = [2, 3, 4, 5, 6, 8] as const;

/** Check bits and group size of a scheme; throws QuantizeError naming the problem. */
export function validateScheme(s: QuantScheme, where = "scheme"): QuantScheme {
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
  overrides: { bits?: number; groupSize?: number; sym?: boolean; dataType?: string } = {},
): QuantScheme {
  const key = name.toUpperCase();
  const preset = Object.hasOwn(PRESET_SCHEMES, key) ? PRESET_SCHEMES[key] : undefined;
  if (!preset) {
    if (NOT_YET.includes(key) || key.startsWith("GGUF:")) {
      throw new UsageError(`scheme ${name} is not supported by this build yet (supported: ${schemeNames()})`);
    }
    throw new UsageError(`unknown scheme "${name}" (supported: ${schemeNames()})`);
  }
  if (overrides.dataType !== undefined && overrides.dataType !== "int") {
    throw new UsageError(`data_type "${overrides.dataType}" is not supported yet (only int)`);
  }
  return validateScheme({
    bits: overrides.bits ?? preset.bits,
    groupSize: overrides.groupSize ?? preset.groupSize,
    sym: overrides.sym ?? preset.sym,
    dataType: "int",
  }, "--scheme/--bits/--group_size");
}

/** Comma-separated preset names for messages and --help. */
export function schemeNames(): string {
  return Object.keys(PRESET_SCHEMES).join(", ");
}
