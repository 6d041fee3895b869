/**
 * Selected rows of a 2-D float tensor of a checkpoint, read by offset: the embedding rows of the
 * calibration tokens without the whole table (an 8B model's embedding is 1.2 GB in bf16, 2.5 GB as
 * f32; the ~25 k distinct tokens of 128 × 2048 calibration samples are a few hundred MB).
 */
import { decodeFloats, type FloatDType, ST_DTYPE_BYTES } from "../tensor/dtype.ts";
import type { SafetensorsReader } from "./safetensors/reader.ts";
import { FormatError } from "../errors.ts";

/** Rows of one tensor kept as stored; `gather` decodes the rows of a batch to f32. */
export class TensorRows {
  private constructor(
    /** Row id → slot in `bytes` (−1: not read). */
    private readonly slot: Int32Array,
    private readonly bytes: Uint8Array,
    private readonly dtype: FloatDType,
    readonly cols: number,
  ) {}

  /**
   * Read the rows `ids` (any order, repeats allowed) of the 2-D float tensor `name`. Runs of
   * nearby rows are read with one positioned read each (gaps of up to `maxGap` rows are read and
   * dropped).
   */
  static async read(
    reader: SafetensorsReader,
    name: string,
    ids: Int32Array,
    maxGap = 8,
  ): Promise<TensorRows> {
    const info = reader.info(name);
    if (info.shape.length !== 2 || (info.dtype !== "F32" && info.dtype !== "F16" && info.dtype !== "BF16")) {
      throw new FormatError(`tensor "${name}" is not a 2-D F32/F16/BF16 tensor`, info.file);
    }
    const [rows, cols] = info.shape;
    const rowBytes = cols * ST_DTYPE_BYTES[info.dtype];
    const slot = new Int32Array(rows).fill(-1);
    for (const id of ids) {
      if (id < 0 || id >= rows) throw new FormatError(`row ${id} outside tensor "${name}" (${rows} rows)`);
      slot[id] = 0;
    }
    const wanted: number[] = [];
    for (let r = 0; r < rows; r++) if (slot[r] === 0) wanted.push(r);
    const bytes = new Uint8Array(wanted.length * rowBytes);
    for (let i = 0; i < wanted.length;) {
      let j = i;
      while (j + 1 < wanted.length && wanted[j + 1] - wanted[j] <= maxGap + 1) j++;
      const first = wanted[i], span = wanted[j] - first + 1;
      const run = await reader.readRange(name, first * rowBytes, span * rowBytes);
      for (let k = i; k <= j; k++) {
        const at = (wanted[k] - first) * rowBytes;
        bytes.set(run.subarray(at, at + rowBytes), k * rowBytes);
        slot[wanted[k]] = k;
      }
      i = j + 1;
    }
    return new TensorRows(slot, bytes, info.dtype, cols);
  }

  /** The rows of `ids` (each must have been read) as f32 `[ids.length, cols]`. */
  gather(ids: Int32Array): Float32Array {
    const rowBytes = this.cols * ST_DTYPE_BYTES[this.dtype];
    const raw = new Uint8Array(ids.length * rowBytes);
    ids.forEach((id, i) => {
      const k = this.slot[id];
      if (k < 0) throw new RangeError(`row ${id} was not read`);
      raw.set(this.bytes.subarray(k * rowBytes, (k + 1) * rowBytes), i * rowBytes);
    });
    return decodeFloats(raw, this.dtype);
  }
}
