/**
 * Safetensors checkpoints: a validating, lazy reader (one file, a sharded folder, or a folder of
 * files) and a streaming, sharding writer that names its output as Hugging Face does.
 *
 * Format (https://huggingface.co/docs/safetensors, "Format"): 8 bytes little-endian u64 `N`, then `N`
 * bytes of UTF-8 JSON mapping tensor names to `{dtype, shape, data_offsets: [begin, end]}` (offsets
 * relative to the data area, which starts at byte `8 + N`), plus an optional `__metadata__` map of
 * strings; then the data area. The header may be padded at the end with spaces (0x20).
 *
 * Only headers are kept in memory; each tensor is read with one positioned read when asked for.
 */

import { FormatError, InputError, UsageError } from "../errors.ts";
import { decodeFloats, ST_DTYPE_BYTES, type StDType } from "../tensor/dtype.ts";

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
const INDEX_SUFFIX = ".safetensors.index.json";

// ---------------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------------

// Plain POSIX string handling rather than node:path, which `deno check` cannot type here (no
// @types/node with nodeModulesDir "manual"). The targets are Linux machines.

/** `p` made absolute against the working folder, with `.`, `..` and repeated `/` removed. */
function absolutePath(p: string): string {
  const parts: string[] = [];
  for (const seg of (p.startsWith("/") ? p : `${Deno.cwd()}/${p}`).split("/")) {
    if (seg === "..") parts.pop();
    else if (seg !== "" && seg !== ".") parts.push(seg);
  }
  return "/" + parts.join("/");
}

const join = (dir: string, name: string) => (dir.endsWith("/") ? dir + name : `${dir}/${name}`);
const dirname = (p: string) => p.slice(0, p.lastIndexOf("/")) || "/";
const basename = (p: string) => p.slice(p.lastIndexOf("/") + 1);

// ---------------------------------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------------------------------

/** One open `.safetensors` file. Reads are serialized because `seek` + `read` share one cursor. */
class ShardFile {
  #queue: Promise<unknown> = Promise.resolve();

  constructor(readonly path: string, readonly file: Deno.FsFile, readonly size: number) {}

  read(position: number, length: number): Promise<Uint8Array> {
    const next = this.#queue.then(() => readExact(this.file, position, length, this.path));
    this.#queue = next.catch(() => {});
    return next;
  }

  close(): void {
    this.file.close();
  }
}

async function readExact(file: Deno.FsFile, position: number, length: number, path: string) {
  const out = new Uint8Array(length);
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
        if (typeof v !== "string") throw new FormatError(`__metadata__.${k} is not a string`, path);
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
  const where = `tensor "${name}"`;
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new FormatError(`${where}: entry is not an object`, path);
  }
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !Object.hasOwn(ST_DTYPE_BYTES, dtype)) {
    throw new FormatError(`${where}: unknown or unsupported dtype ${JSON.stringify(dtype)}`, path);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(
      `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`,
      path,
    );
  }
  if (
    !Array.isArray(offsets) || offsets.length !== 2 ||
    !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
  ) {
    throw new FormatError(
      `${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end] with 0 <= begin <= end`,
      path,
    );
  }
  const [begin, end] = offsets as [number, number];
  const expected = shape.reduce((p: number, d: number) => p * d, 1) * ST_DTYPE_BYTES[dtype as StDType];
  if (end - begin !== expected) {
    throw new FormatError(
      `${where}: data_offsets span ${end - begin} bytes but ${dtype} ${
        JSON.stringify(shape)
      } needs ${expected}`,
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
      throw new FormatError(`tensors "${last.name}" and "${t.name}" have overlapping data_offsets`, path);
    }
    if (!last || t.end > last.end) last = t;
  }
}

async function openShard(path: string): Promise<{ shard: ShardFile; header: ParsedHeader }> {
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

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new InputError(`cannot read: ${(e as Error).message}`, path);
  }
}

/**
 * Lazy reader of a safetensors checkpoint. Holds the headers and one open handle per file; tensor
 * bytes are read on demand, one positioned read per tensor.
 *
 * @example
 * ```ts
 * using st = await SafetensorsReader.open("tests/fixtures/stories260K");
 * const w = await st.readF32("model.norm.weight");
 * console.log(st.info("model.norm.weight").shape, w[0]);
 * ```
 */
