/**
 * config.json → a description of a Llama-family decoder (Llama incl. llama3 rope scaling, Mistral,
 * Qwen2, Qwen3, the families of families.ts, and the text decoder of the vision-language checkpoints
 * of multimodal.ts). Architectures are data: each entry of ARCHITECTURES says which optional parts a
 * family has; adding a family is a table row, not a new forward pass.
 */
import { FormatError, quote, UnsupportedError } from "../errors.ts";
import { type FamilyParts, type LayerKind, parseFamily } from "./families.ts";
import { decoderConfig, type TextTower, vlmGgufArch } from "./multimodal.ts";

/** Optional parts that distinguish the supported families. */
export interface ArchTraits {
  /** Bias on q/k/v projections (Qwen2). */
  qkvBias: boolean;
  /** RMSNorm over head_dim on q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** GGUF `general.architecture` name. */
  ggufArch: string;
  /** q/k/v bias read from config `qkv_bias` (Qwen2-MoE) instead of always on. */
  qkvBiasFlag?: boolean;
}

/** Supported `model_type` values. */
export const ARCHITECTURES: Readonly<Record<string, ArchTraits>> = {
  llama: { qkvBias: false, qkNorm: false, ggufArch: "llama" },
  mistral: { qkvBias: false, qkNorm: false, ggufArch: "llama" },
  qwen2: { qkvBias: true, qkNorm: false, ggufArch: "qwen2" },
  qwen3: { qkvBias: false, qkNorm: true, ggufArch: "qwen3" },
  qwen2_moe: { qkvBias: true, qkNorm: false, ggufArch: "qwen2moe", qkvBiasFlag: true },
  qwen3_moe: { qkvBias: false, qkNorm: true, ggufArch: "qwen3moe" },
  mixtral: { qkvBias: false, qkNorm: false, ggufArch: "llama" },
  gemma2: { qkvBias: false, qkNorm: false, ggufArch: "gemma2" },
  gemma3_text: { qkvBias: false, qkNorm: true, ggufArch: "gemma3" },
  phi3: { qkvBias: false, qkNorm: false, ggufArch: "phi3" },
};

/** RoPE frequency scaling as transformers implements it. */
export type RopeScaling =
  | { type: "none" }
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositions: number;
  }
  | {
    /** Phi-3 LongRoPE: per-frequency factors, long ones when the sequence exceeds the original length. */
    type: "longrope";
    shortFactor: number[];
    longFactor: number[];
    originalMaxPositions: number;
    /** Multiplies cos and sin (transformers `attention_factor`). */
    attentionFactor: number;
  };

/**
 * Everything the forward pass needs to know about a checkpoint's architecture; for a
 * vision-language checkpoint, about its text decoder (TextTower says where its tensors are).
 */
export interface ModelSpec extends Partial<FamilyParts>, TextTower {
  modelType: string;
  /** `architectures[0]` of config.json, e.g. "LlamaForCausalLM". */
  architecture: string;
  traits: ArchTraits;
  hidden: number;
  intermediate: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocab: number;
  maxPositions: number;
  rmsEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  tieEmbeddings: boolean;
  /**
   * Sliding-window size when the config enables one: applied to every layer, or to the layers
   * `layerTypes` marks "sliding".
   */
  slidingWindow?: number;
  /** Checkpoint dtype from config (`torch_dtype` / `dtype`). */
  torchDtype: "float32" | "float16" | "bfloat16";
  bosTokenId?: number;
  eosTokenIds: number[];
  padTokenId?: number;
}

/** The seven Linear layers of a dense Llama-family block, in execution order (see blockLinears). */
export const BLOCK_LINEARS = [
  "self_attn.q_proj",
  "self_attn.k_proj",
  "self_attn.v_proj",
  "self_attn.o_proj",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
] as const;
/** A Linear's name relative to its block prefix, e.g. `self_attn.q_proj`, `mlp.experts.3.up_proj`. */
export type LinearName = string;

/** Name prefix of block i's tensors: `model.layers.3.` (`language_model.model.layers.3.` in Gemma 3). */
export function blockPrefix(i: number, tower: TextTower): string {
  return `${tower.textPrefix}layers.${i}.`;
}

/**
 * AutoRound's `to_standard_regex`: a layer-name pattern as a regex (plain text → substring match;
 * `.*`, `^`, `$`, … kept). Used by `--layer_config` and by GPTQ's `dynamic` keys.
 */
