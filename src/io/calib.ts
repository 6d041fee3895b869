/**
 * Calibration data, selected as AutoRound selects it (spec ALGORITHM.md § Calibration; auto-round
 * calib_dataset.py `get_local_dataset`, `_get_dataset_impl`; calibration/llm.py `calib`):
 *
 * 1. read the texts of a local source (calib_texts.ts: AutoRound's .json/.jsonl row rules; also .txt,
 *    .parquet, a folder, or the local Hugging Face cache), each `rstrip`ped like Python's `str.rstrip()`;
 * 2. shuffle them with CPython's `random.Random(seed).shuffle`;
 * 3. tokenize each with special tokens, truncated to `seqlen` (optionally `concat`enated first);
 * 4. drop rows shorter than `seqlen` or whose last token fills more than seqlen/2 positions;
 * 5. keep the first `nsamples` (and at most `num=`).
 *
 * Tokenizing stops once enough rows are kept: the result is the same, as selection is in order.
 * A `.safetensors` file with an integer `input_ids` [n, len] tensor gives ready rows instead.
 *
 * @module
 */
import { InputError, UsageError } from "../errors.ts";
import { type EnvReader, hubCacheDir, resolveDatasetCacheDir } from "./model_source.ts";
import { PyRandom } from "./pyrandom.ts";
import { listFiles, pathKind, readInputIds, readTexts } from "./calib_texts.ts";
import type { Tokenizer } from "./tokenizer.ts";

/** Token rows for calibration, row-major, with the positions the loss counts. */
export interface CalibrationSet {
  nsamples: number;
  seqlen: number;
  /** nsamples × seqlen token ids, row-major. */
  ids: Int32Array;
  /** 1 where the position's next-token loss is counted, 0 for padding and each row's last position. */
  lossMask: Uint8Array;
  /** Things the caller should print (fewer samples than asked, ...). */
  warnings: string[];
  /** What was read, for logs: the resolved path(s) and options. */
  source: string;
}

/** Options of {@linkcode loadCalibration}. */
export interface CalibrationOptions {
  seqlen: number;
  nsamples: number;
  seed: number;
  /** Environment for the Hugging Face cache lookup (default `Deno.env`). */
  env?: EnvReader;
}

/** A parsed `--dataset` value: `name[:num=N][:concat=true][:apply_chat_template][:system_prompt=S]`. */
export interface DatasetSpec {
  name: string;
  num?: number;
  concat: boolean;
  applyChatTemplate: boolean;
  systemPrompt: string;
  split?: string[];
}

/** AutoRound's default calibration set (`--dataset` default). */
export const DEFAULT_DATASET = "NeelNanda/pile-10k";
/** AutoRound's system prompt when `apply_chat_template` is on (`_get_dataset_impl`). */
const DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant.";
/**
 * Build the calibration set named by `spec` (a file, folder, or cached Hugging Face data set, with
 * AutoRound's suffix options) for tokenizer `tok`.
 *
 * @throws {UsageError} the data set is not local, or no text yields `seqlen` tokens
 * @throws {FormatError} a file breaks its format or AutoRound's row rules
 * @example
 * ```ts
 * const tok = await Tokenizer.fromDir("tests/fixtures/stories260K");
 * const calib = await loadCalibration("../shared/data/calib/c4-en-1000.jsonl", tok, {
 *   seqlen: 512, nsamples: 128, seed: 42,
 * });
 * calib.ids.length; // 128 * 512
 * for (const w of calib.warnings) console.warn(w);
 * ```
 */
