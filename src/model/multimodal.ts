/**
 * Vision-language checkpoints (spec/MODELS.md § 9): which ones are supported, where their text
 * decoder's hyper-parameters and tensors are, and which tensors lie outside it. The text decoder
 * is quantized like the text family it is (Qwen2.5-VL → qwen2, Gemma 3 → gemma3_text); the vision
 * tower and projector are copied unchanged, as auto-round does by default (`quant_nontext_module`
 * off). config.ts merges what {@link decoderConfig} returns into the ModelSpec.
 */
import { FormatError, quote, UnsupportedError } from "../errors.ts";

/** Where a checkpoint keeps its text decoder's tensors. */
export interface TextTower {
  /**
   * Prefix of the decoder's tensor names (embeddings, blocks, final norm): "model." for text models
   * and Qwen2.5-VL as saved, "language_model.model." for Gemma 3 as saved.
   */
  textPrefix: string;
  /** The output head's weight (absent from the checkpoint when tied). */
  lmHeadName: string;
  /** A vision-language checkpoint's root `model_type` (qwen2_5_vl, gemma3); undefined for text models. */
  multimodal?: string;
  /**
   * Qwen2.5-VL's M-RoPE sections (t, h, w rotary pairs, `mrope_section`): GGUF qwen2vl's
   * `rope.dimension_sections`. Text-only positions make it 1-D RoPE, which is what we compute.
   */
  mropeSection?: number[];
}

/** A text model's layout. */
export const TEXT_MODEL: TextTower = { textPrefix: "model.", lmHeadName: "lm_head.weight" };

/**
 * The layouts a VLM checkpoint may have, found by where the embedding table is: transformers ≥ 4.52
 * modules (`model.language_model.*`), and the legacy names that save_pretrained still writes
 * (transformers 5.17 included: tests/fixtures/models/qwen2_5_vl, gemma3).
 */
const VLM_LAYOUTS: readonly TextTower[] = [
  { textPrefix: "model.language_model.", lmHeadName: "lm_head.weight" },
  { textPrefix: "language_model.model.", lmHeadName: "language_model.lm_head.weight" },
  { textPrefix: "model.", lmHeadName: "lm_head.weight" },
];

/** Supported VLMs: root model_type → the text family its decoder is (spec/MODELS.md § 9.2). */
const VLM_TEXT_TYPES: Readonly<Record<string, string>> = {
  // M-RoPE with text-only positions (equal t/h/w ids) is 1-D RoPE with the same inv_freq.
  qwen2_5_vl: "qwen2",
  gemma3: "gemma3_text",
};

/** VLMs refused, with the reason a user can act on. */
const REFUSED_VLMS: Readonly<Record<string, string>> = {
  mllama: "Llama 3.2 Vision (model_type mllama) is not supported: its cross-attention layers read " +
    "only image features (transformers skips them without cross_attention_states), so text " +
    "calibration never reaches them; auto-round calibrates this model on an image dataset " +
    "(liuhaotian/llava_conv_58k) through its vision tower, which this build does not run",
};

type Cfg = Record<string, unknown>;

/**
 * The config the text decoder is parsed from, and where its tensors are expected. A VLM's text
 * hyper-parameters are in `text_config` (gemma3, newer qwen2_5_vl) or at the root (older
 * qwen2_5_vl): `{...root, ...text_config}` covers both, as llama.cpp's converter reads them, with
 * the text family's model_type. Text models pass through unchanged.
 */
