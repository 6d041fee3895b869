/**
 * The layout of AutoScheme's result (spec/AUTOSCHEME.md § 4.6): the GGUF fallback applied to the
 * chosen layer config (auto-round gen_auto_scheme.py:206-249) and the `extra_config` entries the
 * auto_round exporter writes (export/export_to_autoround/export.py:304-330).
 */
import { kQuantFallback } from "../../formats/gguf/presets.ts";
import type { GgmlTypeName } from "../../qmath/gguf/types.ts";
import { ggufFields, SCHEME_FIELD_NAMES, type SchemeFields } from "./fields.ts";

/** GGUF_INNER_CONFIG keys: the fields a fallback overwrites (export_to_gguf/config.py:41-43). */
const GGUF_KEYS: readonly (keyof SchemeFields)[] = [
  "bits",
  "act_bits",
  "group_size",
  "sym",
  "data_type",
  "super_bits",
  "super_group_size",
];

/** Base types with a GGUF_INNER_CONFIG entry (schemes.py GGUF_SCHEME_FACTS). */
const INNER = new Set(["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]);

/**
 * `fallback_gguf_layer_config` (gen:206-249): for an entry with `super_bits` whose layer is not an
 * embedding and whose input size is not a multiple of 256: input not a multiple of 32 → gguf:bf16;
 * else gguf:q{bits}_0 (sym) / _1 (asym), the other suffix if missing, else the K-quant fallback
 * (q2_k…q5_k → q5_0, q6_k → q8_0). The keys present in both the entry and GGUF_INNER_CONFIG are
 * overwritten. The budget is not re-checked (§ 7.12: a Q2_K layer can become q5_0). Returns the
 * GGUF type each changed layer fell back to (the reference logs "Fallback applied").
 */
export function applyGgufFallback(
  config: Map<string, Partial<SchemeFields>>,
  inFeatures: ReadonlyMap<string, number>,
  embeddings: ReadonlySet<string>,
): Map<string, string> {
  const changed = new Map<string, string>();
  for (const [name, entry] of config) {
    if (entry.super_bits === undefined || entry.super_bits === null) continue;
    const k = inFeatures.get(name);
    if (k === undefined || k % 256 === 0 || embeddings.has(name)) continue;
    let base: string;
    if (k % 32 !== 0) base = "BF16";
    else {
      const bits = entry.bits ?? 16;
      base = `Q${bits}_${entry.sym ? 0 : 1}`;
      if (!INNER.has(base)) {
        base = `Q${bits}_${entry.sym ? 1 : 0}`;
        if (!INNER.has(base)) base = kQuantFallback(`Q${bits}_K` as GgmlTypeName);
      }
    }
    const target = ggufFields(base);
    const e = entry as Record<string, unknown>;
    for (const key of GGUF_KEYS) if (key in entry) e[key] = target[key];
    changed.set(name, `gguf:${base.toLowerCase()}`);
  }
  return changed;
}

/**
 * `extra_config` of the auto_round export (§ 4.6): a layer inside a block gets its non-null fields
 * that differ from the global ones (the default option's, § 1.2), none when nothing differs; a
 * layer outside the blocks with bits ≤ 8 (the lm_head) gets all 12 fields; others get nothing.
 * (Global fields here are the default option's raw fields; the reference compares with its
 * quantization_config, which the compressor fills from the same default scheme.)
 */
export function extraConfig(
  config: ReadonlyMap<string, Partial<SchemeFields>>,
  global: SchemeFields,
  blocks: readonly string[],
): Map<string, Partial<SchemeFields>> {
  const out = new Map<string, Partial<SchemeFields>>();
  for (const [name, cfg] of config) {
    const inBlock = blocks.some((b) => name.startsWith(b + "."));
    const c = cfg as Record<string, unknown>;
    if (!inBlock) {
      if ((cfg.bits ?? 16) <= 8) {
        const all: Record<string, unknown> = {};
        for (const key of SCHEME_FIELD_NAMES) all[key] = c[key] ?? null;
        out.set(name, all as Partial<SchemeFields>);
      }
      continue;
    }
    const diff: Record<string, unknown> = {};
    for (const key of SCHEME_FIELD_NAMES) {
      const v = c[key] ?? null;
      if (v !== global[key] && v !== null) diff[key] = v;
    }
    if (Object.keys(diff).length) out.set(name, diff as Partial<SchemeFields>);
  }
  return out;
}
