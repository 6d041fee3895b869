/**
 * A validating, lazy safetensors reader: one file, a sharded folder (its `model.safetensors.index.json`)
 * or a folder of files. Only headers are kept in memory; each tensor is read with one positioned read
 * when asked for. The format itself is format.ts.
 */
import { FormatError, InputError, plainName, quote } from "../../errors.ts";
import { decodeFloats } from "../../tensor/dtype.ts";
import {
  absolutePath,
  basename,
  dirname,
  INDEX_SUFFIX,
  join,
  openShard,
  type ShardFile,
  type TensorInfo,
} from "./format.ts";

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
              `tensor ${quote(info.name)} also appears in ${tensors.get(info.name)!.info.file}`,
              path,
            );
          }
          tensors.set(info.name, { info, shard });
        }
      }
      for (const [name, path] of wanted ?? []) {
        if (!tensors.has(name)) {
          throw new FormatError(
            `index maps ${quote(name)} to ${basename(path)}, which does not contain it`,
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
      // A file name of this folder: no path, and within NAME_MAX (255 bytes on Linux file systems).
      if (typeof file !== "string" || /^\.{0,2}$|[/\\]/.test(file) || file.length > 255) {
        throw new FormatError(
          `weight_map[${quote(name)}] is not a file name in the index's folder`,
          indexPath,
        );
      }
      wanted.set(name, join(dir, file));
      shardNames.add(file);
    }
    for (const file of shardNames) {
      if (!(await statOrUndefined(join(dir, file)))) {
        throw new InputError(`shard ${plainName(file)} listed in the index does not exist`, indexPath);
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

  /**
   * The raw little-endian bytes of one tensor (one positioned read); read into the start of `into`
   * (and returned as its subarray) when given, so a caller streaming many tensors reuses one buffer.
   */
  async readBytes(name: string, into?: Uint8Array): Promise<Uint8Array> {
    if (this.#closed) throw new Error("SafetensorsReader is closed");
    const { info, shard } = this.#entry(name);
    return await shard.read(info.start, info.end - info.start, into);
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
