/**
 * `--format` for the CLI: the list of formats, which scheme a run quantizes when formats are
 * combined, the checks that say in one line when they cannot be, and the exporters.
 *
 * Rules (auto-round export/formats/resolver.py and backends/*.py, extended so GGUF can sit next to
 * the packed formats):
 * - Names: auto_round, auto_gptq (alias gptqmodel), auto_awq, llm_compressor, fake, gguf:<type>
 *   (q4_0 … q8_0, q2_k_s … q6_k; "q*_" takes the bits of the scheme, as auto-round does).
 * - With a gguf format and no explicit scheme, the run's scheme follows the GGUF base type
 *   (GGUF_SCHEME_FACTS); packed formats next to it must be able to store that scheme: Q4_0, Q8_0 and
 *   Q4_1 (written with an integer zero point, auto-round's `data_type: int` when formats are
 *   combined) can, the 5-bit and K-quant bases cannot.
 * - With an explicit scheme, the packed formats store it and each GGUF file quantizes the same float
 *   weights with its own type mix (one pipeline pass, one importance matrix). Where the two agree
 *   (e.g. W4A16 group 32 and a Q4_0 tensor) the GGUF tensor can take the pipeline's codes as they are.
 *   SignRound tuning (iters > 0) tunes one scheme: a gguf format then requires it to be the GGUF base.
 * - Without an explicit scheme, all gguf formats of one run must share one base type, since the run
 *   follows it (auto-round: "Cannot export q4_k_m and q3_k_s at the same time").
 * - auto_awq stores 4-bit weights only (and warns when symmetric: the classic kernels want
 *   zero_point true); auto_gptq warns for asymmetric schemes (auto-round's warning).
 */
import { UnsupportedError, UsageError, writeErrorOf } from "../errors.ts";
import { checkAwqScheme } from "../formats/awq.ts";
import { gptqWarnings } from "../formats/gptq/config.ts";
import { PACKED_BITS } from "../formats/layout.ts";
import type { PlannedLayers } from "../formats/run.ts";
import { autoRoundFloatPacking } from "../formats/auto_round_fp.ts";
import { compressedTensorsFloatFormat } from "../formats/compressed_tensors_fp.ts";
import { type FloatScheme, isIntWeightOnly, type QuantScheme } from "../qmath/quantized.ts";
import { join } from "../std/path.ts";
import { AutoAwqExporter } from "./auto_awq.ts";
import { AutoGptqExporter } from "./auto_gptq.ts";
import { AutoRoundExporter } from "./auto_round.ts";
import type { ExportContext, Exporter } from "./exporter.ts";
import { FakeExporter } from "./fake.ts";
import { GgufExporter } from "./gguf.ts";
import { ggufFamilyWarnings } from "../formats/gguf/families.ts";
import type { ModelSpec } from "../model/config.ts";
import {
  GGUF_FORMAT_NAMES,
  GGUF_SCHEME_FACTS,
  type GgufFormat,
  ggufFormat,
  isFloatGguf,
} from "../formats/gguf/presets.ts";
import { LlmCompressorExporter } from "./llm_compressor.ts";

/** The families of formats. */
export type FormatKind = "auto_round" | "auto_gptq" | "auto_awq" | "llm_compressor" | "fake" | "gguf";

/** One requested format. */
export interface FormatSpec {
  /** Canonical name: "auto_round", …, "gguf:q4_k_m". */
  name: string;
  kind: FormatKind;
  gguf?: GgufFormat;
}

const PACKED: Record<string, FormatKind> = {
  auto_round: "auto_round",
  auto_gptq: "auto_gptq",
  gptqmodel: "auto_gptq",
  auto_awq: "auto_awq",
  llm_compressor: "llm_compressor",
  fake: "fake",
};

/** Every name `--format` accepts, for help texts. */
export function formatNames(): string {
  return [
    ...Object.keys(PACKED).filter((k) => k !== "gptqmodel"),
    ...GGUF_FORMAT_NAMES.map((g) => `gguf:${g}`),
  ]
    .join(", ");
}

/**
 * Parse `--format`: comma-separated, case-insensitive, duplicates dropped. `bits` fills in "q*_"
 * (auto-round `_normalize_format_names`).
 *
 * @example
 * ```ts
 * parseFormats("auto_round, GGUF:Q4_K_M"); // [{name: "auto_round", …}, {name: "gguf:q4_k_m", …}]
 * ```
 */
