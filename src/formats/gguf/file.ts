/**
 * Reads GGUF files back: header, metadata and tensor infos (the layout is in writer.ts), tensor
 * bytes by positioned reads, and their dequantization (qmath/gguf/blocks.ts). io/gguf_model.ts
 * serves a file as a model's weights; summary.ts describes one for `autoround inspect`.
 */
import { FormatError, InputError, plainName, UnsupportedError } from "../../errors.ts";
import { dequantizeBytes } from "../../qmath/gguf/blocks.ts";
import { GGML_TYPES, type GgmlTypeName, ggmlTypeName } from "../../qmath/gguf/types.ts";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufValueType } from "./constants.ts";
import type { GgufMetaValue, GgufScalarType } from "./writer.ts";

/** One tensor as the header describes it. */
export interface GgufTensorInfo {
  name: string;
  /** ggml order, innermost first. */
  ne: number[];
  /** Type name, or `type<id>` for a type this program cannot decode. */
  type: GgmlTypeName | `type${number}`;
  /** Absolute byte offset in the file, and byte length. */
  offset: number;
  bytes: number;
}

const SCALAR_NAMES: Record<number, GgufScalarType> = {
  [GgufValueType.UINT8]: "uint8",
  [GgufValueType.INT8]: "int8",
  [GgufValueType.UINT16]: "uint16",
  [GgufValueType.INT16]: "int16",
  [GgufValueType.UINT32]: "uint32",
  [GgufValueType.INT32]: "int32",
  [GgufValueType.FLOAT32]: "float32",
  [GgufValueType.BOOL]: "bool",
  [GgufValueType.STRING]: "string",
  [GgufValueType.UINT64]: "uint64",
  [GgufValueType.INT64]: "int64",
  [GgufValueType.FLOAT64]: "float64",
};

class NeedMore extends Error {}

/** Fewest bytes one array item of each type takes (a string: its 8-byte length). */
const ITEM_BYTES: Record<GgufScalarType, number> = {
  uint8: 1,
  int8: 1,
  uint16: 2,
  int16: 2,
  uint32: 4,
  int32: 4,
  float32: 4,
  bool: 1,
  string: 8,
  uint64: 8,
  int64: 8,
  float64: 8,
};

/** `general.alignment`: a power of two as a u32 (gguf.cpp refuses anything else); 32 when absent. */
function alignmentOf(v: GgufMetaValue | undefined, path: string): number {
  if (v === undefined) return GGUF_DEFAULT_ALIGNMENT;
  const a = v.type === "uint32" ? Number(v.value) : 0;
  if (a <= 0 || (a & (a - 1)) !== 0) {
    throw new FormatError(`general.alignment must be a power of two stored as uint32`, path);
  }
  return a;
}