export function toStandardRegex(pattern: string): string {
  const meta = [".*", "^", "$", "|", "(", ")", "[", "]", "?", "+"];
  if (!meta.some((m) => pattern.includes(m))) {
    return `.*${pattern.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}.*`;
  }
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    if (pattern[i] === ".") {
      if (pattern[i + 1] === "*") {
        out += ".*";
        i++;
      } else out += "\\.";
    } else out += pattern[i];
  }
  if (!out.startsWith("^") && !out.startsWith(".*")) out = ".*" + out;
  if (!out.endsWith("$") && !out.endsWith(".*")) out = out + ".*";
  return out;
}

function num(cfg: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = cfg[key];
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(`config.json has no numeric "${key}"`, file);
  }
  throw new FormatError(`config.json field "${key}" is ${quote(v)}, expected a number`, file);
}

/**
 * Largest size a config may give a dimension, and the most layers: far above any real model (hidden
 * 16384, vocabulary 262144, context 10M, 126 layers), low enough that a config claiming more is
 * refused before anything is allocated or looped over from it.
 */
export const MAX_DIMENSION = 2 ** 24;
export const MAX_LAYERS = 4096;

/** A size field: a positive integer no larger than `max`. */
function size(
  cfg: Record<string, unknown>,
  key: string,
  file: string,
  fallback?: number,
  max = MAX_DIMENSION,
): number {
  const v = num(cfg, key, file, fallback);
  if (!Number.isInteger(v) || v < 1 || v > max) {
    throw new FormatError(
      `config.json field "${key}" is ${quote(v)}, expected an integer from 1 to ${max}`,
      file,
    );
  }
  return v;
}

/** A field that must be a finite number above zero (a frequency base, a factor). */
function positive(cfg: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = num(cfg, key, file, fallback);
  if (!(v > 0)) {
    throw new FormatError(`config.json field "${key}" is ${quote(v)}, expected a number > 0`, file);
  }
  return v;
}

function ids(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

function factors(r: Record<string, unknown>, key: string, n: number, file: string): number[] {
  const v = r[key];
  if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== "number" || !(x > 0))) {
    throw new FormatError(`rope_scaling.${key} must be ${n} positive numbers`, file);
  }
  return v as number[];
}

function parseRopeScaling(
  raw: unknown,
  file: string,
  root: Record<string, unknown> = {},
  rotaryHalf = 0,
): RopeScaling {
  if (raw === undefined || raw === null) return { type: "none" };
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new FormatError(`rope_scaling must be an object`, file);
  }
  const r = raw as Record<string, unknown>;
  const type = typeof (r.rope_type ?? r.type) === "string" ? String(r.rope_type ?? r.type) : "default";
  if (type === "default" || type === "mrope") return { type: "none" }; // mrope: text-only = 1-D RoPE
  if (type === "longrope" || type === "su") {
    const orig = size({ ...root, ...r }, "original_max_position_embeddings", file);
    const factor = typeof r.factor === "number"
      ? r.factor
      : size(root, "max_position_embeddings", file) / orig;
    const attentionFactor = typeof r.attention_factor === "number"
      ? r.attention_factor
      : factor <= 1
      ? 1
      : Math.sqrt(1 + Math.log(factor) / Math.log(orig));
    return {
      type: "longrope",
      shortFactor: factors(r, "short_factor", rotaryHalf, file),
      longFactor: factors(r, "long_factor", rotaryHalf, file),
      originalMaxPositions: orig,
      attentionFactor,
    };
  }
  if (type === "linear") return { type: "linear", factor: positive(r, "factor", file) };
  if (type === "llama3") {
    return {
      type: "llama3",
      factor: positive(r, "factor", file),
      lowFreqFactor: positive(r, "low_freq_factor", file),
      highFreqFactor: positive(r, "high_freq_factor", file),
      originalMaxPositions: size(r, "original_max_position_embeddings", file),
    };
  }
  throw new UnsupportedError(
    `rope_scaling type ${quote(type)} is not supported (supported: default, linear, llama3, longrope)`,
    file,
  );
}

/**
 * Parse a config.json object. `file` is only used in error messages. A vision-language config
 * gives its text decoder's spec (multimodal.ts), with the legacy tensor layout: openCheckpoint
 * re-locates it from the checkpoint's names.
 *
 * @example
 * ```ts
 * const spec = parseModelConfig(JSON.parse(await Deno.readTextFile("m/config.json")), "m/config.json");
 * ```
 */
