/**
 * The GGUF formats AutoRound exports (`gguf:q4_k_m`, …) as data, and the rule that gives each tensor
 * its GGML type. Sources (auto-round v0.15):
 * - schemes.py `GGUF_SCHEME_FACTS` (bits, group, sym, data type, super bits/group of each base type)
 *   and `GGUF_PRESET_ALIASES` (format name → base type);
 * - export/export_to_gguf/config.py `_GGUF_FORMAT_FIELDS` (type of the embedding and of the output
 *   head per base type);
 * - export/export_to_gguf/gguf_dtype.py `GGUFDTypeSelector.select_qtype` (llama.cpp's
 *   `llama_tensor_get_type` mixes from src/llama-quant.cpp, for dense models), plus llama-quant.cpp's
 *   rules for 8-expert models (Mixtral: attn_v/attn_k Q8_0, attn_output Q5_K) and fused attn_qkv (Phi-3);
 * - export/formats/backends/gguf.py `_select_gguf_layer_type` / `_gguf_type_fallback` and
 *   convert.py `prepare_tensors` (fallbacks when the input size is not a multiple of the block).
 */
import { GGML_TYPES, type GgmlTypeName } from "../../qmath/gguf/types.ts";
import { LLAMA_FILE_TYPES } from "./constants.ts";

/** A base GGUF scheme (schemes.py GGUF_SCHEME_FACTS). */
export interface GgufSchemeFacts {
  bits: number;
  groupSize: number;
  sym: boolean;
  dataType: "int" | "int_asym_float_zp" | "int_asym_dq" | "int_sym_dq";
  superBits?: number;
  superGroupSize?: number;
}

/** Base schemes by GGML type. */
export const GGUF_SCHEME_FACTS: Readonly<Record<string, GgufSchemeFacts>> = {
  Q4_0: { bits: 4, groupSize: 32, sym: true, dataType: "int" },
  Q4_1: { bits: 4, groupSize: 32, sym: false, dataType: "int_asym_float_zp" },
  Q5_0: { bits: 5, groupSize: 32, sym: true, dataType: "int" },
  Q5_1: { bits: 5, groupSize: 32, sym: false, dataType: "int_asym_float_zp" },
  Q8_0: { bits: 8, groupSize: 32, sym: true, dataType: "int" },
  Q2_K: { bits: 2, groupSize: 16, sym: false, dataType: "int_asym_dq", superBits: 4, superGroupSize: 16 },
  Q3_K: { bits: 3, groupSize: 16, sym: true, dataType: "int_sym_dq", superBits: 6, superGroupSize: 16 },
  Q4_K: { bits: 4, groupSize: 32, sym: false, dataType: "int_asym_dq", superBits: 6, superGroupSize: 8 },
  Q5_K: { bits: 5, groupSize: 32, sym: false, dataType: "int_asym_dq", superBits: 6, superGroupSize: 8 },
  Q6_K: { bits: 6, groupSize: 16, sym: true, dataType: "int_sym_dq", superBits: 8, superGroupSize: 16 },
};

/** One `gguf:<name>` format. */
export interface GgufFormat {
  /** Lower-case name after "gguf:", e.g. "q4_k_m". */
  name: string;
  /** The base ("mostly") type. */
  base: GgmlTypeName;
  /** `general.file_type` (llama.cpp LlamaFileType). */
  fileType: number;
  /** File type name, e.g. "Q4_K_M". */
  fileTypeName: string;
  /** Type of token_embd when the output head is separate, and of the output head / tied embedding. */
  embedding: GgmlTypeName;
  lmHead: GgmlTypeName;
}

/** config.py _GGUF_FORMAT_FIELDS: (embedding, lm_head) per base type. */
const FORMAT_FIELDS: Record<string, [GgmlTypeName, GgmlTypeName]> = {
  Q4_0: ["Q4_0", "Q6_K"],
  Q4_1: ["Q4_1", "Q6_K"],
  Q5_0: ["Q5_0", "Q6_K"],
  Q5_1: ["Q5_1", "Q6_K"],
  Q8_0: ["Q8_0", "Q8_0"],
  Q2_K: ["Q2_K", "Q6_K"],
  Q3_K: ["Q3_K", "Q6_K"],
  Q4_K: ["Q4_K", "Q6_K"],
  Q5_K: ["Q5_K", "Q6_K"],
  Q6_K: ["Q6_K", "Q6_K"],
  F32: ["F32", "F32"],
  F16: ["F16", "F16"],
  BF16: ["BF16", "BF16"],
  // Not an auto-round format: MXFP4 Linears stored as quantized (SCHEMES.md § 10.9); embeddings 16-bit.
  MXFP4: ["F16", "F16"],
};