export function parseFormats(arg: string, bits = 4): FormatSpec[] {
  const names = arg.toLowerCase().replaceAll(" ", "").replaceAll("q*_", `q${bits}_`).split(",").filter(
    Boolean,
  );
  if (names.length === 0) throw new UsageError(`--format is empty (use one of ${formatNames()})`);
  const out: FormatSpec[] = [];
  for (const n of names) {
    let spec: FormatSpec;
    if (n.startsWith("gguf:")) {
      if (n === "gguf:q2_k_mixed") {
        throw new UsageError(
          `--format gguf:q2_k_mixed is for MoE models and is not supported; use gguf:q2_k_s`,
        );
      }
      const g = ggufFormat(n);
      if (!g) {
        throw new UsageError(
          `unknown GGUF type "${n}" (supported: ${GGUF_FORMAT_NAMES.map((x) => `gguf:${x}`).join(", ")})`,
        );
      }
      spec = { name: `gguf:${g.name}`, kind: "gguf", gguf: g };
    } else if (Object.hasOwn(PACKED, n)) {
      spec = { name: PACKED[n], kind: PACKED[n] };
    } else {
      throw new UsageError(`unknown format "${n}" (supported: ${formatNames()})`);
    }
    if (!out.some((o) => o.name === spec.name)) out.push(spec);
  }
  return out;
}

/**
 * The integer scheme a GGUF base type quantizes with, when the packed formats can store it (Q4_0,
 * Q8_0 symmetric; Q4_1 asymmetric with an integer zero point); undefined otherwise.
 */
export function ggufIntScheme(g: GgufFormat): QuantScheme | undefined {
  const f = GGUF_SCHEME_FACTS[g.base];
  if (!f || f.superBits || ![2, 3, 4, 8].includes(f.bits)) return undefined;
  return { bits: f.bits, groupSize: f.groupSize, sym: f.sym, dataType: "int" };
}

/** What {@link resolveRunScheme} decides. */
export interface RunScheme {
  /** The scheme the pipeline quantizes the packed formats with. */
  scheme: QuantScheme;
  /** One line for the log, e.g. "GGUF:Q4_K_M (per-tensor K-quant mix)". */
  describe: string;
  /** Whether the pipeline has anything to pack (false for GGUF-only runs). */
  packs: boolean;
}

/**
 * The scheme of a run. `explicit` is the scheme from --scheme/--bits/--group_size/--asym when the
 * user gave any of them, else undefined; `fallback` is what the CLI resolved by default (W4A16).
 * Throws UsageError when the formats cannot share one quantization.
 */
export function resolveRunScheme(
  formats: FormatSpec[],
  explicit: QuantScheme | undefined,
  fallback: QuantScheme,
  iters = 0,
): RunScheme {
  // gguf:f32/f16/bf16 convert without quantizing: they take no part in choosing the scheme.
  const floats = formats.filter((f) => f.kind === "gguf" && isFloatGguf(f.gguf!));
  // gguf:mxfp4 stores the run's MXFP4 weights as they are: a packing format, not a self-quantizing one.
  const storesRun = (f: FormatSpec) => f.kind !== "gguf" || f.gguf!.base === "MXFP4";
  const ggufs = formats.filter((f) => !storesRun(f) && !isFloatGguf(f.gguf!));
  const packed = formats.filter(storesRun);
  if (!explicit && packed.some((f) => f.gguf?.base === "MXFP4")) {
    throw new UsageError(
      "--format gguf:mxfp4 stores the run's MXFP4 weights: add --scheme MXFP4 (or MXFP4_RCEIL)",
    );
  }
  const packs = packed.length > 0;
  if (floats.length === formats.length && iters > 0) {
    throw new UsageError(
      `--format ${floats.map((f) => f.name).join(",")} converts without quantizing; use --iters 0`,
    );
  }
  if (ggufs.length === 0) {
    const scheme = explicit ?? fallback;
    const describe = packs || !floats.length
      ? describeScheme(scheme)
      : `${floats.map((f) => `GGUF:${f.gguf!.fileTypeName}`).join(", ")} conversion`;
    return { scheme, describe, packs };
  }
  const bases = [...new Set(ggufs.map((f) => f.gguf!.base))];
  if (bases.length > 1 && (!explicit || iters > 0)) {
    throw new UsageError(
      `--format ${
        ggufs.map((f) => f.name).join(",")
      }: the run's scheme follows the GGUF type, and these have ` +
        `different bases (${bases.join(", ")}); give --scheme or export them in separate runs`,
    );
  }
  const g = ggufs[0].gguf!;
  const intScheme = ggufIntScheme(g);
  const label = `GGUF:${g.fileTypeName}`;
  if (explicit) {
    if (iters > 0 && !(intScheme && sameScheme(intScheme, explicit))) {
      throw new UsageError(
        `--format ${ggufs[0].name} with --iters ${iters}: tuning must use the GGUF scheme (${label}), ` +
          `not ${describeScheme(explicit)}; drop --scheme or export GGUF in a separate run`,
      );
    }
    return {
      scheme: explicit,
      describe: `${describeScheme(explicit)}; ${label} per-tensor mix for GGUF`,
      packs,
    };
  }
  if (packs && !intScheme) {
    throw new UsageError(
      `--format ${formats.map((f) => f.name).join(",")}: without --scheme the scheme follows ${
        ggufs[0].name
      } ` +
        `(${label}: ${GGUF_SCHEME_FACTS[g.base].bits}-bit ${
          g.base.endsWith("_K") ? "K-quant" : "32-group"
        } ` +
        `blocks), which ${packed.map((f) => f.name).join(", ")} cannot store; add --scheme (e.g. W4A16) ` +
        `to write them with their own scheme next to the GGUF file`,
    );
  }
  // GGUF-only runs pack nothing; the scheme only labels the run and plans the layers.
  return { scheme: intScheme ?? fallback, describe: `${label} (per-tensor type mix)`, packs };
}

