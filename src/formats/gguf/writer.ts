/**
 * A streaming GGUF (version 3) writer. Layout (llama.cpp `ggml/src/gguf.cpp`, gguf-py
 * `gguf_writer.py`): magic "GGUF", u32 version, u64 tensor count, u64 metadata count, the metadata
 * key/values, the tensor infos (name, u32 n_dims, u64 ne[] innermost first, u32 type, u64 offset
 * into the data section), zero padding to `general.alignment`, then the tensor data, each tensor
 * starting on an aligned offset. All integers little-endian; strings are u64 length + UTF-8 bytes.
 *
 * Tensors arrive one at a time (block by block) and go to a side file at once; `finish` writes the
 * header, appends the data and renames the result into place, so memory holds one tensor.
 */
import { FormatError, InputError, isOsError } from "../../errors.ts";
import { GGML_TYPES, type GgmlTypeName } from "../../qmath/gguf/types.ts";
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufValueType } from "./constants.ts";

/** Scalar metadata types by gguf-py name. */
export type GgufScalarType =
  | "uint8"
  | "int8"
  | "uint16"
  | "int16"
  | "uint32"
  | "int32"
  | "float32"
  | "bool"
  | "string"
  | "uint64"
  | "int64"
  | "float64";

/** One metadata value with its exact GGUF type (llama.cpp checks types strictly). */
export type GgufMetaValue =
  | { type: Exclude<GgufScalarType, "bool" | "string">; value: number | bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; itemType: GgufScalarType; value: (number | bigint | boolean | string)[] };

/** Convenience constructors for metadata values. */
export const meta = {
  u32: (value: number): GgufMetaValue => ({ type: "uint32", value }),
  i32: (value: number): GgufMetaValue => ({ type: "int32", value }),
  f32: (value: number): GgufMetaValue => ({ type: "float32", value }),
  bool: (value: boolean): GgufMetaValue => ({ type: "bool", value }),
  str: (value: string): GgufMetaValue => ({ type: "string", value }),
  strs: (value: string[]): GgufMetaValue => ({ type: "array", itemType: "string", value }),
  f32s: (value: number[]): GgufMetaValue => ({ type: "array", itemType: "float32", value }),
  i32s: (value: number[]): GgufMetaValue => ({ type: "array", itemType: "int32", value }),
};

const TYPE_IDS: Record<GgufScalarType, number> = {
  uint8: GgufValueType.UINT8,
  int8: GgufValueType.INT8,
  uint16: GgufValueType.UINT16,
  int16: GgufValueType.INT16,
  uint32: GgufValueType.UINT32,
  int32: GgufValueType.INT32,
  float32: GgufValueType.FLOAT32,
  bool: GgufValueType.BOOL,
  string: GgufValueType.STRING,
  uint64: GgufValueType.UINT64,
  int64: GgufValueType.INT64,
  float64: GgufValueType.FLOAT64,
};

/** A growable little-endian byte buffer. */
class ByteSink {
  buf = new Uint8Array(1 << 16);
  view = new DataView(this.buf.buffer);
  len = 0;
  private readonly enc = new TextEncoder();

