/**
 * The texts of a local calibration source, read as AutoRound reads them (calib_dataset.py
 * `get_local_dataset`): `.jsonl`/`.json` rows by its row rules, `.txt` documents separated by blank
 * lines, a `.parquet` file's `text` column, a folder of such files, each text `rstrip`ped like
 * Python's `str.rstrip()`; and the ready token rows of a `.safetensors` `input_ids` tensor. calib.ts
 * selects the samples from them.
 */
import { parquetMetadata, parquetReadObjects, parquetSchema } from "hyparquet";
import { FormatError, InputError, UsageError } from "../errors.ts";
import { SafetensorsReader } from "./safetensors/reader.ts";

const TEXT_EXTENSIONS = [".jsonl", ".json", ".txt", ".parquet"];

/**
 * The texts of one local source, in file order, each `rstrip`ped as Python's `str.rstrip()` does.
 *
 * - `.jsonl`: one JSON value a line (blank lines skipped); `.json`: a list, or a dict whose values are
 *   taken. A value is a string, an object with a single key (its value), or an object with `text`
 *   (AutoRound `get_local_dataset`).
 * - `.txt`: documents separated by one or more blank (whitespace-only) lines.
 * - `.parquet`: the `text` column.
 * - a folder: every such file below it, in path order, concatenated.
 *
 * @throws {FormatError} malformed JSON, a row without text, a parquet file without `text`
 * @example
 * ```ts
 * const texts = await readTexts("tests/fixtures/calib/docs.txt");
 * ```
 */
export async function readTexts(path: string): Promise<string[]> {
  const kind = await pathKind(path);
  if (kind === undefined) throw new InputError("no such file or folder", path);
  if (kind === "dir") {
    const files = (await listFiles(path)).filter((f) => TEXT_EXTENSIONS.some((e) => f.endsWith(e)));
    if (files.length === 0) {
      throw new InputError(`no ${TEXT_EXTENSIONS.join("/")} files in this folder`, path);
    }
    const out: string[] = [];
    for (const f of files) out.push(...(await readTexts(f)));
    return out;
  }
  const raw = await readFileTexts(path);
  return raw.map((t) => pyRstrip(t));
}

async function readFileTexts(path: string): Promise<string[]> {
  if (path.endsWith(".jsonl")) {
    const out: string[] = [];
    const lines = (await readText(path)).split(/\r\n|\r|\n/);
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      out.push(rowText(parseJson(line, `${path}:${i + 1}`), `${path}:${i + 1}`));
    });
    return out;
  }
  if (path.endsWith(".json")) {
    const text = await readText(path);
    const data = parseJson(text, path);
    const rows = Array.isArray(data)
      ? data
      : data && typeof data === "object"
      ? topLevelKeys(text).map((k) => (data as Record<string, unknown>)[k])
      : undefined;
    if (!rows) throw new FormatError("a .json calibration file must hold a list or an object", path);
    return rows.map((r, i) => rowText(r, `${path}[${i}]`));
  }
  if (path.endsWith(".txt")) return splitDocuments(await readText(path));
  if (path.endsWith(".parquet")) return await parquetTexts(path);
  throw new UsageError(
    `unsupported calibration file ${path}: use .jsonl (with "text"), .json, .txt, .parquet, .safetensors (input_ids) or a folder`,
  );
}

/** AutoRound's row rules; anything else is its `TypeError("data must be a string")`. */
function rowText(row: unknown, where: string): string {
  if (typeof row === "string") return row;
  if (row && typeof row === "object" && !Array.isArray(row)) {
    const obj = row as Record<string, unknown>;
    const keys = Object.keys(obj);
    const text = keys.length === 1 ? obj[keys[0]] : obj.text;
    if (typeof text === "string") return text;
  }
  throw new FormatError(
    `calibration row is not a string, a one-key object, or an object with a "text" string`,
    where,
  );
}

/** Documents separated by one or more whitespace-only lines; lines inside a document keep "\n". */
function splitDocuments(text: string): string[] {
  const docs: string[] = [];
  let current: string[] = [];
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line.trim() === "") {
      if (current.length) docs.push(current.join("\n"));
      current = [];
    } else current.push(line);
  }
  if (current.length) docs.push(current.join("\n"));
  return docs;
}