export class SafetensorsReader implements Disposable {
  readonly #shards: ShardFile[];
  readonly #tensors: Map<string, { info: TensorInfo; shard: ShardFile }>;
  readonly #metadata: Record<string, string>;
  #closed = false;

  private constructor(
    shards: ShardFile[],
    tensors: Map<string, { info: TensorInfo; shard: ShardFile }>,
    metadata: Record<string, string>,
  ) {
    this.#shards = shards;
    this.#tensors = tensors;
    this.#metadata = metadata;
  }

  /**
   * Open `path`: a `.safetensors` file; a `*.safetensors.index.json` file; or a folder holding
   * `model.safetensors.index.json` (sharded), else `model.safetensors`, else any `*.safetensors`
   * files (all of them, in name order). Throws InputError for missing paths and FormatError for
   * files that break the format.
   */
  static async open(path: string): Promise<SafetensorsReader> {
    const abs = absolutePath(path);
    const st = await statOrUndefined(abs);
    if (!st) throw new InputError("no such file or folder", abs);
    if (st.isFile) {
      return abs.endsWith(INDEX_SUFFIX)
        ? await SafetensorsReader.#openIndex(abs)
        : await SafetensorsReader.#fromShards([abs]);
    }
    const index = join(abs, "model" + INDEX_SUFFIX);
    if (await statOrUndefined(index)) return await SafetensorsReader.#openIndex(index);
    const single = join(abs, "model.safetensors");
    if (await statOrUndefined(single)) return await SafetensorsReader.#fromShards([single]);
    const all: string[] = [];
    for await (const e of Deno.readDir(abs)) {
      if (e.isFile && e.name.endsWith(".safetensors")) all.push(join(abs, e.name));
    }
    if (all.length === 0) throw new InputError("no .safetensors files in this folder", abs);
    return await SafetensorsReader.#fromShards(all.sort());
  }