/** schemes.py GGUF_PRESET_ALIASES (without the MoE-only q2_k_mixed) and their llama.cpp file types. */
const ALIASES: Record<string, [GgmlTypeName, string]> = {
  q4_0: ["Q4_0", "MOSTLY_Q4_0"],
  q4_1: ["Q4_1", "MOSTLY_Q4_1"],
  q5_0: ["Q5_0", "MOSTLY_Q5_0"],
  q5_1: ["Q5_1", "MOSTLY_Q5_1"],
  q8_0: ["Q8_0", "MOSTLY_Q8_0"],
  q2_k_s: ["Q2_K", "MOSTLY_Q2_K_S"],
  q3_k_s: ["Q3_K", "MOSTLY_Q3_K_S"],
  q3_k_m: ["Q3_K", "MOSTLY_Q3_K_M"],
  q3_k_l: ["Q3_K", "MOSTLY_Q3_K_L"],
  q4_k_s: ["Q4_K", "MOSTLY_Q4_K_S"],
  q4_k_m: ["Q4_K", "MOSTLY_Q4_K_M"],
  q5_k_s: ["Q5_K", "MOSTLY_Q5_K_S"],
  q5_k_m: ["Q5_K", "MOSTLY_Q5_K_M"],
  q6_k: ["Q6_K", "MOSTLY_Q6_K"],
  q6_k_s: ["Q6_K", "MOSTLY_Q6_K"], // "Please note that q6_k_s is q6_k." (backends/gguf.py)
  // Plain conversions, as llama.cpp's convert_hf_to_gguf.py --outtype f32/f16/bf16 writes them: every
  // 2-D weight (Linears, token_embd, output) in the type, norms and 1-D tensors F32
  // (conversion/base.py prepare_tensors); input for llama-quantize. Not auto-round formats.
  f32: ["F32", "ALL_F32"],
  f16: ["F16", "MOSTLY_F16"],
  bf16: ["BF16", "MOSTLY_BF16"],
  // The run's MXFP4 weights in ggml's MXFP4 blocks (no requantization; llama.cpp's file type for it).
  mxfp4: ["MXFP4", "MOSTLY_MXFP4_MOE"],
};

/** Whether a format is a plain float conversion (gguf:f32, gguf:f16, gguf:bf16): nothing is quantized. */
export function isFloatGguf(f: GgufFormat): boolean {
  return f.base === "F32" || f.base === "F16" || f.base === "BF16";
}

/** Every accepted `gguf:` name. */
export const GGUF_FORMAT_NAMES: readonly string[] = Object.keys(ALIASES);

/** The format for a name ("q4_k_m" or "gguf:q4_k_m"), or undefined. */
export function ggufFormat(name: string): GgufFormat | undefined {
  const key = name.toLowerCase().replace(/^gguf:/, "");
  const hit = Object.hasOwn(ALIASES, key) ? ALIASES[key] : undefined;
  if (!hit) return undefined;
  const [base, ft] = hit;
  const [embedding, lmHead] = FORMAT_FIELDS[base];
  return {
    name: key,
    base,
    fileType: LLAMA_FILE_TYPES[ft],
    fileTypeName: ft.replace(/^(MOSTLY|ALL)_/, ""),
    embedding,
    lmHead,
  };
}

/** llama-quant.cpp use_more_bits (via gguf_dtype.py `_use_more_bits`). */
function useMoreBits(i: number, n: number): boolean {
  return i < Math.trunc(n / 8) || i >= Math.trunc((7 * n) / 8) || (i - Math.trunc(n / 8)) % 3 === 2;
}

/** backends/gguf.py _gguf_type_fallback: the type used when the input size is not a multiple of 256. */
export function kQuantFallback(t: GgmlTypeName): GgmlTypeName {
  if (t === "Q2_K" || t === "Q3_K" || t === "Q4_K" || t === "Q5_K") return "Q5_0";
  if (t === "Q6_K") return "Q8_0";
  return t;
}

/**
 * Fit a type to an input size `k`: the K-quant fallback when k is not a multiple of its block, and
 * F16 when the fallback does not fit either (convert.py: "fallback to F16").
 */
export function fitToInput(t: GgmlTypeName, k: number): GgmlTypeName {
  if (k % GGML_TYPES[t].blockSize === 0) return t;
  const f = kQuantFallback(t);
  return k % GGML_TYPES[f].blockSize === 0 ? f : "F16";
}

/** The model facts the type mixes look at. */
export interface MixModel {
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  tied: boolean;
  /** Routed experts per MoE layer (0 or absent: dense). */
  nExpert?: number;
}

/**
 * Per-tensor type choice for one export (GGUFDTypeSelector plus AutoRound's cascade). Stateful like
 * the original: attn_v tensors must be asked for in model order (it counts them).
 *
 * @example
 * ```ts
 * const sel = new GgufTypeSelector(ggufFormat("q4_k_m")!, { nLayers: 5, nHeads: 8, nKvHeads: 4, tied: true });
 * sel.linear("blk.0.attn_v.weight", 0, 64); // "Q8_0" (Q6_K, which 64 inputs cannot hold)
 * ```
 */
export class GgufTypeSelector {
  #iAttnV = 0;
  /** Number of attn_v tensors that are quantized (n_attention_wv). */
  nAttnV: number;

