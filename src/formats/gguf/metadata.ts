/**
 * GGUF metadata for a Llama-family model: general keys, the architecture hyperparameters and the
 * tokenizer, as llama.cpp's `convert_hf_to_gguf.py` writes them (TextModel/LlamaModel
 * `set_gguf_parameters`, `_set_vocab_llama_hf`, `_set_vocab_gpt2`; gguf-py `vocab.py` SpecialVocab and
 * LlamaHfVocab; key names from gguf-py `constants.py` Keys). Value types are the ones gguf-py uses:
 * llama.cpp reads them with strict type checks. {@link ggufModelConfig} reads the architecture keys
 * back into a config.json object.
 */
import { FormatError, quote, UnsupportedError } from "../../errors.ts";
import { TokenType } from "./constants.ts";
import type { GgufFile } from "./file.ts";
import { type GgufMetaValue, meta } from "./writer.ts";
import type { ModelSpec } from "../../model/config.ts";
import { join } from "../../std/path.ts";
import type { GgufFormat } from "./presets.ts";
import { familyConfig, familyMetadata, hfFamilyOf } from "./families.ts";

/** gguf-py GGML_QUANT_VERSION. */
const QUANT_VERSION = 2;

type Json = Record<string, unknown>;

async function readJsonOr(path: string): Promise<Json | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as Json;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new FormatError(`not valid JSON: ${(e as Error).message}`, path);
  }
}

/** What the tokenizer keys need of a tokenizer (io/tokenizer.ts `Tokenizer` is one). */
export interface GgufVocabSource {
  /** Pieces in id order. */
  vocab(): string[];
  merges(): string[];
  addedTokens(): { id: number; special: boolean }[];
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  readonly padTokenId?: number;
  readonly unkTokenId?: number;
  readonly chatTemplate?: string;
}

/** The architecture keys (`{arch}.*`). */
export function architectureMetadata(spec: ModelSpec): [string, GgufMetaValue][] {
  const a = spec.traits.ggufArch;
  const kv: [string, GgufMetaValue][] = [
    [`${a}.block_count`, meta.u32(spec.nLayers)],
    [`${a}.context_length`, meta.u32(spec.maxPositions)],
    [`${a}.embedding_length`, meta.u32(spec.hidden)],
    [`${a}.feed_forward_length`, meta.u32(spec.intermediate)],
    [`${a}.attention.head_count`, meta.u32(spec.nHeads)],
    [`${a}.attention.head_count_kv`, meta.u32(spec.nKvHeads)],
    [`${a}.rope.freq_base`, meta.f32(spec.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, meta.f32(spec.rmsEps)],
    [`${a}.attention.key_length`, meta.u32(spec.headDim)],
    [`${a}.attention.value_length`, meta.u32(spec.headDim)],
  ];
  if (a === "llama") {
    // LlamaModel.set_gguf_parameters: vocab size and the RoPE dimension (head_dim).
    kv.push([`${a}.vocab_size`, meta.u32(spec.vocab)]);
    kv.push([`${a}.rope.dimension_count`, meta.u32(spec.headDim)]);
  }
  if (spec.ropeScaling.type === "linear") {
    kv.push([`${a}.rope.scaling.type`, meta.str("linear")]);
    kv.push([`${a}.rope.scaling.factor`, meta.f32(spec.ropeScaling.factor)]);
  }
  return [...kv, ...familyMetadata(spec)];
}

/**
 * LlamaModel.generate_extra_tensors: the `rope_freqs` factors for Llama 3 RoPE scaling (llama.cpp
 * applies them instead of reading rope_scaling), one per rotated pair; undefined otherwise.
 */
export function llama3RopeFactors(spec: ModelSpec): Float32Array | undefined {
  const r = spec.ropeScaling;
  if (r.type !== "llama3") return undefined;
  const dim = spec.headDim;
  const lowWavelen = r.originalMaxPositions / r.lowFreqFactor;
  const highWavelen = r.originalMaxPositions / r.highFreqFactor;
  const out = new Float32Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const freq = 1 / spec.ropeTheta ** ((2 * i) / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) out[i] = 1;
    else if (wavelen > lowWavelen) out[i] = r.factor;
    else {
      const smooth = (r.originalMaxPositions / wavelen - r.lowFreqFactor) /
        (r.highFreqFactor - r.lowFreqFactor);
      out[i] = 1 / ((1 - smooth) / r.factor + smooth);
    }
  }
  return out;
}

/**
 * Token scores for the "llama" (sentencepiece-style) vocabulary of a BPE tokenizer.json: llama.cpp's
 * SPM tokenizer repeatedly merges the adjacent pair whose merged piece has the highest score, so a
 * piece gets minus the rank of the first merge that produces it, which replays the BPE merge order.
 * Pieces no merge produces get −1000 (LlamaHfVocab's default score).
 */
