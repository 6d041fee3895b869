/**
 * The files of a Hugging Face tokenizer folder, read (tokenizer.json, its configs, the chat template),
 * and the transformers rules tokenizer.ts applies to them: special tokens in their config forms, the
 * vocabulary by id, LlamaTokenizerFast's BOS/EOS flags.
 */
import { FormatError, InputError } from "../errors.ts";

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
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new FormatError(`not valid JSON: ${(e as Error).message}`, path);
  }
}

/** chat_template.jinja (newer transformers) wins over tokenizer_config's `chat_template`. */
export async function readChatTemplate(dir: string, config: Json): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(join(dir, "chat_template.jinja"));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new InputError(`cannot read: ${(e as Error).message}`, dir);
    }
  }
  const t = config.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    // A list of named templates: transformers uses the one named "default".
    const named = t as { name?: string; template?: string }[];
    return (named.find((x) => x.name === "default") ?? named[0])?.template;
  }
  return undefined;
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

/** Vocabulary strings by id: the model's vocab, then added tokens over it. */
export function buildPieces(model: Json, added: AddedTokenInfo[]): string[] {
  const byId: (string | undefined)[] = [];
  if (Array.isArray(model.vocab)) {
    (model.vocab as [string, number][]).forEach(([piece], i) => (byId[i] = piece));
  } else if (model.vocab && typeof model.vocab === "object") {
    for (const [piece, id] of Object.entries(model.vocab as Record<string, number>)) byId[id] = piece;
  }
  for (const t of added) byId[t.id] = t.content;
  return Array.from(byId, (p, i) => p ?? `[PAD${i}]`);
}

/**
 * transformers' LlamaTokenizerFast rebuilds its post-processor from `add_bos_token` /
 * `add_eos_token` (update_post_processor), so those flags beat tokenizer.json for that class.
 */
export function applyLlamaSpecialFlags(json: Json, cfg: Json): Json {
  const cls = String(cfg.tokenizer_class ?? "");
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