export async function loadCalibration(
  spec: string,
  tok: Tokenizer,
  opts: CalibrationOptions,
): Promise<CalibrationSet> {
  const { seqlen, nsamples, seed } = opts;
  if (!Number.isInteger(seqlen) || seqlen < 1) {
    throw new UsageError(`--seqlen must be a positive integer, got ${seqlen}`);
  }
  if (!Number.isInteger(nsamples) || nsamples < 1) {
    throw new UsageError(`--nsamples must be a positive integer, got ${nsamples}`);
  }
  const ds = (await pathKind(spec)) ? { ...parseDatasetSpec(""), name: spec } : parseDatasetSpec(spec);
  const paths = await resolveSource(ds, opts.env ?? Deno.env);
  const source = paths.join(", ") + describeOptions(ds);
  if (paths.length === 1 && paths[0].endsWith(".safetensors")) {
    return await readyRows(paths[0], tok, seqlen, Math.min(nsamples, ds.num ?? Infinity), source);
  }
  const texts: string[] = [];
  for (const p of paths) texts.push(...(await readTexts(p)));
  const order = texts.map((_, i) => i);
  new PyRandom(seed).shuffle(order);

  const render = ds.applyChatTemplate ? chatRenderer(tok, ds.systemPrompt) : (t: string) => t;
  const tokenized = (function* () {
    for (const i of order) yield tok.encode(render(texts[i]), { maxLength: seqlen });
  })();
  const candidates = ds.concat ? concatSamples(tokenized, seqlen, tok.bosTokenId, tok.eosTokenId) : tokenized;
  const limit = Math.min(nsamples, ds.num ?? Infinity);
  const rows: number[][] = [];
  for (const row of candidates) {
    if (rows.length >= limit) break;
    if (keepSample(row, seqlen)) rows.push(row.slice(0, seqlen));
  }
  if (rows.length === 0) {
    throw new UsageError(
      `no calibration sample is >= ${seqlen} tokens in ${source} (${texts.length} texts); use a smaller --seqlen`,
    );
  }
  const warnings: string[] = [];
  if (rows.length < nsamples) {
    const why = rows.length === ds.num
      ? `num=${ds.num} limits it`
      : ds.concat
      ? `concat gives only ${rows.length} usable ${seqlen}-token rows`
      : `only ${rows.length} of ${texts.length} texts reach ${seqlen} tokens`;
    warnings.push(`calibration: ${rows.length} of ${nsamples} requested samples from ${source} (${why})`);
  }
  return packRows(rows, seqlen, tok.padTokenId, warnings, source);
}

/**
 * Parse a `--dataset` value with AutoRound's options (`_get_dataset_impl`): `num=N` keeps at most N
 * samples, `concat[=true]` joins tokenized texts into seqlen-long rows, `apply_chat_template` and
 * `system_prompt=S` render each text as a user turn. Spaces are removed first, as `calib()` does.
 *
 * @throws {UsageError} several comma-separated data sets, or an unknown or malformed option
 * @example
 * ```ts
 * parseDatasetSpec("data.jsonl:num=64:concat=true");
 * // { name: "data.jsonl", num: 64, concat: true, applyChatTemplate: false, systemPrompt: "You are a helpful assistant." }
 * ```
 */
export function parseDatasetSpec(spec: string): DatasetSpec {
  const s = spec.replaceAll(" ", "");
  if (s.includes(",")) {
    // AutoRound mixes several sets and reorders the mix with datasets' numpy-based shuffle, which
    // this port does not reproduce; refuse rather than give a different selection.
    throw new UsageError(`several calibration data sets (${spec}) are not supported: pass one --dataset`);
  }
  const [name, ...options] = s.split(":");
  const ds: DatasetSpec = {
    name: name || DEFAULT_DATASET,
    concat: false,
    applyChatTemplate: false,
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
  };
  for (const opt of options) {
    const [key, ...values] = opt.split("=");
    const flag = !(values.length > 0 && values[0].toLowerCase() === "false");
    if (key === "num") {
      const n = Number(values[0]);
      if (!Number.isInteger(n) || n < 1) {
        throw new UsageError(`dataset option num=${values[0]} is not a positive integer`);
      }
      ds.num = n;
    } else if (key === "concat") ds.concat = flag;
    else if (key === "apply_chat_template") ds.applyChatTemplate = flag;
    else if (key === "system_prompt") {
      ds.systemPrompt = values[0] ?? "";
      ds.applyChatTemplate = true;
    } else if (key === "split") ds.split = (values[0] ?? "").split("+");
    else {throw new UsageError(
        `unknown dataset option "${opt}" in ${spec} (num=, concat, apply_chat_template, system_prompt=, split=)`,
      );}
  }
  return ds;
}