  private grow(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(x: number) {
    this.grow(1);
    this.view.setUint8(this.len, x);
    this.len += 1;
  }
  u32(x: number) {
    this.grow(4);
    this.view.setUint32(this.len, x, true);
    this.len += 4;
  }
  u64(x: number | bigint) {
    this.grow(8);
    this.view.setBigUint64(this.len, BigInt(x), true);
    this.len += 8;
  }
  str(s: string) {
    const b = this.enc.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  bytes(b: Uint8Array) {
    this.grow(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  scalar(t: GgufScalarType, v: number | bigint | boolean | string, key: string) {
    const bad = () => new FormatError(`metadata ${key}: ${JSON.stringify(String(v))} is not a ${t}`);
    if (t === "string") {
      if (typeof v !== "string") throw bad();
      return this.str(v);
    }
    if (t === "bool") {
      if (typeof v !== "boolean") throw bad();
      return this.u8(v ? 1 : 0);
    }
    if (typeof v !== "number" && typeof v !== "bigint") throw bad();
    const n = Number(v);
    if (t !== "float32" && t !== "float64" && !Number.isInteger(n)) throw bad();
    const sizes: Record<string, number> = {
      uint8: 1,
      int8: 1,
      uint16: 2,
      int16: 2,
      uint32: 4,
      int32: 4,
      float32: 4,
      uint64: 8,
      int64: 8,
      float64: 8,
    };
    this.grow(sizes[t]);
    const at = this.len, w = this.view;
    switch (t) {
      case "uint8":
        w.setUint8(at, n);
        break;
      case "int8":
        w.setInt8(at, n);
        break;
      case "uint16":
        w.setUint16(at, n, true);
        break;
      case "int16":
        w.setInt16(at, n, true);
        break;
      case "uint32":
        w.setUint32(at, n, true);
        break;
      case "int32":
        w.setInt32(at, n, true);
        break;
      case "float32":
        w.setFloat32(at, n, true);
        break;
      case "uint64":
        w.setBigUint64(at, BigInt(v), true);
        break;
      case "int64":
        w.setBigInt64(at, BigInt(v), true);
        break;
      case "float64":
        w.setFloat64(at, n, true);
        break;
    }
    this.len += sizes[t];
  }
  pad(align: number) {
    const rem = this.len % align;
    if (rem) this.bytes(new Uint8Array(align - rem));
  }
  data(): Uint8Array {
    return this.buf.subarray(0, this.len);
  }
}

/** One tensor's entry in the header. */
export interface GgufTensorEntry {
  name: string;
  /** Dimensions in ggml order: ne[0] is the innermost (contiguous) one, e.g. [K, N] for a weight [N, K]. */
  ne: number[];
  type: GgmlTypeName;
  offset: number;
  bytes: number;
}

/**
 * Writes one `.gguf` file.
 *
 * @example
 * ```ts
 * const w = await GgufWriter.create("out/model.gguf");
 * w.setMeta("general.architecture", meta.str("llama"));
 * await w.addTensor("output_norm.weight", "F32", [64], new Uint8Array(256));
 * await w.finish();
 * ```
 */
export class GgufWriter {
  readonly #path: string;
  readonly #tmpPath: string;
  readonly #alignment: number;
  readonly #meta = new Map<string, GgufMetaValue>();
  readonly #tensors: GgufTensorEntry[] = [];
  #data: Deno.FsFile;
  #dataBytes = 0;
  #state: "open" | "finished" | "aborted" = "open";

  private constructor(path: string, tmpPath: string, data: Deno.FsFile, alignment: number) {
    this.#path = path;
    this.#tmpPath = tmpPath;
    this.#data = data;
    this.#alignment = alignment;
  }

  /** Open a writer for `path` (written on {@link finish}; a side file `path.data.tmp` holds the data). */
  static async create(path: string, alignment = GGUF_DEFAULT_ALIGNMENT): Promise<GgufWriter> {
    const tmp = `${path}.data.tmp`;
    try {
      const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
      return new GgufWriter(path, tmp, f, alignment);
    } catch (e) {
      throw new InputError(`cannot create ${tmp}: ${(e as Error).message}`, path);
    }
  }

  /** Set (or replace) a metadata key. Keys are written in first-set order. */
  setMeta(key: string, value: GgufMetaValue): void {
    this.#meta.set(key, value);
  }

  /** Whether a tensor of this name was added. */
  hasTensor(name: string): boolean {
    return this.#tensors.some((t) => t.name === name);
  }

  /** Append one tensor's bytes (already in the layout of `type`); written to disk before resolving. */
  async addTensor(name: string, type: GgmlTypeName, ne: number[], bytes: Uint8Array): Promise<void> {
    if (this.#state !== "open") throw new Error(`GgufWriter.addTensor when ${this.#state}`);
    if (this.hasTensor(name)) throw new FormatError(`tensor ${name} written twice`, this.#path);
    const t = GGML_TYPES[type];
    const count = ne.reduce((a, b) => a * b, 1);
    if (ne[0] % t.blockSize !== 0 || (count / t.blockSize) * t.typeSize !== bytes.byteLength) {
      throw new FormatError(
        `tensor ${name}: ${bytes.byteLength} bytes do not hold ${type} [${ne.join(", ")}]`,
        this.#path,
      );
    }
    const pad = (this.#alignment - (this.#dataBytes % this.#alignment)) % this.#alignment;
    if (pad) await this.#write(new Uint8Array(pad));
    this.#tensors.push({ name, ne: [...ne], type, offset: this.#dataBytes, bytes: bytes.byteLength });
    await this.#write(bytes);
  }

  async #write(b: Uint8Array): Promise<void> {
    let off = 0;
    try {
      while (off < b.length) off += await this.#data.write(b.subarray(off));
    } catch (e) {
      if (isOsError(e)) throw new InputError(`cannot write GGUF file: ${e.message}`, this.#path);
      throw e;
    }
    this.#dataBytes += b.length;
  }

  /** The header bytes (everything before the data section), padded to the alignment. */
  headerBytes(): Uint8Array {
    const s = new ByteSink();
    s.u32(GGUF_MAGIC);
    s.u32(GGUF_VERSION);
    s.u64(this.#tensors.length);
    const kv = new Map(this.#meta);
    if (this.#alignment !== GGUF_DEFAULT_ALIGNMENT) kv.set("general.alignment", meta.u32(this.#alignment));
    s.u64(kv.size);
    for (const [key, v] of kv) {
      s.str(key);
      if (v.type === "array") {
        s.u32(GgufValueType.ARRAY);
        s.u32(TYPE_IDS[v.itemType]);
        s.u64(v.value.length);
        for (const x of v.value) s.scalar(v.itemType, x, key);
      } else {
        s.u32(TYPE_IDS[v.type]);
        s.scalar(v.type, v.value, key);
      }
    }
    for (const t of this.#tensors) {
      s.str(t.name);
      s.u32(t.ne.length);
      for (const d of t.ne) s.u64(d);
      s.u32(GGML_TYPES[t.type].id);
      s.u64(t.offset);
    }
    s.pad(this.#alignment);
    return s.data();
  }

  /** Tensors written so far. */
  tensors(): readonly GgufTensorEntry[] {
    return this.#tensors;
  }

  /** Write the header, append the data, rename into place. Returns the file size. */
  async finish(): Promise<number> {
    if (this.#state !== "open") throw new Error(`GgufWriter.finish when ${this.#state}`);
    this.#state = "finished";
    this.#data.close();
    const header = this.headerBytes();
    const partial = `${this.#path}.tmp`;
    try {
      using out = await Deno.open(partial, { write: true, create: true, truncate: true });
      let off = 0;
      while (off < header.length) off += await out.write(header.subarray(off));
      // The readable closes the side file when it is drained.
      const src = await Deno.open(this.#tmpPath, { read: true });
      await src.readable.pipeTo(out.writable, { preventClose: true });
    } catch (e) {
      await Deno.remove(partial).catch(() => {});
      throw new InputError(`cannot write GGUF file: ${(e as Error).message}`, this.#path);
    } finally {
      await Deno.remove(this.#tmpPath).catch(() => {});
    }
    try {
      await Deno.rename(partial, this.#path);
    } catch (e) {
      throw new InputError(`cannot write GGUF file: ${(e as Error).message}`, this.#path);
    }
    return header.length + this.#dataBytes;
  }

  /** Drop the side file (after an error). */
  async abort(): Promise<void> {
    if (this.#state !== "open") return;
    this.#state = "aborted";
    try {
      this.#data.close();
    } catch { /* already closed */ }
    await Deno.remove(this.#tmpPath).catch(() => {});
  }
}
