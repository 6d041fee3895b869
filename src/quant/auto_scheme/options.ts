/**
 * AutoScheme's candidate options: the `--options` / `AutoScheme.options` user surface of
 * spec/AUTOSCHEME.md § 1.1–1.3 (auto-round gen_auto_scheme.py:44-84, schemes.py:365-366, 425-525,
 * cli/main.py:340-368), turned into resolved options with auto-round's raw scheme fields.
 */
import { UsageError } from "../../errors.ts";
import type { QuantScheme } from "../../qmath/quantized.ts";
import { resolveScheme, type SchemeOverrides } from "../scheme.ts";
import { type FieldOverrides, ggufFields, overrideFields, RAW_PRESET_FIELDS, sameFields } from "./fields.ts";
import type { SchemeFields } from "./fields.ts";

/** One resolved candidate scheme of an AutoScheme run. */
export interface AutoOption {
  /** Upper-cased preset name, e.g. `W4A16`, `GGUF:Q4_K_S`, `BF16`. */
  name: string;
  /** auto-round's 12 scheme fields: raw preset values, or override-applied ones (§ 1.2). */
  fields: SchemeFields;
  /** bits ≥ 16 and act_bits ≥ 16: the "keep in high precision" option, never scored (§ 1.2, § 3.1). */
  keep16: boolean;
  /** The scheme this build quantizes with; absent for keep-16-bit and GGUF options. */
  scheme?: QuantScheme;
  /** GGUF base type (`Q4_K`, `Q4_0`, …) of a `GGUF:*` option. */
  ggufBase?: string;
  /** True when user overrides turned it into a `QuantizationScheme` (§ 1.2: it may become the default). */
  overridden: boolean;
}

/** What {@link resolveOptions} returns: the options and the log lines auto-round prints on the way. */
export interface ResolvedOptions {
  options: AutoOption[];
  /** Names dropped as duplicates of an earlier option (gen:50-84, an info log there). */
  dropped: string[];
  /** Warnings, e.g. GGUF options ignoring scheme overrides (schemes.py:449-453). */
  warnings: string[];
}

/**
 * § 1.1 `AutoScheme.__post_init__` on a string: upper-case, remove every space, split on ",".
 *
 * @example
 * ```ts
 * splitOptionsString("gguf:q2_k_s, gguf:q4_k_s"); // ["GGUF:Q2_K_S", "GGUF:Q4_K_S"]
 * ```
 */
export function splitOptionsString(s: string): string[] {
  return s.toUpperCase().replace(/ /g, "").split(",");
}

/**
 * § 1.3 `--options` (nargs "+"): tokens joined with ",", split on ",", each stripped, empties dropped,
 * re-joined (cli/main.py:340-342). The result then goes through {@link splitOptionsString}.
 */
export function joinCliOptions(tokens: readonly string[]): string {
  return tokens.join(",").split(",").map((t) => t.trim()).filter((t) => t.length > 0).join(",");
}

/**
 * § 1.3 `--shared_layers` (nargs "+", action "append"; cli/main.py:353-368): per flag, if any token
 * contains a comma each token is one group split on ","; else all tokens form one group.
 */
export function parseSharedLayersCli(flags: readonly (readonly string[])[]): string[][] {
  const groups: string[][] = [];
  for (const tokens of flags) {
    if (tokens.some((t) => t.includes(","))) {
      for (const t of tokens) groups.push(t.split(",").map((x) => x.trim()).filter((x) => x.length > 0));
    } else {
      groups.push([...tokens]);
    }
  }
  return groups;
}

/** `GGUF:*` AutoScheme option names → GGUF base type (schemes.py:125-141; `GGUF:BF16` is no preset). */
const GGUF_OPTION_BASES: Readonly<Record<string, string>> = {
  "GGUF:Q4_0": "Q4_0",
  "GGUF:Q4_1": "Q4_1",
  "GGUF:Q5_0": "Q5_0",
  "GGUF:Q5_1": "Q5_1",
  "GGUF:Q8_0": "Q8_0",
  "GGUF:Q2_K_S": "Q2_K",
  "GGUF:Q2_K_MIXED": "Q2_K",
  "GGUF:Q3_K_S": "Q3_K",
  "GGUF:Q3_K_M": "Q3_K",
  "GGUF:Q3_K_L": "Q3_K",
  "GGUF:Q4_K_S": "Q4_K",
  "GGUF:Q4_K_M": "Q4_K",
  "GGUF:Q5_K_S": "Q5_K",
  "GGUF:Q5_K_M": "Q5_K",
  "GGUF:Q6_K": "Q6_K",
};

/** Names auto-round accepts that this build refuses, with the reason (one line each). */
const REFUSED: Readonly<Record<string, string>> = {
  INT4: "auto-round's INT4 is W4A4 (int4 per-channel weights and activations), which this build does " +
    "not implement (this build's INT4 scheme is W4A16); use W4A16",
  NVFP4_E5M3: "NVFP4_E5M3 (UE5M3 block scales) is not supported by this build yet",
  // gs (128, 128) is a tuple: the reference's bits accounting raises TypeError on it (§ 2.1, § 7.7).
  FP8_BLOCK: "FP8_BLOCK is not supported by this build yet (auto-round cannot price its 128×128 blocks " +
    "either)",
};

