/**
 * A Hugging Face tokenizer folder (tokenizer.json and its configs) as one object: encode with the
 * truncation transformers applies, decode, the special ids, the chat template, and the vocabulary
 * in id order for the GGUF exporter.
 *
 * Encoding is `@huggingface/tokenizers` (a pure-JS runtime of tokenizer.json); chat templates run in
 * `@huggingface/jinja` with the variables transformers passes.
 *
 * @module
 */

import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { FormatError, InputError, quote } from "../errors.ts";
import { ChatTemplate } from "./chat_template.ts";
import {
  type AddedTokenInfo,
  applyLlamaSpecialFlags,
  buildPieces,
  checkTokenizerJson,
  idList,
  join,
  type Json,
  modelTypeOf,
  readChatTemplate,
  readJson,
  tokenString,
} from "./tokenizer_files.ts";

export type { AddedTokenInfo };

/** One chat turn, as `apply_chat_template` takes it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Options of {@linkcode Tokenizer.encode}. */
export interface EncodeOptions {
  /** Let the post-processor add BOS/EOS and the like (transformers' default). */
  addSpecialTokens?: boolean;
  /** Keep at most this many ids, special ones included, like `truncation=True, max_length=`. */
  maxLength?: number;
}

/**
 * A tokenizer folder loaded for encoding, decoding, chat rendering and vocabulary export.
 *
 * @example
 * ```ts
 * const tok = await Tokenizer.fromDir("tests/fixtures/stories260K");
 * tok.encode("Once upon a time"); // [1, 403, 407, 261, 378]
 * tok.decode([403, 407]); // "Once upon"
 * tok.bosTokenId; // 1
 * ```
 */
export class Tokenizer {
  /** Model type from tokenizer.json: "BPE", "Unigram", "WordPiece", "WordLevel". */
  readonly modelType: string;
  /** The tokenizer's BOS (tokenizer_config / special_tokens_map `bos_token`), if any. */
  readonly bosTokenId?: number;
  /** The tokenizer's own EOS (`eos_token`), the one transformers calls `eos_token_id`. */
  readonly eosTokenId?: number;
  /** Every id that ends generation: `eos_token` first, then generation_config's `eos_token_id`(s). */
  readonly eosTokenIds: number[];
  /** `pad_token`'s id; undefined when the tokenizer has none (Llama). */
  readonly padTokenId?: number;
  /** `unk_token`'s id, if any. */
  readonly unkTokenId?: number;
  /** Highest id + 1 over the model vocabulary and added tokens (transformers' `len(tokenizer)`). */
  readonly vocabSize: number;
  /** The Jinja chat template, if the folder has one. */
  readonly chatTemplate?: string;

  private readonly hf: HfTokenizer;
  private readonly json: Json;
  private readonly specialStrings: Record<string, string | null>;
  private readonly additionalSpecial: string[];
  private readonly added: AddedTokenInfo[];
  private readonly pieces: string[];
  private readonly templateFile?: string;
  private template?: ChatTemplate;
  private wrap?: { prefix: number[]; suffix: number[] };

  private constructor(
    readonly dir: string,
    json: Json,
    config: Json,
    specialsMap: Json,
    generation: Json,
    chatTemplate: { text: string; file: string } | undefined,
  ) {
    this.json = json;
    // transformers' from_pretrained lets special_tokens_map.json override tokenizer_config.json.
    const cfg: Json = { ...config };
    for (const [k, v] of Object.entries(specialsMap)) cfg[k] = v;
    checkTokenizerJson(json, this.file);
    const applied = applyLlamaSpecialFlags(json, cfg);
    this.hf = this.#guard("build the tokenizer", () => new HfTokenizer(applied, cfg));
    const model = (json.model ?? {}) as Json;
    this.modelType = modelTypeOf(model);
    this.added = ((json.added_tokens ?? []) as Json[]).map((t) => ({
      id: Number(t.id),
      content: String(t.content),
      special: Boolean(t.special),
    }));
    this.pieces = buildPieces(model, this.added, this.file);
    this.vocabSize = this.pieces.length;

    this.specialStrings = {};
    for (
      const name of [
        "bos_token",
        "eos_token",
        "unk_token",
        "pad_token",
        "sep_token",
        "cls_token",
        "mask_token",
      ]
    ) {
      this.specialStrings[name] = tokenString(cfg[name]);
    }
    this.additionalSpecial = Array.isArray(cfg.additional_special_tokens)
      ? (cfg.additional_special_tokens as unknown[]).map(tokenString).filter((s): s is string => s !== null)
      : [];
    this.bosTokenId = this.idOfSpecial("bos_token");
    this.eosTokenId = this.idOfSpecial("eos_token");
    this.padTokenId = this.idOfSpecial("pad_token");
    this.unkTokenId = this.idOfSpecial("unk_token");
    const eos = this.eosTokenId === undefined ? [] : [this.eosTokenId];
    for (const id of idList(generation.eos_token_id)) if (!eos.includes(id)) eos.push(id);
    this.eosTokenIds = eos;
    this.chatTemplate = chatTemplate?.text;
    this.templateFile = chatTemplate?.file;
  }

