/**
 * The files of a Hugging Face tokenizer folder, read (tokenizer.json, its configs, the chat template),
 * and the transformers rules tokenizer.ts applies to them: special tokens in their config forms, the
 * vocabulary by id, LlamaTokenizerFast's BOS/EOS flags.
 */
import { FormatError, InputError, plainName, quote } from "../errors.ts";

/** A token of tokenizer.json's `added_tokens`. */
export interface AddedTokenInfo {
  id: number;
  content: string;
  special: boolean;
}

/** A parsed JSON object. */
export type Json = Record<string, unknown>;

/** `dir/name` (plain string join: node:path has no types under nodeModulesDir "manual"). */
export const join = (dir: string, name: string) => (dir.endsWith("/") ? dir + name : `${dir}/${name}`);

export async function readJson(path: string): Promise<Json | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new InputError(`cannot read: ${(e as Error).message}`, path);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`not valid JSON: ${(e as Error).message}`, path);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError(`not a JSON object`, path);
  }
  return json as Json;
}

/**
 * The checks tokenizer.ts relies on before the tokenizer runtime sees the file: `model` an object,
 * `added_tokens` a list of `{id, content}` with a non-negative integer id and a string content.
 */
export function checkTokenizerJson(json: Json, path: string): void {
  if (
    json.model !== undefined &&
    (typeof json.model !== "object" || json.model === null || Array.isArray(json.model))
  ) {
    throw new FormatError(`"model" is not an object`, path);
  }
  // The runtime only warns (on stderr) about a Split/Replace pattern with neither Regex nor String.
  for (const part of ["normalizer", "pre_tokenizer", "decoder"]) {
    const stack: [unknown, string, number][] = [[json[part], part, 0]];
    while (stack.length) {
      const [v, where, depth] = stack.pop()!;
      if (typeof v !== "object" || v === null) continue;
      if (depth > 32) throw new FormatError(`${part} is nested more than 32 levels deep`, path);
      const type = (v as Json).type;
      if ((type === "Replace" || type === "Split") && !("pattern" in v)) {
        throw new FormatError(`${where}: a ${type} without a "pattern"`, path);
      }
      for (const [k, x] of Object.entries(v)) {
        const at = `${where}.${plainName(k)}`;
        const p = x as Json;
        if (k === "pattern" && (typeof p?.Regex !== "string" && typeof p?.String !== "string")) {
          throw new FormatError(`${at} is not {"Regex": ...} or {"String": ...}`, path);
        }
        stack.push([x, at, depth + 1]);
      }
    }
  }
  const added = json.added_tokens ?? [];
  if (!Array.isArray(added)) throw new FormatError(`"added_tokens" is not a list`, path);
  added.forEach((t: unknown, i) => {
    const { id, content } = (t ?? {}) as Json;
    if (
      typeof t !== "object" || !Number.isSafeInteger(id) || (id as number) < 0 || typeof content !== "string"
    ) {
      throw new FormatError(
        `added_tokens[${i}] is not {"id": a non-negative integer, "content": a string}`,
        path,
      );
    }
  });
}

/**
 * The chat template and the file it came from: chat_template.jinja (newer transformers) wins over
 * tokenizer_config's `chat_template` (a string, or a list of named templates of which transformers
 * uses "default").
 */
export async function readChatTemplate(
  dir: string,
  config: Json,
): Promise<{ text: string; file: string } | undefined> {
  const jinja = join(dir, "chat_template.jinja");
  try {
    return { text: await Deno.readTextFile(jinja), file: jinja };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new InputError(`cannot read: ${(e as Error).message}`, jinja);
    }
  }
  const file = join(dir, "tokenizer_config.json");
  const t = config.chat_template;
  if (t === undefined || t === null) return undefined;
  if (typeof t === "string") return { text: t, file };
  const named = Array.isArray(t) ? t.find((x) => x?.name === "default") ?? t[0] : undefined;
  if (typeof named?.template === "string") return { text: named.template, file };
  throw new FormatError(
    `chat_template is neither a string nor a list of {name, template} with a string template`,
    file,
  );
}