async function parquetTexts(path: string): Promise<string[]> {
  const bytes = await readBytes(path);
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  let rows: Record<string, unknown>[];
  try {
    const metadata = parquetMetadata(file);
    const columns = parquetSchema(metadata).children.map((c) => c.element.name);
    if (!columns.includes("text")) {
      throw new FormatError(`parquet file has no "text" column (columns: ${columns.join(", ")})`, path);
    }
    rows = await parquetReadObjects({ file, metadata, columns: ["text"] });
  } catch (e) {
    if (e instanceof FormatError) throw e;
    throw new FormatError(`cannot read parquet: ${(e as Error).message}`, path);
  }
  return rows.map((r, i) => {
    if (typeof r.text !== "string") throw new FormatError(`row ${i}: "text" is not a string`, path);
    return r.text;
  });
}

/** The integer `input_ids` [n, len] tensor of a safetensors file, as int32 token ids. */
export async function readInputIds(path: string): Promise<{ shape: number[]; values: Int32Array }> {
  using st = await SafetensorsReader.open(path);
  if (!st.has("input_ids")) {
    throw new FormatError(`no "input_ids" tensor (tensors: ${st.names().join(", ")})`, path);
  }
  const { dtype, shape } = st.info("input_ids");
  if (shape.length !== 2) throw new FormatError(`input_ids must be 2-D [n, seqlen], got [${shape}]`, path);
  const bytes = await st.readBytes("input_ids");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const read: Partial<Record<string, [number, (at: number) => number]>> = {
    I64: [8, (at) => Number(view.getBigInt64(at, true))],
    I32: [4, (at) => view.getInt32(at, true)],
    U32: [4, (at) => view.getUint32(at, true)],
    I16: [2, (at) => view.getInt16(at, true)],
    U16: [2, (at) => view.getUint16(at, true)],
    U8: [1, (at) => view.getUint8(at)],
  };
  const reader = read[dtype];
  if (!reader) throw new FormatError(`input_ids dtype ${dtype} is not an integer type`, path);
  const [width, get] = reader;
  const values = new Int32Array(shape[0] * shape[1]);
  for (let i = 0; i < values.length; i++) {
    const v = get(i * width);
    if (v < 0 || v > 0x7fffffff) throw new FormatError(`input_ids[${i}] = ${v} is not a token id`, path);
    values[i] = v;
  }
  return { shape, values };
}

/** Python's `str.rstrip()`: drops trailing characters for which `str.isspace()` is true. */
export function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && PY_SPACE.has(s.charCodeAt(end - 1))) end--;
  return s.slice(0, end);
}

/** Code points with Python `str.isspace()` true (all in the BMP); JS `\s` differs (U+FEFF, U+001C-1F, U+0085). */
const PY_SPACE = new Set([
  0x09,
  0x0a,
  0x0b,
  0x0c,
  0x0d,
  0x1c,
  0x1d,
  0x1e,
  0x1f,
  0x20,
  0x85,
  0xa0,
  0x1680,
  0x2000,
  0x2001,
  0x2002,
  0x2003,
  0x2004,
  0x2005,
  0x2006,
  0x2007,
  0x2008,
  0x2009,
  0x200a,
  0x2028,
  0x2029,
  0x202f,
  0x205f,
  0x3000,
]);

/**
 * The keys of a top-level JSON object in file order, each once. Python's dict keeps that order; a JS
 * object puts integer-like keys first, so `Object.values` would reorder `{"b": .., "1": ..}`.
 */
function topLevelKeys(json: string): string[] {
  const keys = new Set<string>();
  let depth = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === "\\" ? 2 : 1;
      let k = j + 1;
      while (" \t\r\n".includes(json[k])) k++;
      if (depth === 1 && json[k] === ":") keys.add(JSON.parse(json.slice(i, j + 1)) as string);
      i = j;
    }
  }
  return [...keys];
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormatError(`not valid JSON: ${(e as Error).message}`, where);
  }
}

export async function pathKind(path: string): Promise<"file" | "dir" | undefined> {
  try {
    const st = await Deno.stat(path);
    return st.isDirectory ? "dir" : "file";
  } catch {
    return undefined;
  }
}

export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    const kind = e.isSymlink ? await pathKind(p) : e.isDirectory ? "dir" : "file";
    if (kind === "dir") out.push(...(await listFiles(p)));
    else if (kind === "file") out.push(p);
  }
  return out.sort();
}

async function readText(path: string): Promise<string> {
  return new TextDecoder().decode(await readBytes(path));
}

export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new InputError(`cannot read: ${(e as Error).message}`, path);
  }
}