  constructor(readonly format: GgufFormat, readonly model: MixModel, nAttnV = model.nLayers) {
    this.nAttnV = nAttnV;
  }

  /** GGUFDTypeSelector.select_qtype for a block weight named `ggufName` of layer `layer`. */
  selectQtype(ggufName: string, layer: number): GgmlTypeName {
    const ft = this.format.fileTypeName;
    const n = this.model.nLayers;
    const nGqa = Math.max(1, Math.trunc(this.model.nHeads / this.model.nKvHeads));
    let t: GgmlTypeName = this.format.base;
    // Only quantized files get llama-quant.cpp's mixes (float conversions keep every weight's type).
    const eight = this.model.nExpert === 8 && Object.hasOwn(GGUF_SCHEME_FACTS, this.format.base);
    if (/attn_v\.weight$/.test(ggufName)) {
      const i = this.#iAttnV++;
      if (ft === "Q2_K_S" && nGqa >= 4) t = "Q4_K";
      else if (ft === "Q3_K_M") t = i < 2 ? "Q5_K" : "Q4_K";
      else if (ft === "Q3_K_L") t = "Q5_K";
      else if ((ft === "Q4_K_M" || ft === "Q5_K_M") && useMoreBits(i, this.nAttnV || n)) t = "Q6_K";
      else if (ft === "Q4_K_S" && i < 4) t = "Q5_K";
      // llama-quant.cpp: "for the 8-expert model, bumping this to Q8_0 trades just ~128MB" (Mixtral).
      if (eight) t = "Q8_0";
    } else if (/attn_k\.weight$/.test(ggufName)) {
      if (eight) t = "Q8_0";
    } else if (/ffn_down/.test(ggufName)) {
      const i = layer;
      if (ft === "Q2_K_S" && i < Math.trunc(n / 8)) t = "Q4_K";
      else if (ft === "Q3_K_M") t = i < Math.trunc(n / 16) ? "Q5_K" : "Q4_K"; // non-Falcon branch
      else if (ft === "Q3_K_L") t = "Q5_K";
      else if (ft === "Q4_K_M" && useMoreBits(i, n)) t = "Q6_K";
      else if (ft === "Q5_K_M" && useMoreBits(i, n)) t = "Q6_K";
      else if (ft === "Q4_K_S" && i < Math.trunc(n / 8)) t = "Q5_K";
    } else if (/attn_output\.weight$/.test(ggufName)) {
      if (eight) {
        if (["Q3_K_S", "Q3_K_M", "Q4_K_S", "Q4_K_M"].includes(ft)) t = "Q5_K";
      } else if (ft === "Q3_K_M") t = "Q4_K";
      else if (ft === "Q3_K_L") t = "Q5_K";
    } else if (/attn_qkv\.weight$/.test(ggufName)) {
      // Fused qkv (Phi-3): llama-quant.cpp ATTENTION_QKV.
      if (ft === "Q3_K_M" || ft === "Q3_K_L") t = "Q4_K";
      else if (ft === "Q4_K_M") t = "Q5_K";
      else if (ft === "Q5_K_M") t = "Q6_K";
    }
    return t;
  }

  /**
   * The type of a block Linear (q/k/v/o/gate/up/down) with `k` inputs. `userBits` is a
   * `--layer_config` bits override (16 keeps the tensor in F16).
   */
  linear(ggufName: string, layer: number, k: number, userBits?: number): GgmlTypeName {
    if (userBits !== undefined && userBits >= 16) return "F16";
    let t: GgmlTypeName;
    if (userBits !== undefined) {
      // AutoRound does not consult the selector for user-fixed layers (no attn_v count either).
      t = typeForBits(this.format.base, userBits);
    } else {
      t = this.selectQtype(ggufName, layer);
    }
    return fitToInput(t, k);
  }

  /** token_embd: the lm_head type when tied to the output head, else the embedding type. */
  embedding(k: number): GgmlTypeName {
    return fitToInput(this.model.tied ? this.format.lmHead : this.format.embedding, k);
  }

  /** A separate output head (Q8_0 when the input size does not fit the base type's block). */
  lmHead(k: number): GgmlTypeName {
    const t = k % GGML_TYPES[this.format.base].blockSize !== 0 ? "Q8_0" : this.format.lmHead;
    return fitToInput(t, k);
  }
}

/**
 * backends/gguf.py `_search_gguf_type` for a bits override: the base type with its digit replaced
 * ("gguf:q4_k" with 6 bits → Q6_K), trying the _k, _0 and _1 variants when that type does not exist.
 */
export function typeForBits(base: GgmlTypeName, bits: number): GgmlTypeName {
  const suffix = base.slice(2); // "_K", "_0", "_1"
  const candidates = [`Q${bits}${suffix}`, `Q${bits}_K`, `Q${bits}_0`, `Q${bits}_1`];
  for (const c of candidates) if (c in GGUF_SCHEME_FACTS) return c as GgmlTypeName;
  return bits >= 8 ? "Q8_0" : "F16";
}
