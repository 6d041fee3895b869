/**
 * The CPU backend's data movement on plain arrays: whole calibration samples gathered into a batch,
 * embedding rows looked up by token id, and values as raw bytes of their dtype.
 */
import type { DType } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { decodeFloats, encodeFloats, ST_DTYPE_BYTES } from "../../tensor/dtype.ts";
import type { FArr } from "./kernels.ts";

/** Safetensors name of each float dtype (the byte encodings of dtype.ts). */
const FLOAT_KIND = { f32: "F32", bf16: "BF16", f16: "F16" } as const;

function floatKind(dtype: DType, what: string): "F32" | "BF16" | "F16" {
  if (dtype === "i32" || dtype === "u8") throw new BackendError(`${what}: expected a float tensor`);
  return FLOAT_KIND[dtype];
}

/** The values as raw little-endian bytes of `dtype` (Backend.readBytes). */
export function floatBytes(values: FArr, dtype: DType): Uint8Array {
  return encodeFloats(Float32Array.from(values), floatKind(dtype, "readBytes"));
}

/** Raw bytes of `dtype` decoded into `dst` (Backend.writeBytes). */
export function setFromBytes(dst: FArr, dtype: DType, bytes: Uint8Array): void {
  const kind = floatKind(dtype, "writeBytes");
  if (bytes.byteLength !== dst.length * ST_DTYPE_BYTES[kind]) {
    throw new BackendError(`writeBytes: ${bytes.byteLength} bytes for ${dst.length} ${dtype} values`);
  }
  dst.set(decodeFloats(bytes, kind));
}

/**
 * dst samples i ← src samples `indices[i] − first` (`per` elements each); with `segment` set, indices
 * outside the source leave their dst sample as it is, otherwise they are an error (Backend.gatherSamples).
 */
export function gatherSamples(
  dd: FArr,
  sd: FArr,
  indices: readonly number[],
  per: number,
  first: number,
  segment: boolean,
): void {
  const samples = sd.length / per;
  if (dd.length < indices.length * per) {
    throw new BackendError(`gatherSamples: dst holds ${dd.length} elements, need ${indices.length * per}`);
  }
  indices.forEach((idx, i) => {
    const j = idx - first;
    if (j >= 0 && j < samples) dd.set(sd.subarray(j * per, (j + 1) * per), i * per);
    else if (!segment) {
      throw new BackendError(`gatherSamples: sample index ${idx} outside 0..${samples - 1}`);
    }
  });
}

/** Rows of `table` `[vocab, H]` for the token ids `ids` into `out` `[ids.length, H]`. */
export function embeddingRows(table: FArr, vocab: number, ids: Int32Array, out: FArr): void {
  const H = table.length / vocab;
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      throw new BackendError(`token id ${ids[i]} outside the vocabulary`);
    }
    out.set(table.subarray(ids[i] * H, (ids[i] + 1) * H), i * H);
  }
}