function sameScheme(a: QuantScheme, b: QuantScheme): boolean {
  return a.bits === b.bits && a.groupSize === b.groupSize && a.sym === b.sym;
}

function describeScheme(s: QuantScheme): string {
  const base = `${s.bits} bits, group ${s.groupSize}, ${s.sym ? "sym" : "asym"}`;
  if (s.dataType === "int" && !s.act) return base;
  const act = s.act
    ? `; activations ${s.act.dataType} ${s.act.bits}-bit, group ${s.act.groupSize}, ${
      s.act.dynamic ? "dynamic" : "static"
    }`
    : "";
  return `${s.dataType} ${base}${act}`;
}

/**
 * Check that every format can store the layers as planned (each format's own checks in
 * src/formats/); returns warnings to log, throws UsageError (one line) otherwise.
 */
export function checkFormats(
  formats: FormatSpec[],
  layers: PlannedLayers,
  scheme: QuantScheme,
  spec?: ModelSpec,
): string[] {
  const warnings: string[] = [];
  const floats = new Map<string, QuantScheme>();
  for (const s of [scheme, ...[...layers.layers.values()].map((p) => p.quantize ? p.scheme : scheme)]) {
    if (!isIntWeightOnly(s)) floats.set(describeScheme(s), s);
  }
  for (const s of floats.values()) checkFloatFormats(formats, asFloatScheme(s));
  for (const f of formats) {
    if (f.kind === "auto_round" || f.kind === "auto_gptq" || f.kind === "llm_compressor") {
      checkPackedBits(f.name, layers);
    }
    if (f.kind === "auto_awq") warnings.push(...checkAwqScheme(layers, scheme));
    if (f.kind === "auto_gptq") warnings.push(...gptqWarnings(scheme));
  }
  // What llama.cpp computes differently from the checkpoint (or cannot load: throws).
  if (spec && formats.some((f) => f.kind === "gguf")) warnings.push(...ggufFamilyWarnings(spec));
  return warnings;
}

/** A float / activation-quantized QuantScheme as the exporters take it (the presets are symmetric). */
function asFloatScheme(s: QuantScheme): FloatScheme {
  if (!s.sym) {
    throw new UsageError(`${describeScheme(s)}: float and activation-quantized schemes are symmetric`);
  }
  return { bits: s.bits, groupSize: s.groupSize, sym: true, dataType: s.dataType, act: s.act };
}

/** Whether a format kind stores float scheme `s` (SCHEMES.md § 10.1). */
function storesFloat(kind: FormatKind, s: FloatScheme, f?: FormatSpec): boolean {
  // gguf:mxfp4: ggml's MXFP4 blocks hold exactly the MXFP4 weight grid (the activations are llama.cpp's).
  if (kind === "gguf" && f?.gguf?.base === "MXFP4") {
    return s.dataType === "mx_fp" && s.bits === 4 && s.groupSize === 32;
  }
  if (kind === "fake") return true;
  if (kind === "llm_compressor") return compressedTensorsFloatFormat(s) !== undefined;
  if (kind === "auto_round") return autoRoundFloatPacking(s) !== undefined;
  return false; // auto_gptq/auto_awq pack integers; GGUF supports none of these presets (gguf.py:36-52)
}