  /**
   * Load tokenizer.json, and tokenizer_config.json, special_tokens_map.json, generation_config.json
   * and chat_template.jinja when present.
   *
   * @throws {InputError} the folder has no tokenizer.json
   * @throws {FormatError} a file is not valid JSON or describes a tokenizer the runtime cannot build
   * @example
   * ```ts
   * const tok = await Tokenizer.fromDir("../shared/models/qwen3-tokenizer");
   * tok.eosTokenIds; // [151645]
   * ```
   */
  static async fromDir(dir: string): Promise<Tokenizer> {
    const json = await readJson(join(dir, "tokenizer.json"));
    if (json === undefined) {
      throw new InputError(
        `no tokenizer.json in this folder: a Hugging Face tokenizer folder is needed`,
        dir,
      );
    }
    const config = (await readJson(join(dir, "tokenizer_config.json"))) ?? {};
    const specialsMap = (await readJson(join(dir, "special_tokens_map.json"))) ?? {};
    const generation = (await readJson(join(dir, "generation_config.json"))) ?? {};
    const template = await readChatTemplate(dir, config);
    return new Tokenizer(dir, json, config, specialsMap, generation, template);
  }

  /**
   * Token ids of `text`. With `maxLength`, the text's own tokens are cut so that they and the
   * special tokens fit, as transformers' `tokenizer(text, truncation=True, max_length=n)` does.
   *
   * @example
   * ```ts
   * tok.encode("Once upon a time", { maxLength: 3 }); // [1, 403, 407]
   * tok.encode("Once upon a time", { addSpecialTokens: false }); // [403, 407, 261, 378]
   * ```
   */
  encode(text: string, { addSpecialTokens = true, maxLength }: EncodeOptions = {}): number[] {
    const encode = (special: boolean) =>
      this.#guard("encode", () => this.hf.encode(text, { add_special_tokens: special }).ids);
    if (maxLength === undefined) return encode(addSpecialTokens);
    const content = encode(false);
    const { prefix, suffix } = addSpecialTokens ? this.specialWrap() : { prefix: [], suffix: [] };
    const room = Math.max(0, maxLength - prefix.length - suffix.length);
    return [...prefix, ...content.slice(0, room), ...suffix];
  }

  /**
   * Text of `ids`; `skipSpecialTokens` drops special tokens first (transformers' `decode`).
   *
   * @example
   * ```ts
   * tok.decode([1, 403, 407], { skipSpecialTokens: true }); // "Once upon"
   * ```
   */
  decode(
    ids: readonly number[],
    { skipSpecialTokens = false }: { skipSpecialTokens?: boolean } = {},
  ): string {
    if (ids.length === 0) return "";
    return this.#guard("decode", () => this.hf.decode([...ids], { skip_special_tokens: skipSpecialTokens }));
  }

  /**
   * Render a conversation with the model's chat template, with the variables transformers passes
   * (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`, ... and any `extra`, e.g.
   * `{ enable_thinking: false }` for Qwen3).
   *
   * @throws {InputError} the tokenizer has no chat template
   * @example
   * ```ts
   * qwen.applyChatTemplate([{ role: "user", content: "Hi" }]);
   * // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
   * ```
   */
  applyChatTemplate(
    messages: readonly ChatMessage[],
    { addGenerationPrompt = true, extra = {} }: {
      addGenerationPrompt?: boolean;
      extra?: Record<string, unknown>;
    } = {},
  ): string {
    if (this.chatTemplate === undefined) {
      throw new InputError(
        "this tokenizer has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja)",
        this.dir,
      );
    }
    this.template ??= new ChatTemplate(this.chatTemplate, this.templateFile ?? this.dir);
    return this.template.render({
      ...this.specialStrings,
      additional_special_tokens: this.additionalSpecial,
      ...extra,
      messages: messages.map((m) => ({ ...m })),
      add_generation_prompt: addGenerationPrompt,
    });
  }