export function scoresFromMerges(vocab: string[], merges: string[]): number[] {
  const id = new Map(vocab.map((t, i) => [t, i]));
  const scores = new Array<number>(vocab.length).fill(-1000);
  const seen = new Set<number>();
  merges.forEach((m, rank) => {
    const sp = m.indexOf(" ");
    const t = id.get(m.slice(0, sp) + m.slice(sp + 1));
    if (t !== undefined && !seen.has(t)) {
      seen.add(t);
      scores[t] = -rank;
    }
  });
  return scores;
}

/** Pre-tokenizer name llama.cpp knows for a byte-level BPE tokenizer of this architecture. */
function preTokenizerName(modelType: string, vocab: string[]): string {
  if (modelType === "qwen2" || modelType === "qwen3") return "qwen2";
  // Llama 3 tokenizers (convert_hf_to_gguf.py get_vocab_base_pre: "llama-bpe").
  if (vocab.includes("<|begin_of_text|>")) return "llama-bpe";
  return "default";
}

/**
 * The tokenizer keys. "llama" for sentencepiece-style BPE (byte fallback, ▁ for spaces: LlamaHfVocab
 * conditions) with scores and token types; "gpt2" for byte-level BPE with merges and a pre-tokenizer.
 * `openTokenizer` loads the folder's tokenizer (io/tokenizer.ts `Tokenizer.fromDir`).
 */
export async function tokenizerMetadata(
  sourceDir: string,
  spec: ModelSpec,
  openTokenizer: (dir: string) => Promise<GgufVocabSource>,
): Promise<[string, GgufMetaValue][]> {
  const tj = await readJsonOr(join(sourceDir, "tokenizer.json"));
  if (!tj) return [];
  const tok = await openTokenizer(sourceDir);
  const cfg = (await readJsonOr(join(sourceDir, "tokenizer_config.json"))) ?? {};
  const model = (tj.model ?? {}) as Json;
  const decoder = (tj.decoder ?? {}) as Json;
  const isSpm = model.type === "BPE" && model.byte_fallback === true && decoder.type === "Sequence";
  const isGpt2 = model.type === "BPE" && !model.byte_fallback && decoder.type === "ByteLevel";
  if (!isSpm && !isGpt2) {
    throw new FormatError(
      `tokenizer model ${quote(model.type)} (decoder ${
        quote(decoder.type)
      }) has no GGUF vocabulary mapping ` +
        `(sentencepiece-style BPE and byte-level BPE do)`,
      join(sourceDir, "tokenizer.json"),
    );
  }
  // Pad to the embedding's rows like the converter ([PAD<id>], USER_DEFINED).
  const vocab = tok.vocab();
  const n = Math.max(spec.vocab, vocab.length);
  const tokens: string[] = [], types: number[] = [];
  const added = new Map(tok.addedTokens().map((t) => [t.id, t]));
  for (let i = 0; i < n; i++) {
    const t = i < vocab.length ? vocab[i] : undefined;
    if (t === undefined || t.startsWith("[PAD")) {
      tokens.push(`[PAD${i}]`);
      types.push(TokenType.USER_DEFINED);
      continue;
    }
    tokens.push(t);
    const a = added.get(i);
    if (isSpm && /^<0x[0-9A-Fa-f]{2}>$/.test(t)) types.push(TokenType.BYTE);
    else if (i === tok.unkTokenId && isSpm) types.push(TokenType.UNKNOWN);
    else if (a?.special) types.push(TokenType.CONTROL);
    else if (a) types.push(TokenType.USER_DEFINED);
    else types.push(TokenType.NORMAL);
  }
  const kv: [string, GgufMetaValue][] = [
    ["tokenizer.ggml.model", meta.str(isSpm ? "llama" : "gpt2")],
  ];
  if (isGpt2) kv.push(["tokenizer.ggml.pre", meta.str(preTokenizerName(spec.modelType, vocab))]);
  kv.push(["tokenizer.ggml.tokens", meta.strs(tokens)]);
  if (isSpm) kv.push(["tokenizer.ggml.scores", meta.f32s(scoresFromMerges(tokens, tok.merges()))]);
  // Gemma2/Gemma3: _set_vocab_sentencepiece then add_add_space_prefix(False) (conversion/gemma.py).
  const gemma = spec.traits.ggufArch === "gemma2" || spec.traits.ggufArch === "gemma3";
  if (isSpm && gemma) kv.push(["tokenizer.ggml.add_space_prefix", meta.bool(false)]);
  kv.push(["tokenizer.ggml.token_type", meta.i32s(types)]);
  if (isGpt2) kv.push(["tokenizer.ggml.merges", meta.strs(tok.merges())]);

  // SpecialVocab: ids from tokenizer_config's tokens, then config.json's *_token_id.
  const special: [string, number | undefined][] = [
    ["bos", tok.bosTokenId ?? spec.bosTokenId],
    ["eos", tok.eosTokenId ?? spec.eosTokenIds[0]],
    ["unknown", tok.unkTokenId],
    ["padding", tok.padTokenId ?? spec.padTokenId],
  ];
  for (const [name, id] of special) {
    if (id !== undefined && id >= 0 && id < n) kv.push([`tokenizer.ggml.${name}_token_id`, meta.u32(id)]);
  }
  for (const which of ["bos", "eos"]) {
    const v = cfg[`add_${which}_token`];
    if (typeof v === "boolean") kv.push([`tokenizer.ggml.add_${which}_token`, meta.bool(v)]);
  }
  if (tok.chatTemplate) kv.push(["tokenizer.chat_template", meta.str(tok.chatTemplate)]);
  return kv;
}