/**
 * AutoRound's `filter_func`: keep a row of at least `seqlen` ids whose first `seqlen` ids do not hold
 * their last id more than seqlen/2 times (that is padding, not text).
 *
 * @example
 * ```ts
 * keepSample([5, 6, 7, 8], 4); // true
 * keepSample([5, 8, 8, 8], 4); // false: 8 fills 3 > 4/2 positions
 * ```
 */
export function keepSample(ids: readonly number[], seqlen: number): boolean {
  if (ids.length < seqlen) return false;
  const last = ids[seqlen - 1];
  let count = 0;
  for (let i = 0; i < seqlen; i++) if (ids[i] === last) count++;
  return !(seqlen > 2 && count > Math.floor(seqlen / 2));
}

/**
 * The loss mask of one row (calibration/llm.py `calib`): 0 at pad ids when the tokenizer has a pad
 * id, else 0 at the trailing repeats of the last id; the last position is always 0.
 *
 * @example
 * ```ts
 * lossMaskOf([4, 5, 9, 9, 9]); // [1, 1, 0, 0, 0]
 * lossMaskOf([0, 4, 5, 0], 0); // [0, 1, 1, 0]
 * ```
 */
export function lossMaskOf(row: ArrayLike<number>, padTokenId?: number): Uint8Array {
  const n = row.length;
  const mask = new Uint8Array(n).fill(1);
  if (padTokenId !== undefined) {
    for (let j = 0; j < n; j++) if (row[j] === padTokenId) mask[j] = 0;
  } else {
    for (let j = n - 2; j >= 0 && row[j] === row[n - 1]; j--) mask[j] = 0;
  }
  if (n > 0) mask[n - 1] = 0;
  return mask;
}

/**
 * AutoRound's `concat_dataset_element`: strip each row's BOS/EOS, join the rows, and cut
 * `seqlen`-long pieces, each given back its BOS/EOS. Ported with its quirk: the count of stripped
 * BOS/EOS (`os_cnt`) is never reset, so with a BOS-adding tokenizer later pieces come out shorter
 * than seqlen and the length filter drops them.
 *
 * @example
 * ```ts
 * [...concatSamples([[7, 8, 9], [10, 11, 12]], 4)]; // [[7, 8, 9, 10]]
 * ```
 */
export function* concatSamples(
  rows: Iterable<number[]>,
  seqlen: number,
  bosTokenId?: number,
  eosTokenId?: number,
): Generator<number[]> {
  let buffer: number[] = [];
  let osCount = 0;
  let haveBos = false;
  let haveEos = false;
  const wrap = (ids: number[]) => [
    ...(haveBos ? [bosTokenId!] : []),
    ...ids,
    ...(haveEos ? [eosTokenId!] : []),
  ];
  for (let ids of rows) {
    if (ids.length > 0 && bosTokenId !== undefined && ids[0] === bosTokenId) {
      ids = ids.slice(1);
      osCount++;
      haveBos = true;
    }
    if (ids.length > 0 && eosTokenId !== undefined && ids[ids.length - 1] === eosTokenId) {
      ids = ids.slice(0, -1);
      osCount++;
      haveEos = true;
    }
    if (buffer.length + ids.length + osCount > seqlen) {
      const keep = seqlen - buffer.length - osCount; // may be negative: Python slice semantics below
      yield wrap([...buffer, ...pySlice(ids, 0, keep)]);
      buffer = pySlice(ids, keep, ids.length);
    } else {
      buffer = buffer.concat(ids);
    }
    if (buffer.length + osCount === seqlen) {
      yield wrap(buffer);
      buffer = [];
    }
  }
}

