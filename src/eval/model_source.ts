/**
 * The one place evaluation and generation open a model: a table of openers, tried in order. A
 * Hugging Face folder (fp or any quantized folder openCheckpoint reads) is the last, catch-all row;
 * a GGUF reader plugs in by adding a row before it whose `open` returns its own WeightSource and a
 * tokenizer built from the GGUF vocabulary (anything with the {@linkcode ModelTokenizer} methods).
 */
import { openCheckpoint } from "../io/checkpoint.ts";
import { openGgufModel } from "../io/gguf_model.ts";
import { llamaFileTypeName } from "../formats/gguf/constants.ts";
import { dirname } from "../std/path.ts";
import { type ChatMessage, Tokenizer } from "../io/tokenizer.ts";
import type { ModelSpec } from "../model/config.ts";
import type { WeightSource } from "../model/transformer.ts";
import type { EvalTokenizer } from "./loglikelihood.ts";

/** What scoring and generation need from a tokenizer. */
export interface ModelTokenizer extends EvalTokenizer {
  /** Every id that ends generation. */
  readonly eosTokenIds: readonly number[];
  applyChatTemplate(messages: readonly ChatMessage[], opts?: { addGenerationPrompt?: boolean }): string;
}

/** An opened model: architecture, weights (f32, dequantized as needed) and tokenizer. */
export interface EvalModelSource extends Disposable {
  /** Folder or file, for messages and reports. */
  readonly label: string;
  readonly spec: ModelSpec;
  readonly weights: WeightSource;
  readonly tokenizer: ModelTokenizer;
  /** `quant_method` (or GGUF file type) of a quantized model; undefined for fp. */
  readonly quantMethod?: string;
}

/** One row of {@linkcode MODEL_OPENERS}. */
export interface ModelOpener {
  name: string;
  matches(path: string): boolean;
  open(path: string): Promise<EvalModelSource>;
}

/** A Hugging Face folder or HF-cache repo id, fp or quantized (auto_round, auto_gptq, gptq). */
export const HF_FOLDER_OPENER: ModelOpener = {
  name: "hf-folder",
  matches: () => true,
  async open(path) {
    const ckpt = await openCheckpoint(path);
    try {
      const tokenizer = await Tokenizer.fromDir(ckpt.dir);
      return {
        label: ckpt.dir,
        spec: ckpt.spec,
        weights: ckpt.weights,
        tokenizer,
        quantMethod: ckpt.quantMethod,
        [Symbol.dispose]: () => ckpt[Symbol.dispose](),
      };
    } catch (e) {
      ckpt[Symbol.dispose]();
      throw e;
    }
  },
};

/**
 * A GGUF file written by us or llama.cpp's converter: weights dequantized by our reader, the
 * tokenizer from the tokenizer files next to it (our GGUF export copies them there).
 */
export const GGUF_OPENER: ModelOpener = {
  name: "gguf",
  matches: (p) => p.toLowerCase().endsWith(".gguf"),
  async open(path) {
    const m = await openGgufModel(path);
    try {
      const ft = m.file.num("general.file_type");
      return {
        label: path,
        spec: m.spec,
        weights: m.weights,
        tokenizer: await Tokenizer.fromDir(dirname(path)),
        quantMethod: `gguf:${ft === undefined ? "?" : llamaFileTypeName(ft) ?? ft}`,
        [Symbol.dispose]: () => m[Symbol.dispose](),
      };
    } catch (e) {
      m[Symbol.dispose]();
      throw e;
    }
  },
};

/** Openers in the order they are tried. */
export const MODEL_OPENERS: ModelOpener[] = [GGUF_OPENER, HF_FOLDER_OPENER];

/**
 * Open `path` with the first opener that claims it.
 *
 * @example
 * ```ts
 * using m = await openEvalModel("tests/fixtures/stories260K");
 * m.tokenizer.encode("Once upon a time"); // [1, 403, 407, 261, 378]
 * ```
 */
export async function openEvalModel(path: string, openers: readonly ModelOpener[] = MODEL_OPENERS) {
  const opener = openers.find((o) => o.matches(path)) ?? HF_FOLDER_OPENER;
  return await opener.open(path);
}
