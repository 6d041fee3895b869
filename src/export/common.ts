/**
 * Pieces the safetensors-based exporters share: the checkpoint's dtype and float conversions.
 */
import type { ModelSpec } from "../model/config.ts";
import {
  decodeFloats,
  encodeFloats,
  type FloatDType,
  ST_DTYPE_BYTES,
  type StDType,
} from "../tensor/dtype.ts";
import type { RawSource } from "./exporter.ts";

/** The checkpoint's float dtype as a safetensors dtype. */
export function checkpointDType(spec: ModelSpec): FloatDType {
  return spec.torchDtype === "bfloat16" ? "BF16" : spec.torchDtype === "float16" ? "F16" : "F32";
}

/** Re-encode a float tensor in `to` (non-float tensors pass through). */
export function convertFloat(
  dtype: StDType,
  bytes: Uint8Array,
  to: FloatDType,
): { dtype: StDType; bytes: Uint8Array } {
  if (dtype === to || (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64")) {
    return { dtype, bytes };
  }
  return { dtype: to, bytes: encodeFloats(decodeFloats(bytes, dtype), to) };
}

/**
 * A RawSource converted to `to` piece by piece (float dtypes convert element-wise, so the pieces are
 * cut at element boundaries of the source); other dtypes pass through.
 */
export function convertFloatSource(
  dtype: StDType,
  src: RawSource,
  to: FloatDType,
): { dtype: StDType; src: RawSource } {
  if (dtype === to || (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64")) {
    return { dtype, src };
  }
  const from = ST_DTYPE_BYTES[dtype], out = ST_DTYPE_BYTES[to];
  return {
    dtype: to,
    src: {
      byteLength: (src.byteLength / from) * out,
      read: async (offset, length) =>
        convertFloat(dtype, await src.read((offset / out) * from, (length / out) * from), to).bytes,
    },
  };
}

/** Set the dtype keys of a config.json object (transformers 4 `torch_dtype`, 5 `dtype`). */
export function withDType(config: Record<string, unknown>, dtype: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config, torch_dtype: dtype };
  if ("dtype" in config) out.dtype = dtype;
  return out;
}