  /** Open the shards; `wanted` (name → shard path, from an index) restricts and checks the names. */
  static async #fromShards(
    paths: string[],
    wanted?: Map<string, string>,
    indexPath?: string,
  ): Promise<SafetensorsReader> {
    const shards: ShardFile[] = [];
    try {
      const tensors = new Map<string, { info: TensorInfo; shard: ShardFile }>();
      let metadata: Record<string, string> | undefined;
      for (const path of paths) {
        const { shard, header } = await openShard(path);
        shards.push(shard);
        metadata ??= header.metadata;
        for (const info of header.tensors) {
          if (wanted && wanted.get(info.name) !== path) continue; // the index is authoritative
          if (tensors.has(info.name)) {
            throw new FormatError(
              `tensor "${info.name}" also appears in ${tensors.get(info.name)!.info.file}`,
              path,
            );
          }
          tensors.set(info.name, { info, shard });
        }
      }
      for (const [name, path] of wanted ?? []) {
        if (!tensors.has(name)) {
          throw new FormatError(
            `index maps "${name}" to ${basename(path)}, which does not contain it`,
            indexPath,
          );
        }
      }
      return new SafetensorsReader(shards, tensors, metadata ?? {});
    } catch (e) {
      for (const s of shards) s.close();
      throw e;
    }
  }

  /** Read `weight_map` and open each shard it names once. */
  static async #openIndex(indexPath: string): Promise<SafetensorsReader> {
    let text: string;
    try {
      text = await Deno.readTextFile(indexPath);
    } catch (e) {
      throw new InputError(`cannot read: ${(e as Error).message}`, indexPath);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new FormatError(`index is not valid JSON: ${(e as Error).message}`, indexPath);
    }
    const map = (json as { weight_map?: unknown } | null)?.weight_map;
    if (typeof map !== "object" || map === null || Array.isArray(map)) {
      throw new FormatError("index has no weight_map object", indexPath);
    }
    const dir = dirname(indexPath);
    const wanted = new Map<string, string>();
    const shardNames = new Set<string>();
    for (const [name, file] of Object.entries(map)) {
      if (typeof file !== "string" || /^\.{0,2}$|[/\\]/.test(file)) {
        throw new FormatError(`weight_map["${name}"] is not a file name in the index's folder`, indexPath);
      }
      wanted.set(name, join(dir, file));
      shardNames.add(file);
    }
    for (const file of shardNames) {
      if (!(await statOrUndefined(join(dir, file)))) {
        throw new InputError(`shard ${file} listed in the index does not exist`, indexPath);
      }
    }
    const paths = [...shardNames].sort().map((f) => join(dir, f));
    return await SafetensorsReader.#fromShards(paths, wanted, indexPath);
  }

  /** Tensor names in the order their bytes appear (files in index / name order). */
  names(): string[] {
    return [...this.#tensors.keys()];
  }

  /** Whether the checkpoint has a tensor of this name. */
  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /** Type, shape and location of a tensor; FormatError if it is absent. */
  info(name: string): TensorInfo {
    const { info } = this.#entry(name);
    return { ...info, shape: [...info.shape] };
  }

  /** The `__metadata__` strings of the first file. */
  metadata(): Record<string, string> {
    return { ...this.#metadata };
  }

  /** The raw little-endian bytes of one tensor (one positioned read). */
  async readBytes(name: string): Promise<Uint8Array> {
    if (this.#closed) throw new Error("SafetensorsReader is closed");
    const { info, shard } = this.#entry(name);
    return await shard.read(info.start, info.end - info.start);
  }

  /** Bytes `[offset, offset + length)` of one tensor's data (one positioned read). */
  async readRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    if (this.#closed) throw new Error("SafetensorsReader is closed");
    const { info, shard } = this.#entry(name);
    if (offset < 0 || length < 0 || info.start + offset + length > info.end) {
      throw new RangeError(
        `bytes ${offset}+${length} outside tensor "${name}" (${info.end - info.start} bytes)`,
      );
    }
    return await shard.read(info.start + offset, length);
  }

  /** A float tensor (F32, F16, BF16 or F64) as f32 values; FormatError for other dtypes. */
  async readF32(name: string): Promise<Float32Array> {
    const { info } = this.#entry(name);
    if (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16" && info.dtype !== "F64") {
      throw new FormatError(
        `tensor "${name}" is ${info.dtype}, not a float type (F32/F16/BF16/F64)`,
        info.file,
      );
    }
    return decodeFloats(await this.readBytes(name), info.dtype);
  }

  /** An I32 tensor (e.g. packed quantized weights); FormatError for other dtypes. */
  async readInt32(name: string): Promise<Int32Array> {
    const { info } = this.#entry(name);
    if (info.dtype !== "I32") throw new FormatError(`tensor "${name}" is ${info.dtype}, not I32`, info.file);
    // readBytes returns a fresh buffer at offset 0, so the view is aligned; safetensors is
    // little-endian, as is every platform Deno runs on.
    const bytes = await this.readBytes(name);
    return new Int32Array(bytes.buffer, 0, bytes.byteLength / 4);
  }

  /** Close every file handle. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#shards) s.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #entry(name: string) {
    const t = this.#tensors.get(name);
    if (!t) throw new FormatError(`no tensor named "${name}"`, this.#shards[0]?.path);
    return t;
  }
}

// ---------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------

/** Options of {@link SafetensorsWriter}. */
export interface SafetensorsWriterOptions {
  /** Most data bytes per shard (see {@link parseSize}); a larger single tensor gets a shard alone. */
  maxShardSize: number;
  /** File name stem: `model` gives `model.safetensors` / `model-00001-of-00002.safetensors`. */
  prefix?: string;
  /**
   * Bytes reserved for each shard's JSON header in front of its data (rounded up to 8). Headers that
   * fit are written into it, padded with spaces; others cost one copy of the shard. Default 256 KiB.
   */
  headerReserve?: number;
}

interface ShardEntry {
  name: string;
  dtype: StDType;
  shape: number[];
  begin: number;
  end: number;
}

interface PendingShard {
  /** Temporary path; renamed once the number of shards is known. */
  tmpPath: string;
  entries: ShardEntry[];
  dataBytes: number;
}

/** Below this many data bytes per reserved header byte, a shard is compacted rather than padded. */
const COMPACT_RATIO = 64;
const COPY_CHUNK = 8 << 20;

/**
 * Streams tensors to disk as sharded safetensors files named as Hugging Face names them.
 *
 * Header approach: each shard's data is written straight after a reserved header region
 * (`headerReserve`, 256 KiB by default), because the header (which must come first) is only known
 * once the shard is complete, and only at {@link finish} for the `__metadata__`. At `finish`, a
 * header that fits is written into the reserve and padded with spaces, which the format allows
 * ("the header MAY be trailing padded with whitespace"); a header too big for the reserve, or a
 * shard so small that the padding would be a noticeable part of it (data under 64 × the reserve), is
 * instead written to a new file followed by a copy of the data. Either way shard boundaries depend
 * only on tensor sizes, as in Hugging Face's sharding, and the data area starts 8-byte aligned.
 * Memory stays at one tensor (the caller's) plus an 8 MiB copy buffer.
 *
 * @example
 * ```ts
 * await using w = new SafetensorsWriter("out", { maxShardSize: parseSize("5GB") });
 * await w.add("w", "F32", [2], new Uint8Array(8));
 * const files = await w.finish({ quantized_by: "autoround" }); // ["model.safetensors"]
 * ```
 */
export class SafetensorsWriter implements AsyncDisposable {
  readonly #dir: string;
  readonly #maxShardSize: number;
  readonly #prefix: string;
  readonly #reserve: number;
  readonly #tag = `${Deno.pid}-${Math.random().toString(36).slice(2, 10)}`;
  readonly #shards: PendingShard[] = [];
  readonly #names = new Set<string>();
  #current?: { shard: PendingShard; file: Deno.FsFile };
  #totalSize = 0;
  #busy = false;
  /** `failed`: a write failed, so the shard on disk no longer matches the bookkeeping. */
  #state: "open" | "failed" | "finished" | "aborted" = "open";

  constructor(dir: string, options: SafetensorsWriterOptions) {
    if (!Number.isSafeInteger(options.maxShardSize) || options.maxShardSize <= 0) {
      throw new UsageError(`max shard size must be a positive number of bytes, got ${options.maxShardSize}`);
    }
    const reserve = options.headerReserve ?? 256 * 1024;
    if (!Number.isSafeInteger(reserve) || reserve < 0) {
      throw new UsageError(`header reserve must be a whole number of bytes >= 0, got ${reserve}`);
    }
    this.#dir = absolutePath(dir);
    this.#maxShardSize = options.maxShardSize;
    this.#prefix = options.prefix ?? "model";
    this.#reserve = Math.ceil(reserve / 8) * 8;
  }

  /** Append one tensor; its bytes go to disk before this resolves. Calls must not overlap. */
  async add(name: string, dtype: StDType, shape: number[], data: Uint8Array): Promise<void> {
    if (this.#state !== "open") throw new Error(`SafetensorsWriter.add when ${this.#state}`);
    if (this.#busy) throw new Error("SafetensorsWriter.add called before the previous add finished");
    this.#checkTensor(name, dtype, shape, data);
    this.#busy = true;
    try {
      const cur = this.#current;
      if (cur && cur.shard.entries.length > 0 && cur.shard.dataBytes + data.byteLength > this.#maxShardSize) {
        this.#closeCurrent();
      }
      const { shard, file } = this.#current ?? await this.#openShard();
      try {
        await writeAll(file, data);
      } catch (e) {
        // The shard now holds bytes no header describes: refuse further use rather than misplace data.
        this.#state = "failed";
        throw new InputError(`cannot write shards: ${(e as Error).message}`, this.#dir);
      }
      const begin = shard.dataBytes;
      shard.dataBytes += data.byteLength;
      shard.entries.push({ name, dtype, shape: [...shape], begin, end: shard.dataBytes });
      this.#names.add(name);
      this.#totalSize += data.byteLength;
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Write headers, give the shards their final names (and write `<prefix>.safetensors.index.json`
   * when there are several). `metadata` is merged over `{"format": "pt"}` into every shard's
   * `__metadata__`. Returns the file names written, index last.
   */
  async finish(metadata: Record<string, string> = {}): Promise<string[]> {
    if (this.#state !== "open") throw new Error(`SafetensorsWriter.finish when ${this.#state}`);
    if (this.#busy) throw new Error("SafetensorsWriter.finish called while add is running");
    this.#state = "finished";
    const written: string[] = [];
    try {
      if (this.#shards.length === 0 && !this.#current) await this.#openShard(); // empty checkpoint
      this.#closeCurrent();
      const n = this.#shards.length;
      const names = this.#shards.map((_, i) =>
        n === 1 ? `${this.#prefix}.safetensors` : `${this.#prefix}-${pad5(i + 1)}-of-${pad5(n)}.safetensors`
      );
      const meta = { format: "pt", ...metadata };
      for (const [i, shard] of this.#shards.entries()) {
        await this.#writeHeader(shard, meta);
        await Deno.rename(shard.tmpPath, join(this.#dir, names[i]));
        shard.tmpPath = "";
        written.push(join(this.#dir, names[i]));
      }
      if (n === 1) return names;
      const index = indexJson(this.#totalSize, this.#shards, names);
      const indexName = this.#prefix + INDEX_SUFFIX;
      await Deno.writeTextFile(join(this.#dir, indexName), index);
      return [...names, indexName];
    } catch (e) {
      this.#state = "failed";
      await this.#removeTemps();
      for (const p of written) await Deno.remove(p).catch(() => {});
      if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.PermissionDenied) {
        throw new InputError(`cannot write shards: ${(e as Error).message}`, this.#dir);
      }
      throw e;
    }
  }

  /** Close and delete the temporary shard files; nothing is left behind. */
  async abort(): Promise<void> {
    if (this.#state === "finished") return;
    this.#state = "aborted";
    await this.#removeTemps();
  }

  /** Aborts unless {@link finish} succeeded. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.abort();
  }

  #checkTensor(name: string, dtype: StDType, shape: number[], data: Uint8Array): void {
    if (name === "" || name === "__metadata__") {
      throw new FormatError(`invalid tensor name "${name}"`, this.#dir);
    }
    if (this.#names.has(name)) throw new FormatError(`tensor "${name}" was already written`, this.#dir);
    if (!Object.hasOwn(ST_DTYPE_BYTES, dtype)) throw new FormatError(`unknown dtype ${dtype}`, this.#dir);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FormatError(`tensor "${name}": bad shape ${JSON.stringify(shape)}`, this.#dir);
    }
    const expected = shape.reduce((p, d) => p * d, 1) * ST_DTYPE_BYTES[dtype];
    if (data.byteLength !== expected) {
      throw new FormatError(
        `tensor "${name}": ${data.byteLength} bytes given, ${dtype} ${
          JSON.stringify(shape)
        } needs ${expected}`,
        this.#dir,
      );
    }
  }

  async #openShard(): Promise<{ shard: PendingShard; file: Deno.FsFile }> {
    const k = this.#shards.length + 1;
    const tmpPath = join(this.#dir, `.${this.#prefix}.partial-${this.#tag}-${k}.safetensors`);
    let file: Deno.FsFile;
    try {
      await Deno.mkdir(this.#dir, { recursive: true });
      file = await Deno.open(tmpPath, { write: true, create: true, truncate: true });
    } catch (e) {
      throw new InputError(`cannot write shards: ${(e as Error).message}`, this.#dir);
    }
    const shard: PendingShard = { tmpPath, entries: [], dataBytes: 0 };
    this.#shards.push(shard);
    this.#current = { shard, file };
    await file.seek(8 + this.#reserve, Deno.SeekMode.Start);
    return this.#current;
  }

  #closeCurrent(): void {
    this.#current?.file.close();
    this.#current = undefined;
  }

  async #writeHeader(shard: PendingShard, meta: Record<string, string>): Promise<void> {
    const json = new TextEncoder().encode(headerJson(meta, shard.entries));
    const dataStart = 8 + this.#reserve;
    if (json.byteLength <= this.#reserve && shard.dataBytes >= COMPACT_RATIO * this.#reserve) {
      using file = await Deno.open(shard.tmpPath, { write: true });
      await writeAll(file, headerBytes(json, this.#reserve));
      return;
    }
    const compactPath = shard.tmpPath + ".compact";
    {
      using src = await Deno.open(shard.tmpPath, { read: true });
      using dst = await Deno.open(compactPath, { write: true, create: true, truncate: true });
      await writeAll(dst, headerBytes(json, Math.ceil(json.byteLength / 8) * 8));
      await src.seek(dataStart, Deno.SeekMode.Start);
      const buf = new Uint8Array(Math.min(COPY_CHUNK, Math.max(shard.dataBytes, 1)));
      for (let left = shard.dataBytes; left > 0;) {
        const n = await src.read(buf.subarray(0, Math.min(buf.length, left)));
        if (n === null) throw new FormatError("temporary shard file ended early", shard.tmpPath);
        await writeAll(dst, buf.subarray(0, n));
        left -= n;
      }
    }
    await Deno.rename(compactPath, shard.tmpPath);
  }

  async #removeTemps(): Promise<void> {
    this.#closeCurrent();
    for (const s of this.#shards) {
      for (const p of s.tmpPath ? [s.tmpPath, s.tmpPath + ".compact"] : []) {
        await Deno.remove(p).catch(() => {});
      }
    }
  }
}

/** 8-byte length + JSON + spaces up to `paddedLen` bytes of header. */
function headerBytes(json: Uint8Array, paddedLen: number): Uint8Array {
  const out = new Uint8Array(8 + paddedLen).fill(0x20, 8 + json.byteLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(paddedLen), true);
  out.set(json, 8);
  return out;
}

/**
 * The header JSON, `__metadata__` first, then tensors in insertion order. Built by hand because
 * JavaScript objects put integer-like keys ("0", "1") first, which would reorder tensor names.
 */
function headerJson(meta: Record<string, string>, entries: ShardEntry[]): string {
  const parts = [`"__metadata__":${JSON.stringify(meta)}`];
  for (const e of entries) {
    const value = { dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.end] };
    parts.push(`${JSON.stringify(e.name)}:${JSON.stringify(value)}`);
  }
  return `{${parts.join(",")}}`;
}

/**
 * `model.safetensors.index.json` as transformers writes it: `json.dumps(index, indent=2,
 * sort_keys=True) + "\n"` (modeling_utils.save_pretrained), so keys are sorted by code point and
 * non-ASCII is escaped as `\uXXXX`, which JSON.stringify alone would not do.
 */
function indexJson(totalSize: number, shards: PendingShard[], files: string[]): string {
  const pairs: [string, string][] = [];
  shards.forEach((s, i) => s.entries.forEach((e) => pairs.push([e.name, files[i]])));
  pairs.sort(([a], [b]) => compareCodePoints(a, b));
  // Object.fromEntries would move integer-like names first; write weight_map by hand instead.
  const body = pairs.map(([k, v]) => `    ${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(",\n");
  const text =
    `{\n  "metadata": {\n    "total_size": ${totalSize}\n  },\n  "weight_map": {\n${body}\n  }\n}\n`;
  return text.replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));
}

function compareCodePoints(a: string, b: string): number {
  const x = [...a], y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

const pad5 = (n: number) => String(n).padStart(5, "0");

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.byteLength;) off += await file.write(data.subarray(off));
}

// ---------------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------------

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  TB: 1e12,
  KIB: 2 ** 10,
  MIB: 2 ** 20,
  GIB: 2 ** 30,
  TIB: 2 ** 40,
};

/**
 * Bytes in a shard-size string, with Hugging Face's convention (huggingface_hub
 * `convert_file_size_to_int`): `GB` = 10^9, `GiB` = 2^30, and a lowercase final `b` ("5Gb") means
 * bits. A number is taken as bytes. Throws UsageError for anything else.
 *
 * @example
 * ```ts
 * parseSize("5GB"); // 5_000_000_000
 * parseSize("2GiB"); // 2_147_483_648
 * ```
 */
export function parseSize(size: string | number): number {
  if (typeof size === "number") {
    if (Number.isSafeInteger(size) && size > 0) return size;
    throw new UsageError(`size must be a positive whole number of bytes, got ${size}`);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(size);
  const unit = m ? SIZE_UNITS[m[2].toUpperCase()] : undefined;
  if (!m || unit === undefined) {
    throw new UsageError(`size "${size}" is not a number with a unit such as 500MB, 5GB or 2GiB`);
  }
  const isBits = m[2].length === 2 && m[2].endsWith("b"); // "Gb" is bits; "GiB"/"Gib" never are
  const bytes = Math.floor((Number(m[1]) * unit) / (isBits ? 8 : 1));
  if (!(bytes > 0) || !Number.isSafeInteger(bytes)) throw new UsageError(`size "${size}" is out of range`);
  return bytes;
}