/** Little-endian reader over the start of a file. */
class Cursor {
  pos = 0;
  private readonly view: DataView;
  private readonly dec = new TextDecoder("utf-8", { fatal: false });
  constructor(
    private readonly buf: Uint8Array,
    private readonly complete: boolean,
    private readonly path: string,
    /** Size of the whole file: no length or count may claim more bytes than are left in it. */
    private readonly fileSize: number,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  /** Check that `count` items of at least `minBytes` each fit in the rest of the file. */
  fits(count: number, minBytes: number, what: string): number {
    if (count * minBytes > this.fileSize - this.pos) {
      throw new FormatError(
        `header runs past the end of the file: ${what} ${count} at byte ${this.pos} needs more than the ${
          this.fileSize - this.pos
        } bytes left`,
        this.path,
      );
    }
    return count;
  }
  private need(n: number) {
    if (this.pos + n <= this.buf.length) return;
    if (this.complete) {
      throw new FormatError(`header runs past the end of the file at byte ${this.pos}`, this.path);
    }
    throw new NeedMore();
  }
  u8() {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }
  u32() {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`integer ${v} too large`, this.path);
    return Number(v);
  }
  str(what = "string"): string {
    const n = this.fits(this.u64(), 1, `${what} length`);
    this.need(n);
    const s = this.dec.decode(this.buf.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  scalar(t: GgufScalarType): number | bigint | boolean | string {
    const sizes: Partial<Record<GgufScalarType, number>> = {
      uint8: 1,
      int8: 1,
      uint16: 2,
      int16: 2,
      uint32: 4,
      int32: 4,
      float32: 4,
      bool: 1,
      uint64: 8,
      int64: 8,
      float64: 8,
    };
    if (t === "string") return this.str();
    const n = sizes[t]!;
    this.need(n);
    const at = this.pos, v = this.view;
    this.pos += n;
    switch (t) {
      case "uint8":
        return v.getUint8(at);
      case "int8":
        return v.getInt8(at);
      case "uint16":
        return v.getUint16(at, true);
      case "int16":
        return v.getInt16(at, true);
      case "uint32":
        return v.getUint32(at, true);
      case "int32":
        return v.getInt32(at, true);
      case "float32":
        return v.getFloat32(at, true);
      case "bool":
        return v.getUint8(at) !== 0;
      case "uint64": {
        const b = v.getBigUint64(at, true);
        return b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
      }
      case "int64": {
        const b = v.getBigInt64(at, true);
        return b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(b) : b;
      }
      default:
        return v.getFloat64(at, true);
    }
  }
}

/**
 * An opened GGUF file. Close it with `using`.
 *
 * @example
 * ```ts
 * using f = await GgufFile.open("out/model-Q4_K_M.gguf");
 * f.str("general.architecture"); // "llama"
 * const w = await f.readF32("blk.0.attn_q.weight"); // dequantized, ggml row order
 * ```
 */
export class GgufFile implements Disposable {
  private constructor(
    readonly path: string,
    private readonly file: Deno.FsFile,
    readonly version: number,
    readonly metadata: Map<string, GgufMetaValue>,
    readonly tensors: GgufTensorInfo[],
    readonly alignment: number,
    readonly dataOffset: number,
    readonly fileSize: number,
  ) {}

  /** Parse the header of `path`. Throws InputError for missing files, FormatError for broken ones. */
  static async open(path: string): Promise<GgufFile> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new InputError("no such file", path);
      throw new InputError(`cannot open: ${(e as Error).message}`, path);
    }
    try {
      const size = (await file.stat()).size;
      let chunk = Math.min(size, 1 << 20);
      for (;;) {
        const buf = new Uint8Array(chunk);
        await file.seek(0, Deno.SeekMode.Start);
        let got = 0;
        while (got < chunk) {
          const n = await file.read(buf.subarray(got));
          if (n === null) break;
          got += n;
        }
        try {
          return GgufFile.parse(path, file, buf.subarray(0, got), got >= size, size);
        } catch (e) {
          if (!(e instanceof NeedMore)) throw e;
          chunk = Math.min(size, chunk * 4);
        }
      }
    } catch (e) {
      file.close();
      throw e;
    }
  }