export function parseModelConfig(root: Record<string, unknown>, file: string): ModelSpec {
  const { cfg, tower } = decoderConfig(root, file);
  const modelType = typeof cfg.model_type === "string" ? cfg.model_type : "";
  const traits = Object.hasOwn(ARCHITECTURES, modelType) ? ARCHITECTURES[modelType] : undefined;
  if (!traits) {
    throw new UnsupportedError(
      `unsupported architecture model_type ${quote(cfg.model_type ?? "")} (supported: ${
        Object.keys(ARCHITECTURES).join(", ")
      })`,
      file,
    );
  }
  const hidden = size(cfg, "hidden_size", file);
  const nHeads = size(cfg, "num_attention_heads", file);
  const nKvHeads = size(cfg, "num_key_value_heads", file, nHeads);
  const headDim = num(cfg, "head_dim", file, hidden / nHeads);
  if (!Number.isInteger(headDim) || headDim % 2 !== 0 || headDim < 2 || headDim > MAX_DIMENSION) {
    throw new FormatError(`head_dim ${headDim} must be an even integer`, file);
  }
  if (nHeads % nKvHeads !== 0) {
    throw new FormatError(
      `num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`,
      file,
    );
  }
  const qkvBias = traits.qkvBiasFlag ? cfg.qkv_bias !== false : traits.qkvBias;
  if (cfg.attention_bias === true && !qkvBias) {
    throw new UnsupportedError(`attention_bias=true is not supported for model_type ${modelType}`, file);
  }
  if (cfg.mlp_bias === true) throw new UnsupportedError(`mlp_bias=true is not supported`, file);
  const dtypeRaw = cfg.torch_dtype ?? cfg.dtype;
  const torchDtype = dtypeRaw === "bfloat16" || dtypeRaw === "float16" ? dtypeRaw : "float32";
  const useSliding = cfg.use_sliding_window === undefined ? true : cfg.use_sliding_window === true;
  const sliding = typeof cfg.sliding_window === "number" && cfg.sliding_window > 0 && useSliding
    ? cfg.sliding_window
    : undefined;
  // transformers ≥ 5 writes `rope_parameters: {rope_theta, rope_type, ...}` instead of the old keys.
  // Gemma 3 nests them per layer kind: the global layers' go to ropeTheta/ropeScaling.
  const rpAll = typeof cfg.rope_parameters === "object" && cfg.rope_parameters !== null
    ? cfg.rope_parameters as Record<string, unknown>
    : undefined;
  const ropeParams = typeof rpAll?.full_attention === "object"
    ? rpAll.full_attention as Record<string, unknown>
    : rpAll;
  const nLayers = size(cfg, "num_hidden_layers", file, undefined, MAX_LAYERS);
  const family = parseFamily(cfg, modelType, file, { hidden, headDim, nLayers, torchDtype });
  const rotaryHalf = (family.rotaryDim ?? headDim) / 2;
  let layerTypes: LayerKind[] | undefined = family.layerTypes;
  if (!layerTypes && sliding !== undefined && Array.isArray(cfg.layer_types)) {
    layerTypes = cfg.layer_types.map((t) => t === "sliding_attention" ? "sliding" : "full");
    if (layerTypes.length !== nLayers) {
      throw new FormatError(`layer_types has ${layerTypes.length} entries for ${nLayers} layers`, file);
    }
  }
  const arch = Array.isArray(cfg.architectures) && typeof cfg.architectures[0] === "string"
    ? cfg.architectures[0]
    : "";
  return {
    ...family,
    ...tower,
    layerTypes,
    modelType,
    architecture: arch,
    traits: { ...traits, qkvBias, ggufArch: vlmGgufArch(tower) ?? traits.ggufArch },
    hidden,
    intermediate: size(cfg, "intermediate_size", file),
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocab: size(cfg, "vocab_size", file),
    maxPositions: size(cfg, "max_position_embeddings", file, 2048),
    rmsEps: num(cfg, "rms_norm_eps", file, 1e-6),
    ropeTheta: positive(
      cfg,
      "rope_theta",
      file,
      typeof ropeParams?.rope_theta === "number" ? ropeParams.rope_theta : 10000,
    ),
    ropeScaling: parseRopeScaling(cfg.rope_scaling ?? ropeParams, file, cfg, rotaryHalf),
    tieEmbeddings: cfg.tie_word_embeddings === true,
    slidingWindow: sliding,
    torchDtype,
    bosTokenId: typeof cfg.bos_token_id === "number" ? cfg.bos_token_id : undefined,
    eosTokenIds: ids(cfg.eos_token_id),
    padTokenId: typeof cfg.pad_token_id === "number" ? cfg.pad_token_id : undefined,
  };
}