/** Every accepted option name, for messages. */
export function optionNames(): string[] {
  return [...Object.keys(RAW_PRESET_FIELDS), "INT8", ...Object.keys(GGUF_OPTION_BASES)];
}

function unknown(name: string): UsageError {
  const what = name === "" ? "is empty (a stray comma?)" : "is not a preset scheme name";
  const hint = /^\d+$/.test(name) ? ` (there is no bits-only form: write W${name}A16)` : "";
  return new UsageError(
    `AutoScheme option ${JSON.stringify(name)} ${what}${hint}; use names such as W2A16, W4A16, MXFP8, ` +
      `GGUF:Q4_K_S, BF16 (all: ${optionNames().join(", ")})`,
  );
}

/** `preset_name_to_scheme(name.upper())` → raw fields, or undefined for an unknown name. */
function rawFields(upper: string): { fields: SchemeFields; ggufBase?: string } | undefined {
  if (Object.hasOwn(GGUF_OPTION_BASES, upper)) {
    const base = GGUF_OPTION_BASES[upper];
    return { fields: ggufFields(base), ggufBase: base };
  }
  const key = upper === "INT8" ? "INT8_W8A8" : upper; // schemes.py:829-830: the same object
  return Object.hasOwn(RAW_PRESET_FIELDS, key) ? { fields: RAW_PRESET_FIELDS[key] } : undefined;
}

function toFieldOverrides(o: SchemeOverrides): FieldOverrides {
  const f: FieldOverrides = {
    bits: o.bits,
    group_size: o.groupSize,
    sym: o.sym,
    data_type: o.dataType,
    act_bits: o.actBits,
    act_group_size: o.actGroupSize,
    act_data_type: o.actDataType,
    act_dynamic: o.actDynamic,
  };
  for (const k of Object.keys(f) as (keyof FieldOverrides)[]) if (f[k] === undefined) delete f[k];
  return f;
}

/**
 * Resolve AutoScheme options (§ 1.1–1.2): a string is split by {@link splitOptionsString}, a list is
 * kept as given (its names are looked up upper-cased; a list item containing lower-case "mixed" is
 * refused as in schemes.py:511). Options whose raw fields equal an earlier option's are dropped
 * (gen:50-84: GGUF:Q4_K_S/GGUF:Q4_K_M, W4A16/W4A16_MIXED, INT8/INT8_W8A8). With scheme overrides
 * (CLI --bits, --group_size, --asym, --act_*), every non-GGUF option gets them applied (schemes.py:
 * 425-493) and GGUF options ignore them with a warning. Unknown names throw a one-line UsageError
 * (auto-round: KeyError from preset_name_to_scheme, § 1.2).
 *
 * @example
 * ```ts
 * resolveOptions("w2a16, W4A16 ,w2a16").options.map((o) => o.name); // ["W2A16", "W4A16"]
 * ```
 */
export function resolveOptions(
  options: string | readonly string[],
  overrides: SchemeOverrides = {},
): ResolvedOptions {
  const names = typeof options === "string" ? splitOptionsString(options) : [...options];
  if (names.length === 0) throw new UsageError("AutoScheme options cannot be empty (schemes.py:508)");
  const fo = toFieldOverrides(overrides);
  const hasOverrides = Object.keys(fo).length > 0;
  const out: AutoOption[] = [];
  const dropped: string[] = [];
  const warnings: string[] = [];
  for (const given of names) {
    if (given.includes("mixed")) {
      throw new UsageError(`Mixed option ${given} is not supported (write it upper-case in a string)`);
    }
    const name = given.trim().toUpperCase();
    if (Object.hasOwn(REFUSED, name)) throw new UsageError(`AutoScheme option ${name}: ${REFUSED[name]}`);
    const raw = rawFields(name);
    if (!raw) throw unknown(name);
    if (out.some((o) => sameFields(rawFields(o.name)!.fields, raw.fields))) {
      dropped.push(name);
      continue;
    }
    if (raw.ggufBase) {
      if (hasOverrides) {
        warnings.push(
          `${name}: scheme overrides are ignored for GGUF options (schemes.py:449-453)`,
        );
      }
      out.push({ name, fields: raw.fields, keep16: false, ggufBase: raw.ggufBase, overridden: false });
      continue;
    }
    const fields = hasOverrides ? overrideFields(raw.fields, fo) : raw.fields;
    const keep16 = fields.bits >= 16 && (fields.act_bits ?? 16) >= 16;
    if (name === "BF16" && !keep16) {
      throw new UsageError(
        `AutoScheme option BF16 with --bits/--act_bits overrides is no longer 16-bit; drop the override ` +
          `or the BF16 option`,
      );
    }
    const option: AutoOption = { name, fields, keep16, overridden: hasOverrides };
    if (!keep16) option.scheme = resolveScheme(name, overrides);
    out.push(option);
  }
  return { options: out, dropped, warnings };
}

/**
 * § 1.2 the compressor's default scheme (schemes.py:517-525): `options[0]`, unless an option is an
 * override-applied scheme with bits < 16 or act_bits < 16 that is not "BF16" — the first such one.
 * Plain names never win, so `["BF16", "W4A16"]` gives BF16.
 */
export function defaultOptionIndex(options: readonly AutoOption[]): number {
  const i = options.findIndex((o) =>
    o.name !== "BF16" && o.overridden && (o.fields.bits < 16 || (o.fields.act_bits ?? 16) < 16)
  );
  return i < 0 ? 0 : i;
}