/**
 * Refuse (UsageError, one line) a format that cannot store float scheme `s`, as auto-round's support
 * matrix (SCHEMES.md § 10.1): MXFP4/MXFP8/NVFP4 → llm_compressor, auto_round, fake; MXINT4 →
 * auto_round, fake; FP8_STATIC/FPW8A16 (per-channel or per-tensor FP8) → llm_compressor, auto_round,
 * fake; INT8_W8A8 → llm_compressor, fake; anything else (MXFP6, FP8 groups) → fake only.
 */
export function checkFloatFormats(formats: FormatSpec[], s: FloatScheme): void {
  const bad = formats.find((f) => !storesFloat(f.kind, s, f));
  if (!bad) return;
  const ok = (["llm_compressor", "auto_round", "fake"] as const).filter((k) => storesFloat(k, s));
  throw new UsageError(
    `--format ${bad.name} cannot store ${describeScheme(s)} (auto-round's support matrix); ` +
      `write it with --format ${ok.join(" or ")}`,
  );
}

/** The integer packing formats store 2, 3, 4 and 8 bits (auto-round's exporters refuse the rest). */
function checkPackedBits(format: string, layers: PlannedLayers): void {
  const bad: [string, number][] = [];
  for (const [name, p] of layers.layers) {
    if (p.quantize && !PACKED_BITS.includes(p.scheme.bits)) bad.push([name, p.scheme.bits]);
  }
  if (bad.length === 0) return;
  const [name, bits] = bad[0];
  const which = bad.length > 1
    ? `${bad.length} layers use ${bits} bits (${name} …)`
    : `${name} uses ${bits} bits`;
  throw new UsageError(
    `--format ${format} packs ${PACKED_BITS.join(", ")}-bit integers, but ${which}; ` +
      `write them with --format fake (or a gguf:q5_*/q6_k format)`,
  );
}

/** Folder of a format's output inside `outDir` when several formats are written. */
export function formatDirName(name: string): string {
  return name.replace(":", "-");
}

/**
 * The exporters of a run. One format writes into `outDir`; several write into `outDir/<format>`
 * (":" becomes "-": `gguf-q4_k_m`), created here.
 *
 * @example
 * ```ts
 * const exporters = createExporters(["auto_round", "gguf:q4_k_m"], out.path, ctx);
 * ```
 */
export function createExporters(
  formats: string[] | FormatSpec[],
  outDir: string,
  ctx: ExportContext,
): Exporter[] {
  const specs = formats.map((f) => (typeof f === "string" ? parseFormats(f)[0] : f));
  checkMultimodalFormats(specs, ctx.spec);
  return specs.map((f) => {
    const dir = specs.length === 1 ? outDir : join(outDir, formatDirName(f.name));
    try {
      Deno.mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw writeErrorOf(e, dir);
    }
    switch (f.kind) {
      case "auto_round":
        return new AutoRoundExporter(dir, ctx);
      case "auto_gptq":
        return new AutoGptqExporter(dir, ctx);
      case "auto_awq":
        return new AutoAwqExporter(dir, ctx);
      case "llm_compressor":
        return new LlmCompressorExporter(dir, ctx);
      case "fake":
        return new FakeExporter(dir, ctx);
      case "gguf":
        return new GgufExporter(dir, ctx, f.name);
    }
  });
}

/**
 * The formats that keep a VLM's vision tower 16-bit by construction: auto_round and auto_gptq name
 * the text blocks in `block_name_to_quantize` (spec/MODELS.md § 9.3), fake stores plain weights.
 * AWQ's and compressed-tensors' configs list what is *not* quantized. GGUF writes the text model
 * only (§ 9.4; the vision side would be a separate mmproj file, not written): families.ts
 * ggufFamilyWarnings says so, and refuses the VLMs whose text GGUF is not done.
 */
function checkMultimodalFormats(specs: FormatSpec[], spec: ModelSpec): void {
  const multimodal = spec.multimodal;
  if (multimodal && specs.some((f) => f.kind === "gguf")) ggufFamilyWarnings(spec); // throws if refused
  const bad = specs.filter((f) => !["auto_round", "auto_gptq", "fake", "gguf"].includes(f.kind));
  if (multimodal && bad.length) {
    throw new UnsupportedError(
      `format ${bad[0].name} is not supported for the vision-language model ${multimodal} ` +
        `(supported: auto_round, auto_gptq, fake; the vision tower is kept 16-bit)`,
    );
  }
}
