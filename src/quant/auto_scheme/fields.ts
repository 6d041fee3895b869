/**
 * auto-round's 12 `QuantizationScheme` fields (schemes.py:198-210) as AutoScheme compares, prices and
 * exports them (spec/AUTOSCHEME.md § 1.1 dedup, § 2.1 bits, § 4.6 layer_config / extra_config). The
 * values are the **raw** preset values of schemes.py:538-832 (e.g. W4A16 has `act_group_size: null`),
 * because the reference writes `asdict(preset_name_to_scheme(option))` into the layer config (§ 4.6)
 * and deduplicates options by dataclass equality (§ 1.1); this build's QuantScheme fills
 * those fields in, so it cannot stand in for them.
 */
import { GGUF_SCHEME_FACTS } from "../../formats/gguf/presets.ts";

/** The 12 fields of auto-round's `QuantizationScheme`, snake_case as they are exported (§ 4.6). */
export interface SchemeFields {
  bits: number;
  /** null only for `gguf:bf16` (export_to_gguf/config.py GGUF_INNER_CONFIG). */
  group_size: number | null;
  sym: boolean;
  data_type: string;
  act_bits: number | null;
  act_group_size: number | null;
  act_sym: boolean | null;
  act_data_type: string | null;
  act_dynamic: boolean | null;
  super_bits: number | null;
  super_group_size: number | null;
  rotation_config: null;
}

/** The field names in dataclass order (schemes.py:198-210). */
export const SCHEME_FIELD_NAMES: readonly (keyof SchemeFields)[] = [
  "bits",
  "group_size",
  "sym",
  "data_type",
  "act_bits",
  "act_group_size",
  "act_sym",
  "act_data_type",
  "act_dynamic",
  "super_bits",
  "super_group_size",
  "rotation_config",
];

/** `QuantizationScheme.from_dict`: unset fields take the dataclass defaults (schemes.py:198-220). */
function fromDict(d: Partial<SchemeFields>): SchemeFields {
  return {
    bits: 4,
    group_size: 128,
    sym: true,
    data_type: "int",
    act_bits: null,
    act_group_size: null,
    act_sym: null,
    act_data_type: null,
    act_dynamic: null,
    super_bits: null,
    super_group_size: null,
    rotation_config: null,
    ...d,
  };
}

const wA16 = (bits: number, gs = 128) => fromDict({ bits, group_size: gs, act_bits: 16 });
const mxLike = (bits: number, dataType: string, act: string) =>
  fromDict({
    bits,
    group_size: 32,
    data_type: dataType,
    act_bits: bits,
    act_data_type: act,
    act_group_size: 32,
    act_sym: true,
    act_dynamic: true,
  });

/**
 * Raw preset fields (schemes.py:538-832) of the non-GGUF options AutoScheme can use in this build.
 * INT4 is left out on purpose: auto-round's INT4 is W4A4 (int4 per-channel weights and activations,
 * schemes.py:779-791) while this build's `INT4` preset is W4A16 g128, so accepting it would price and
 * run a different scheme than the name says (options.ts refuses it with a message).
 */
