/**
 * The safetensors file format (https://huggingface.co/docs/safetensors, "Format"): 8 bytes
 * little-endian u64 `N`, then `N` bytes of UTF-8 JSON mapping tensor names to `{dtype, shape,
 * data_offsets: [begin, end]}` (offsets relative to the data area, which starts at byte `8 + N`), plus
 * an optional `__metadata__` map of strings; then the data area. The header may be padded at the end
 * with spaces (0x20). Here: that header parsed and validated against its file, one opened shard with
 * positioned reads, Hugging Face's index name, and the path helpers reader.ts and writer.ts share.
 */
import { FormatError, InputError, plainName, quote } from "../../errors.ts";
import { ST_DTYPE_BYTES, type StDType } from "../../tensor/dtype.ts";

/** Where one tensor lives: its type, shape, file and absolute byte range `[start, end)` in that file. */
export interface TensorInfo {
  name: string;
  dtype: StDType;
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** First byte of the tensor in `file` (absolute, header included). */
  start: number;
  /** One past the last byte of the tensor in `file`. */
  end: number;
}

/** safetensors' own limit (`MAX_HEADER_SIZE` in safetensors/src/tensor.rs): 100 MB. */
const MAX_HEADER_BYTES = 100_000_000;
/** Hugging Face's name for the index of a sharded checkpoint (transformers `SAFE_WEIGHTS_INDEX_NAME`). */
export const INDEX_SUFFIX = ".safetensors.index.json";

// ---------------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------------

// Plain POSIX string handling rather than node:path, which `deno check` cannot type here (no
// @types/node with nodeModulesDir "manual"). The targets are Linux machines.

/** `p` made absolute against the working folder, with `.`, `..` and repeated `/` removed. */
export function absolutePath(p: string): string {
  const parts: string[] = [];
  for (const seg of (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`).split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== "" && seg !== ".") parts.push(seg);
  }
  return "/" + parts.join("/");
}

export const join = (dir: string, name: string) => (dir.endsWith("/") ? dir + name : `${dir}/${name}`);
export const dirname = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";
export const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);

// ---------------------------------------------------------------------------------------------------
// One shard
// ---------------------------------------------------------------------------------------------------

/** One open `.safetensors` file. Reads are serialized because `seek` + `read` share one cursor. */
export class ShardFile {
  #queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string, readonly file: Deno.FsFile, readonly size: number) {}

  /** Bytes [position, position + length); into `into`'s first `length` bytes when given (no allocation). */
  read(position: number, length: number, into?: Uint8Array): Promise<Uint8Array> {
    const next = this.#queue.then(() => readExact(this.file, position, length, this.path, into));
    this.#queue = next.catch(() => {});
    return next;
  }

  close(): void {
    this.file.close();
  }
}

async function readExact(
  file: Deno.FsFile,
  position: number,
  length: number,
  path: string,
  into?: Uint8Array,
) {
  if (into && into.length < length) throw new RangeError(`buffer of ${into.length} bytes for ${length}`);
  const out = into ? into.subarray(0, length) : new Uint8Array(length);
  await file.seek(position, Deno.SeekMode.Start);
  let filled = 0;
  while (filled < length) {
    const n = await file.read(out.subarray(filled));
    if (n === null) {
      throw new FormatError(
        `file ends at byte ${position + filled} but ${length} bytes were expected from byte ${position} ` +
          `(was it truncated after it was opened?)`,
        path,
      );
    }
    filled += n;
  }
  return out;
}

interface ParsedHeader {
  metadata: Record<string, string>;
  /** Tensors sorted by their position in the file. */
  tensors: TensorInfo[];
}

/**
 * Validate a header's JSON against the file it came from. `headerLen` is `N`; `fileSize` the file's
 * size, so that every range can be checked to lie inside the data area.
 */
function parseHeader(json: unknown, headerLen: number, fileSize: number, path: string): ParsedHeader {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new FormatError("header is not a JSON object", path);
  }
  const dataStart = 8 + headerLen;
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const tensors: TensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
        throw new FormatError("__metadata__ is not an object of strings", path);
      }
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== "string") {
          throw new FormatError(`__metadata__.${plainName(k)} is not a string`, path);
        }
        metadata[k] = v;
      }
      continue;
    }
    tensors.push(parseTensorEntry(name, entry, dataStart, dataSize, path));
  }
  tensors.sort((a, b) => a.start - b.start || a.end - b.end);
  checkNoOverlap(tensors, path);
  return { metadata, tensors };
}

function parseTensorEntry(name: string, entry: unknown, dataStart: number, dataSize: number, path: string) {
  const where = `tensor ${quote(name)}`;
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new FormatError(`${where}: entry is not an object`, path);
  }
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !Object.hasOwn(ST_DTYPE_BYTES, dtype)) {
    throw new FormatError(`${where}: unknown or unsupported dtype ${quote(dtype)}`, path);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(
      `${where}: shape ${quote(shape)} is not a list of non-negative integers`,
      path,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
  ) {
    throw new FormatError(
      `${where}: data_offsets ${quote(offsets)} is not [begin, end] with 0 <= begin <= end`,
      path,
    );
  }
  const [begin, end] = offsets as [number, number];
  const expected = shape.reduce((p: number, d: number) => p * d, 1) * ST_DTYPE_BYTES[dtype as StDType];
  if (end - begin !== expected) {
    throw new FormatError(
      `${where}: data_offsets span ${end - begin} bytes but ${dtype} ${quote(shape)} needs ${expected}`,
      path,
    );
  }
  if (end > dataSize) {
    throw new FormatError(
      `${where}: data_offsets end ${end} is past the end of the data area (${dataSize} bytes); ` +
        `is the file truncated?`,
      path,
    );
  }
  return { name, dtype: dtype as StDType, shape, file: path, start: dataStart + begin, end: dataStart + end };
}

function checkNoOverlap(sorted: TensorInfo[], path: string): void {
  let last: TensorInfo | undefined;
  for (const t of sorted) {
    if (t.start === t.end) continue; // an empty tensor occupies no bytes
    if (last && t.start < last.end) {
      throw new FormatError(
        `tensors ${quote(last.name)} and ${quote(t.name)} have overlapping data_offsets`,
        path,
      );
    }
    if (!last || t.end > last.end) last = t;
  }
}

export async function openShard(path: string): Promise<{ shard: ShardFile; header: ParsedHeader }> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new InputError(`cannot open: ${(e as Error).message}`, path);
  }
  try {
    const shard = new ShardFile(path, file, (await file.stat()).size);
    if (shard.size < 8) {
      throw new FormatError(`file is ${shard.size} bytes, shorter than the 8-byte header length`, path);
    }
    const lenBytes = await shard.read(0, 8);
    const headerLen = new DataView(lenBytes.buffer).getBigUint64(0, true);
    if (headerLen > BigInt(shard.size - 8) || headerLen > BigInt(MAX_HEADER_BYTES)) {
      throw new FormatError(
        `header length ${headerLen} is larger than the ${shard.size - 8} bytes after it` +
          ` or than the ${MAX_HEADER_BYTES}-byte limit`,
        path,
      );
    }
    const n = Number(headerLen);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(await shard.read(8, n)));
    } catch (e) {
      if (e instanceof FormatError) throw e;
      throw new FormatError(`header is not valid JSON: ${(e as Error).message}`, path);
    }
    return { shard, header: parseHeader(json, n, shard.size, path) };
  } catch (e) {
    file.close();
    throw e;
  }
}