  private static parse(path: string, file: Deno.FsFile, buf: Uint8Array, complete: boolean, size: number) {
    const c = new Cursor(buf, complete, path, size);
    if (buf.length < 4 || c.u32() !== GGUF_MAGIC) throw new FormatError(`not a GGUF file (bad magic)`, path);
    const version = c.u32();
    if (version < 2 || version > 3) {
      throw new FormatError(`GGUF version ${version} is not supported (2, 3 are)`, path);
    }
    // Each metadata entry takes at least 13 bytes (key length, type, one value byte), each tensor
    // info 24 (name length, dims, type, offset): counts that cannot fit are refused before any loop.
    const nTensors = c.fits(c.u64(), 24, "tensor count"), nKv = c.fits(c.u64(), 13, "metadata count");
    const metadata = new Map<string, GgufMetaValue>();
    for (let i = 0; i < nKv; i++) {
      const key = c.str("metadata key");
      const t = c.u32();
      if (t === GgufValueType.ARRAY) {
        const it = c.u32();
        const itemType = SCALAR_NAMES[it];
        if (!itemType) {
          throw new FormatError(`metadata ${plainName(key)}: unknown array item type ${it}`, path);
        }
        const n = c.fits(c.u64(), ITEM_BYTES[itemType], `metadata ${plainName(key)}`);
        const value: (number | bigint | boolean | string)[] = new Array(n);
        for (let j = 0; j < n; j++) value[j] = c.scalar(itemType);
        metadata.set(key, { type: "array", itemType, value });
      } else {
        const type = SCALAR_NAMES[t];
        if (!type) throw new FormatError(`metadata ${plainName(key)}: unknown value type ${t}`, path);
        metadata.set(key, { type, value: c.scalar(type) } as GgufMetaValue);
      }
    }
    const alignment = alignmentOf(metadata.get("general.alignment"), path);
    const raw: { name: string; ne: number[]; typeId: number; rel: number }[] = [];
    for (let i = 0; i < nTensors; i++) {
      const name = c.str("tensor name");
      const nd = c.u32();
      if (nd > 4) throw new FormatError(`tensor ${plainName(name)}: ${nd} dimensions (at most 4)`, path);
      const ne: number[] = [];
      for (let d = 0; d < nd; d++) ne.push(c.u64());
      raw.push({ name, ne, typeId: c.u32(), rel: c.u64() });
    }
    const dataOffset = Math.ceil(c.pos / alignment) * alignment;
    const tensors: GgufTensorInfo[] = raw.map((t) => {
      const name = ggmlTypeName(t.typeId);
      const info = name ? GGML_TYPES[name] : undefined;
      const shown = plainName(t.name);
      // gguf.cpp's checks: rows a whole number of blocks, offsets aligned, sizes within the file.
      if (info && (t.ne[0] ?? 1) % info.blockSize !== 0) {
        throw new FormatError(
          `tensor ${shown}: ne[0] = ${t.ne[0]} is not a multiple of ${name}'s ${info.blockSize}`,
          path,
        );
      }
      if (t.rel % alignment !== 0) {
        throw new FormatError(
          `tensor ${shown}: offset ${t.rel} is not a multiple of the alignment ${alignment}`,
          path,
        );
      }
      const count = t.ne.reduce((a, b) => a * b, 1);
      const bytes = info ? (count / info.blockSize) * info.typeSize : 0;
      const offset = dataOffset + t.rel;
      if (info && offset + bytes > size) {
        throw new FormatError(`tensor ${shown} runs past the end of the file (truncated?)`, path);
      }
      return { name: t.name, ne: t.ne, type: name ?? `type${t.typeId}`, offset, bytes };
    });
    return new GgufFile(path, file, version, metadata, tensors, alignment, dataOffset, size);
  }

  /** A metadata value (scalar), or undefined. */
  get(key: string): number | bigint | boolean | string | undefined {
    const v = this.metadata.get(key);
    return v && v.type !== "array" ? v.value : undefined;
  }
  /** A string metadata value, or undefined. */
  str(key: string): string | undefined {
    const v = this.get(key);
    return typeof v === "string" ? v : undefined;
  }
  /** A numeric metadata value, or undefined. */
  num(key: string): number | undefined {
    const v = this.get(key);
    return typeof v === "number" ? v : typeof v === "bigint" ? Number(v) : undefined;
  }
  /** An array metadata value, or undefined. */
  array(key: string): (number | bigint | boolean | string)[] | undefined {
    const v = this.metadata.get(key);
    return v?.type === "array" ? v.value : undefined;
  }

  /** The info of tensor `name`; FormatError when absent. */
  tensor(name: string): GgufTensorInfo {
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw new FormatError(`tensor "${name}" is missing`, this.path);
    return t;
  }

  /** Reads in flight, one after another: each is a seek then reads on the one file handle. */
  #queue: Promise<unknown> = Promise.resolve();

  /** Raw bytes of a tensor. Concurrent calls are served in turn (they share the file position). */
  readBytes(name: string): Promise<Uint8Array> {
    const next = this.#queue.then(() => this.#readBytesNow(name));
    this.#queue = next.catch(() => {});
    return next;
  }

  async #readBytesNow(name: string): Promise<Uint8Array> {
    const t = this.tensor(name);
    if (t.type.startsWith("type")) throw new UnsupportedError(`tensor ${name} has GGML ${t.type}`, this.path);
    const buf = new Uint8Array(t.bytes);
    await this.file.seek(t.offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < buf.length) {
      const n = await this.file.read(buf.subarray(got));
      if (n === null) throw new FormatError(`tensor ${name} is truncated`, this.path);
      got += n;
    }
    return buf;
  }

  /** A tensor dequantized to f32, in ggml order (ne[1] rows of ne[0] values). */
  async readF32(name: string): Promise<Float32Array> {
    return dequantizeBytes(this.tensor(name).type as GgmlTypeName, await this.readBytes(name));
  }

  [Symbol.dispose](): void {
    this.file.close();
  }
}