export const RAW_PRESET_FIELDS: Readonly<Record<string, SchemeFields>> = {
  W4A16: wA16(4),
  W4A16_MIXED: wA16(4), // schemes.py:820: the same object as W4A16
  W5A16: wA16(5),
  W6A16: wA16(6),
  W2A16: wA16(2),
  W2A16G64: wA16(2, 64),
  W2A16G32: wA16(2, 32),
  W3A16: wA16(3),
  W8A16: wA16(8),
  MXFP4: mxLike(4, "mx_fp", "mx_fp"),
  MXFP6: mxLike(6, "mx_fp", "mx_fp"),
  MXFP8: mxLike(8, "mx_fp", "mx_fp"),
  MXFP4_RCEIL: mxLike(4, "mx_fp", "mx_fp_rceil"),
  MXFP8_RCEIL: mxLike(8, "mx_fp", "mx_fp_rceil"),
  MXINT4: mxLike(4, "mx_int", "mx_int"),
  NVFP4: { ...mxLike(4, "nv_fp", "nv_fp4_with_static_gs"), group_size: 16, act_group_size: 16 },
  FPW8A16: fromDict({ bits: 8, group_size: 0, data_type: "fp", act_bits: 16, act_data_type: "fp" }),
  FP8_STATIC: fromDict({
    bits: 8,
    group_size: -1,
    data_type: "fp",
    act_bits: 8,
    act_group_size: 0,
    act_data_type: "fp",
    act_dynamic: false,
    act_sym: true,
  }),
  INT8_W8A8: fromDict({
    bits: 8,
    group_size: -1,
    data_type: "int",
    act_bits: 8,
    act_group_size: -1,
    act_data_type: "int",
    act_dynamic: true,
    act_sym: true,
  }),
  // schemes.py:794-802: the AutoScheme "keep in 16-bit" option.
  BF16: fromDict({ bits: 16, group_size: 128, data_type: "fp", act_bits: 16, act_data_type: "fp" }),
};

/**
 * Fields of a GGUF base type (`Q4_K`, `Q4_0`, …, or `BF16` for `gguf:bf16`), as GGUF_SCHEME_FACTS
 * gives them (schemes.py:22-140): act_bits 16, the other act_* fields unset.
 */
export function ggufFields(base: string): SchemeFields {
  if (base === "BF16") {
    // schemes.py GGUF_SCHEME_FACTS["gguf:bf16"]: the GGUF fallback's target (§ 4.6).
    return fromDict({ bits: 16, group_size: null, sym: true, data_type: "int_sym_dq", act_bits: 16 });
  }
  const f = GGUF_SCHEME_FACTS[base];
  return fromDict({
    bits: f.bits,
    group_size: f.groupSize,
    sym: f.sym,
    data_type: f.dataType,
    act_bits: 16,
    super_bits: f.superBits ?? null,
    super_group_size: f.superGroupSize ?? null,
  });
}

/** User scheme overrides in auto-round's field names (CLI --bits, --group_size, --asym, --act_*). */
export interface FieldOverrides {
  bits?: number;
  group_size?: number;
  sym?: boolean;
  data_type?: string;
  act_bits?: number;
  act_group_size?: number;
  act_data_type?: string;
  act_dynamic?: boolean;
}

/**
 * `_override_scheme_with_user_specify` (schemes.py:425-493, spec § 1.2) on a non-GGUF option's raw
 * fields when the user gave scheme overrides: update with the overrides, then act_dynamic None →
 * true, act_group_size None → group_size, act_bits falsy → 16, act_sym None → sym, act_data_type None
 * → the weight data type when act_bits < 16 else "float". A data type carrying its width (`mx_fp8`)
 * sets the bits, as `_reconcile_bits_and_dtype` does for the types this build knows.
 */
export function overrideFields(raw: SchemeFields, o: FieldOverrides): SchemeFields {
  const d: SchemeFields = { ...raw };
  for (const k of Object.keys(o) as (keyof FieldOverrides)[]) {
    if (o[k] !== undefined) (d as unknown as Record<string, unknown>)[k] = o[k];
  }
  const m = /^(int|mx_fp|mx_int|nv_fp|fp)(\d+)$/.exec(d.data_type);
  if (m) {
    d.data_type = m[1];
    d.bits = Number(m[2]);
  }
  if (d.act_dynamic === null) d.act_dynamic = true;
  if (d.act_group_size === null) d.act_group_size = d.group_size;
  if (!d.act_bits) d.act_bits = 16;
  if (d.act_sym === null) d.act_sym = d.sym;
  if (d.act_data_type === null) d.act_data_type = d.act_bits < 16 ? d.data_type : "float";
  return d;
}

/** Dataclass equality over all 12 fields (the dedup test of gen:50-84). */
export function sameFields(a: SchemeFields, b: SchemeFields): boolean {
  return SCHEME_FIELD_NAMES.every((k) => a[k] === b[k]);
}