/** A special token as tokenizer_config writes it: a string, an AddedToken dict, or null. */
export function tokenString(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") {
    return (v as Json).content as string;
  }
  return null;
}

export function idList(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

export function modelTypeOf(model: Json): string {
  if (typeof model.type === "string") return model.type;
  if (Array.isArray(model.vocab)) return "Unigram";
  if (model.merges) return "BPE";
  if (model.continuing_subword_prefix !== undefined) return "WordPiece";
  return "WordLevel";
}

/** Largest token id a vocabulary may use (real ones stay under 2^18; a bigger id is a broken file). */
export const MAX_TOKEN_ID = 2 ** 24;

/** Vocabulary strings by id: the model's vocab, then added tokens over it. */
export function buildPieces(model: Json, added: AddedTokenInfo[], path = "tokenizer.json"): string[] {
  const byId: (string | undefined)[] = [];
  const put = (id: unknown, piece: unknown, where: string) => {
    if (!Number.isSafeInteger(id) || (id as number) < 0 || (id as number) > MAX_TOKEN_ID) {
      throw new FormatError(
        `${where}: token id ${quote(id)} is not an integer in [0, ${MAX_TOKEN_ID}]`,
        path,
      );
    }
    byId[id as number] = String(piece);
  };
  if (Array.isArray(model.vocab)) {
    if (model.vocab.length > MAX_TOKEN_ID) {
      throw new FormatError(`model.vocab has over ${MAX_TOKEN_ID} entries`, path);
    }
    model.vocab.forEach((e: unknown, i) => {
      if (!Array.isArray(e) || typeof e[0] !== "string") {
        throw new FormatError(`model.vocab[${i}] is not a [piece, score] pair`, path);
      }
      put(i, e[0], "model.vocab");
    });
  } else if (model.vocab && typeof model.vocab === "object") {
    for (const [piece, id] of Object.entries(model.vocab)) put(id, piece, `model.vocab[${quote(piece, 40)}]`);
  }
  for (const t of added) put(t.id, t.content, "added_tokens");
  return Array.from(byId, (p, i) => p ?? `[PAD${i}]`);
}

/**
 * transformers' LlamaTokenizerFast rebuilds its post-processor from `add_bos_token` /
 * `add_eos_token` (update_post_processor), so those flags beat tokenizer.json for that class.
 */
export function applyLlamaSpecialFlags(json: Json, cfg: Json): Json {
  const cls = typeof cfg.tokenizer_class === "string" ? cfg.tokenizer_class : "";
  if (!/^(Llama|CodeLlama)Tokenizer(Fast)?$/.test(cls)) return json;
  const bos = tokenString(cfg.bos_token);
  const eos = tokenString(cfg.eos_token);
  const addBos = cfg.add_bos_token !== false && bos !== null;
  const addEos = cfg.add_eos_token === true && eos !== null;
  const piece = (id: string) => ({ SpecialToken: { id, type_id: 0 } });
  const seq = (id: string) => ({ Sequence: { id, type_id: 0 } });
  const single = [...(addBos ? [piece(bos!)] : []), seq("A"), ...(addEos ? [piece(eos!)] : [])];
  const pair = [...single, ...(addBos ? [piece(bos!)] : []), seq("B"), ...(addEos ? [piece(eos!)] : [])];
  const special: Json = {};
  const vocab = new Map<string, number>();
  for (const t of (json.added_tokens ?? []) as Json[]) vocab.set(String(t.content), Number(t.id));
  const model = (json.model ?? {}) as Json;
  const lookup = (s: string) => vocab.get(s) ?? (model.vocab as Record<string, number> | undefined)?.[s];
  for (const s of [addBos ? bos : null, addEos ? eos : null]) {
    if (s === null) continue;
    const id = lookup(s);
    if (id === undefined) return json; // the flag names a token the vocabulary lacks: leave it be
    special[s] = { id: s, ids: [id], tokens: [s] };
  }
  return {
    ...json,
    post_processor: { type: "TemplateProcessing", single, pair, special_tokens: special },
  };
}
