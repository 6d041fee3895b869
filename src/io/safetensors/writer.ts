/**
 * A streaming, sharding safetensors writer that names its output as Hugging Face does
 * (`model.safetensors`, or `model-00001-of-00002.safetensors` with `model.safetensors.index.json`),
 * and `parseSize` for `--max_shard_size`. The format itself is format.ts.
 */
import { FormatError, InputError, isOsError, UsageError } from "../../errors.ts";
import { ST_DTYPE_BYTES, type StDType } from "../../tensor/dtype.ts";
import { absolutePath, INDEX_SUFFIX, join } from "./format.ts";

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
    this.#checkTensor(name, dtype, shape, data.byteLength);
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
   * Append one tensor read from `src` in pieces of at most `pieceBytes` (the whole tensor is never in
   * memory); same rules as {@link add}.
   */
  async addFrom(
    name: string,
    dtype: StDType,
    shape: number[],
    src: { byteLength: number; read(offset: number, length: number): Promise<Uint8Array> },
    pieceBytes = 64 * 2 ** 20,
  ): Promise<void> {
    if (src.byteLength <= pieceBytes) {
      return await this.add(name, dtype, shape, await src.read(0, src.byteLength));
    }
    if (this.#state !== "open") throw new Error(`SafetensorsWriter.add when ${this.#state}`);
    if (this.#busy) throw new Error("SafetensorsWriter.add called before the previous add finished");
    this.#checkTensor(name, dtype, shape, src.byteLength);
    this.#busy = true;
    try {
      const cur = this.#current;
      if (cur && cur.shard.entries.length > 0 && cur.shard.dataBytes + src.byteLength > this.#maxShardSize) {
        this.#closeCurrent();
      }
      const { shard, file } = this.#current ?? await this.#openShard();
      for (let at = 0; at < src.byteLength; at += pieceBytes) {
        const piece = await src.read(at, Math.min(pieceBytes, src.byteLength - at));
        try {
          await writeAll(file, piece);
        } catch (e) {
          this.#state = "failed";
          throw new InputError(`cannot write shards: ${(e as Error).message}`, this.#dir);
        }
      }
      const begin = shard.dataBytes;
      shard.dataBytes += src.byteLength;
      shard.entries.push({ name, dtype, shape: [...shape], begin, end: shard.dataBytes });
      this.#names.add(name);
      this.#totalSize += src.byteLength;
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
      if (isOsError(e)) throw new InputError(`cannot write shards: ${e.message}`, this.#dir);
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

  #checkTensor(name: string, dtype: StDType, shape: number[], byteLength: number): void {
    if (name === "" || name === "__metadata__") {
      throw new FormatError(`invalid tensor name "${name}"`, this.#dir);
    }
    if (this.#names.has(name)) throw new FormatError(`tensor "${name}" was already written`, this.#dir);
    if (!Object.hasOwn(ST_DTYPE_BYTES, dtype)) throw new FormatError(`unknown dtype ${dtype}`, this.#dir);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new FormatError(`tensor "${name}": bad shape ${JSON.stringify(shape)}`, this.#dir);
    }
    const expected = shape.reduce((p, d) => p * d, 1) * ST_DTYPE_BYTES[dtype];
    if (byteLength !== expected) {
      throw new FormatError(
        `tensor "${name}": ${byteLength} bytes given, ${dtype} ${JSON.stringify(shape)} needs ${expected}`,
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