  /**
   * The vocabulary string of an id (sentencepiece calls it a piece), added tokens included.
   *
   * @example
   * ```ts
   * tok.tokenToString(403); // "▁Once"
   * ```
   */
  tokenToString(id: number): string | undefined {
    return this.pieces[id];
  }

  /** Same as {@linkcode Tokenizer.tokenToString}, by its sentencepiece name. */
  idToPiece(id: number): string | undefined {
    return this.tokenToString(id);
  }

  /** The id of a vocabulary string, or undefined. @example `tok.tokenToId("<s>") // 1` */
  tokenToId(token: string): number | undefined {
    return this.#guard("look up a token", () => this.hf.token_to_id(token));
  }

  /**
   * Every vocabulary string in id order (length {@linkcode Tokenizer.vocabSize}), added tokens
   * included; an id that no entry claims reads `[PAD<id>]`, as llama.cpp's converter names it.
   *
   * @example
   * ```ts
   * tok.vocab().slice(0, 3); // ["<unk>", "<s>", "</s>"]
   * ```
   */
  vocab(): string[] {
    return [...this.pieces];
  }

  /**
   * BPE merges as "left right" strings in rank order (empty for other model types).
   *
   * @example
   * ```ts
   * tok.merges()[0]; // "▁ t"
   * ```
   */
  merges(): string[] {
    const merges = (this.json.model as Json)?.merges ?? [];
    if (!Array.isArray(merges)) throw new FormatError(`model.merges is not a list`, this.file);
    return merges.map((m, i) => {
      if (typeof m === "string") return m;
      if (Array.isArray(m) && m.length === 2 && m.every((x) => typeof x === "string")) return m.join(" ");
      throw new FormatError(`model.merges[${i}] is not "a b" or ["a", "b"]`, this.file);
    });
  }

  /**
   * Unigram log-probabilities by id (undefined where the model has none, e.g. BPE; added tokens
   * past the model's vocabulary get 0).
   *
   * @example
   * ```ts
   * tok.scores(); // undefined for a BPE tokenizer
   * ```
   */
  scores(): number[] | undefined {
    const model = this.json.model as Json;
    if (this.modelType !== "Unigram" || !Array.isArray(model.vocab)) return undefined;
    const out = new Array<number>(this.vocabSize).fill(0);
    (model.vocab as [string, number][]).forEach(([, score], i) => (out[i] = Number(score)));
    return out;
  }

  /** tokenizer.json's added tokens (special or not), in file order. @example `tok.addedTokens()[1] // {id: 1, content: "<s>", special: true}` */
  addedTokens(): AddedTokenInfo[] {
    return this.added.map((t) => ({ ...t }));
  }

  /** Whether `id` is an added token marked special. @example `tok.isSpecial(1) // true` */
  isSpecial(id: number): boolean {
    return this.added.some((t) => t.id === id && t.special);
  }

  /** tokenizer.json, for messages. */
  private get file(): string {
    return join(this.dir, "tokenizer.json");
  }

  /**
   * Run a call into the tokenizer runtime: what it throws on a tokenizer.json it cannot follow (an
   * unknown component, a malformed field found only when used) becomes a FormatError naming the file.
   */
  #guard<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof FormatError) throw e;
      throw new FormatError(
        `cannot ${what} with this tokenizer: ${quote((e as Error)?.message ?? String(e), 200)}`,
        this.file,
      );
    }
  }

  private idOfSpecial(name: string): number | undefined {
    const s = this.specialStrings[name];
    return s === null || s === undefined
      ? undefined
      : this.#guard("look up a token", () => this.hf.token_to_id(s));
  }

  /** Ids the post-processor puts before and after any text, found once by encoding a probe. */
  private specialWrap(): { prefix: number[]; suffix: number[] } {
    if (this.wrap) return this.wrap;
    const probe = "a";
    const bare = this.#guard("encode", () => this.hf.encode(probe, { add_special_tokens: false }).ids);
    const full = this.#guard("encode", () => this.hf.encode(probe, { add_special_tokens: true }).ids);
    let at = 0;
    while (at + bare.length <= full.length && !bare.every((id, i) => full[at + i] === id)) at++;
    if (at + bare.length > full.length) at = 0; // the post-processor rewrote content: assume none added
    this.wrap = { prefix: full.slice(0, at), suffix: full.slice(at + bare.length) };
    return this.wrap;
  }
}