export function decoderConfig(cfg: Cfg, file: string): { cfg: Cfg; tower: TextTower } {
  const type = typeof cfg.model_type === "string" ? cfg.model_type : "";
  if (Object.hasOwn(REFUSED_VLMS, type)) throw new UnsupportedError(REFUSED_VLMS[type], file);
  if (!Object.hasOwn(VLM_TEXT_TYPES, type)) return { cfg, tower: TEXT_MODEL };
  const text = cfg.text_config ?? {};
  if (typeof text !== "object" || text === null || Array.isArray(text)) {
    throw new FormatError(`text_config is ${quote(text)}, expected an object`, file);
  }
  const { text_config: _t, vision_config: _v, ...root } = cfg;
  const merged: Cfg = { ...root, ...text as Cfg, model_type: VLM_TEXT_TYPES[type] };
  // Legacy layouts as saved (the loader re-locates them from the tensor names: locateTextTower).
  const legacy = type === "gemma3" ? VLM_LAYOUTS[1] : VLM_LAYOUTS[2];
  const rope = (merged.rope_scaling ?? merged.rope_parameters ?? {}) as Cfg;
  const sec = rope.mrope_section;
  const mropeSection = Array.isArray(sec) && sec.every((x) => Number.isInteger(x) && x >= 0)
    ? sec as number[]
    : undefined;
  return { cfg: merged, tower: { ...legacy, multimodal: type, mropeSection } };
}

/**
 * A VLM's text tower as this checkpoint stores it: the first layout whose embedding table the
 * checkpoint holds. Text models keep their layout.
 */
export function locateTextTower(tower: TextTower, has: (name: string) => boolean, file: string): TextTower {
  if (!tower.multimodal) return tower;
  const found = VLM_LAYOUTS.find((l) => has(`${l.textPrefix}embed_tokens.weight`));
  if (!found) {
    throw new FormatError(
      `no text embedding table in the ${tower.multimodal} checkpoint (looked for ${
        VLM_LAYOUTS.map((l) => `${l.textPrefix}embed_tokens.weight`).join(", ")
      })`,
      file,
    );
  }
  return { ...tower, ...found };
}

/**
 * The GGUF architecture of a VLM's text model where it is not the text family's: Qwen2.5-VL's is
 * llama.cpp's qwen2vl (M-RoPE), as its converter and auto-round write it; Gemma 3's is plain gemma3.
 */
export function vlmGgufArch(t: TextTower): string | undefined {
  return t.multimodal === "qwen2_5_vl" ? "qwen2vl" : undefined;
}

/** The ModuleList of the text blocks (auto-round's `block_name_to_quantize`), e.g. `model.layers`. */
export function textBlocksName(t: TextTower): string {
  return `${t.textPrefix}layers`;
}

/** The embedding table's tensor name. */
export function embedName(t: TextTower): string {
  return `${t.textPrefix}embed_tokens.weight`;
}

/** The final norm's tensor name. */
export function finalNormName(t: TextTower): string {
  return `${t.textPrefix}norm.weight`;
}

/**
 * The tensors outside the text blocks, in checkpoint order, that an export copies as stored:
 * embeddings, final norm and lm_head, and for a VLM everything not in the text decoder (vision
 * tower, projector, whatever their dtype or shape). A text model's other stray tensors (old
 * rotary `inv_freq` buffers…) are not model weights and stay out, as before.
 */
export function tensorsOutsideBlocks(t: TextTower, names: readonly string[]): string[] {
  const own = [embedName(t), finalNormName(t), t.lmHeadName];
  if (!t.multimodal) return own.filter((n) => names.includes(n));
  const blocks = `${textBlocksName(t)}.`;
  return names.filter((n) => own.includes(n) || !(n.startsWith(t.textPrefix) || n.startsWith(blocks)));
}

/**
 * A text-decoder tensor's name as the plain text model spells it (`model.…`, `lm_head.weight`), or
 * undefined for a tensor outside the text decoder (vision tower, projector). The GGUF export maps
 * these names: llama.cpp's text GGUF of a VLM is the text family's file (spec/MODELS.md § 9.4).
 */
export function plainTextName(t: TextTower, name: string): string | undefined {
  if (name === t.lmHeadName) return "lm_head.weight";
  if (name.startsWith(t.textPrefix)) return `model.${name.slice(t.textPrefix.length)}`;
  return undefined;
}