/** general.* keys. */
export function generalMetadata(name: string, format: GgufFormat): [string, GgufMetaValue][] {
  return [
    ["general.type", meta.str("model")],
    ["general.name", meta.str(name)],
    ["general.file_type", meta.u32(format.fileType)],
    ["general.quantization_version", meta.u32(QUANT_VERSION)],
  ];
}

// ---------------------------------------------------------------------------------------------------
// Back: a GGUF file's keys as config.json
// ---------------------------------------------------------------------------------------------------

const HF_ARCH: Record<string, { modelType: string; architecture: string; bias: boolean }> = {
  llama: { modelType: "llama", architecture: "LlamaForCausalLM", bias: false },
  qwen2: { modelType: "qwen2", architecture: "Qwen2ForCausalLM", bias: true },
  qwen3: { modelType: "qwen3", architecture: "Qwen3ForCausalLM", bias: false },
  // Qwen2.5-VL's text model: M-RoPE with text-only positions is qwen2's 1-D RoPE.
  qwen2vl: { modelType: "qwen2", architecture: "Qwen2ForCausalLM", bias: true },
};

/**
 * A config.json object equivalent to a GGUF file's hyperparameters (for {@link parseModelConfig}),
 * with the semantics llama.cpp gives the file (families.ts familyConfig). `factors`: Phi-3's
 * rope_factors_long/short tensors when present.
 */
export function ggufModelConfig(
  f: GgufFile,
  factors?: { long: number[]; short: number[] },
): Record<string, unknown> {
  const arch = f.str("general.architecture") ?? "";
  const family = hfFamilyOf(arch, f.num(`${arch}.expert_count`) ?? 0);
  const hf = family
    ? { ...family, bias: arch === "qwen2moe" }
    : Object.hasOwn(HF_ARCH, arch)
    ? HF_ARCH[arch]
    : undefined;
  if (!hf) {
    const known = [...Object.keys(HF_ARCH), "qwen2moe", "qwen3moe", "gemma2", "gemma3", "phi3"];
    throw new UnsupportedError(
      `GGUF architecture ${quote(arch)} cannot be read back (${known.join(", ")} can)`,
      f.path,
    );
  }
  if (f.tensors.some((t) => t.name === "rope_freqs.weight")) {
    throw new UnsupportedError(
      `GGUF files with rope_freqs (Llama 3 RoPE scaling) cannot be read back yet`,
      f.path,
    );
  }
  const k = (s: string) => f.num(`${arch}.${s}`);
  const need = (s: string) => {
    const v = k(s);
    if (v === undefined) throw new FormatError(`metadata ${arch}.${s} is missing`, f.path);
    return v;
  };
  const hidden = need("embedding_length"), heads = need("attention.head_count");
  const vocab = k("vocab_size") ?? f.array("tokenizer.ggml.tokens")?.length ??
    f.tensor("token_embd.weight").ne[1];
  const cfg: Record<string, unknown> = {
    architectures: [hf.architecture],
    model_type: hf.modelType,
    hidden_size: hidden,
    intermediate_size: need("feed_forward_length"),
    num_hidden_layers: need("block_count"),
    num_attention_heads: heads,
    num_key_value_heads: k("attention.head_count_kv") ?? heads,
    head_dim: k("attention.key_length") ?? hidden / heads,
    vocab_size: vocab,
    max_position_embeddings: k("context_length") ?? 2048,
    rms_norm_eps: need("attention.layer_norm_rms_epsilon"),
    rope_theta: k("rope.freq_base") ?? 10000,
    tie_word_embeddings: !f.tensors.some((t) => t.name === "output.weight"),
    attention_bias: hf.bias,
    hidden_act: "silu",
    torch_dtype: "float32",
    bos_token_id: f.num("tokenizer.ggml.bos_token_id"),
    eos_token_id: f.num("tokenizer.ggml.eos_token_id"),
  };
  if (f.str(`${arch}.rope.scaling.type`) === "linear") {
    cfg.rope_scaling = { rope_type: "linear", factor: k("rope.scaling.factor") };
  }
  return family ? { ...cfg, ...familyConfig(f, arch, cfg, factors) } : cfg;
}