/** Rows of an integer `input_ids` [n, len] tensor, file order, truncated to seqlen: no shuffle, no filter. */
async function readyRows(path: string, tok: Tokenizer, seqlen: number, limit: number, source: string) {
  const { shape, values } = await readInputIds(path);
  const [n, len] = shape;
  if (len < seqlen) {
    throw new UsageError(
      `input_ids rows are ${len} tokens, shorter than --seqlen ${seqlen}; use --seqlen ${len} or less`,
      path,
    );
  }
  const rows: number[][] = [];
  for (let r = 0; r < Math.min(n, limit); r++) {
    rows.push(Array.from(values.subarray(r * len, r * len + seqlen)));
  }
  const warnings = rows.length < limit
    ? [`calibration: ${rows.length} of ${limit} requested samples (the file has ${n} rows)`]
    : [];
  return packRows(rows, seqlen, tok.padTokenId, warnings, source);
}

// ---- where a data set name points ----

/** The files (or single file) a spec names: a local path, else a data set in the local HF cache. */
async function resolveSource(ds: DatasetSpec, env: EnvReader): Promise<string[]> {
  if (await pathKind(ds.name)) return [ds.name];
  const repoId = ds.name === "pile-10k" ? DEFAULT_DATASET : ds.name;
  const snapshot = await resolveDatasetCacheDir(repoId, env);
  if (snapshot) {
    const all = (await listFiles(snapshot)).filter((f) => f.endsWith(".parquet") || f.endsWith(".jsonl"));
    // AutoRound loads the "train" split of pile-10k; keep files named for the split when some are.
    const splits = ds.split ?? ["train"];
    const named = all.filter((f) =>
      splits.some((s) =>
        new RegExp(`(^|[/_.-])${s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}([/_.-]|$)`).test(
          f.slice(snapshot.length),
        )
      )
    );
    const files = named.length ? named : all;
    if (files.length) return files;
  }
  const looked = `${hubCacheDir(env)}/datasets--${repoId.replaceAll("/", "--")}/snapshots/`;
  throw new UsageError(
    `calibration data set "${ds.name}" is not a local file and not in the local Hugging Face cache ` +
      `(looked in ${looked}); pass --dataset FILE (.jsonl with "text", .txt, .parquet, .safetensors of input_ids, or a folder)`,
  );
}

// ---- small helpers ----

function packRows(
  rows: number[][],
  seqlen: number,
  pad: number | undefined,
  warnings: string[],
  source: string,
): CalibrationSet {
  const ids = new Int32Array(rows.length * seqlen);
  const lossMask = new Uint8Array(rows.length * seqlen);
  rows.forEach((row, r) => {
    ids.set(row, r * seqlen);
    lossMask.set(lossMaskOf(row, pad), r * seqlen);
  });
  return { nsamples: rows.length, seqlen, ids, lossMask, warnings, source };
}

/** AutoRound's `apply_chat_template_to_samples`: system + user turn, generation prompt; on a template error, retry without the system turn. */
function chatRenderer(tok: Tokenizer, systemPrompt: string): (text: string) => string {
  return (text) => {
    const user = { role: "user", content: text };
    if (systemPrompt === "") return tok.applyChatTemplate([user]);
    try {
      return tok.applyChatTemplate([{ role: "system", content: systemPrompt }, user]);
    } catch (e) {
      if (e instanceof InputError) throw e; // no template at all
      return tok.applyChatTemplate([user]);
    }
  };
}

function describeOptions(ds: DatasetSpec): string {
  const opts = [
    ds.num !== undefined ? `num=${ds.num}` : "",
    ds.concat ? "concat" : "",
    ds.applyChatTemplate ? "apply_chat_template" : "",
  ].filter(Boolean);
  return opts.length ? ` (${opts.join(", ")})` : "";
}

/** Python's `xs[a:b]` for a 1-D list (negative bounds count from the end). */
function pySlice<T>(xs: T[], a: number, b: number): T[] {
  const norm = (i: number) => (i < 0 ? Math.max(0, xs.length + i) : Math.min(i, xs.length));
  return xs.slice(norm(a), norm(b));
}
