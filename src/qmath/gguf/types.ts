/**
 * GGML tensor (block) types as a table: each type's id and block geometry. Source: llama.cpp
 * `gguf-py/gguf/constants.py` (GGMLQuantizationType, GGML_QUANT_SIZES) and `ggml/src/ggml-common.h`
 * (block structs), checked against auto-round's `export/export_to_gguf/config.py`.
 */
/** Tensor element types this program reads and writes. */
export type GgmlTypeName =
  | "F32"
  | "F16"
  | "BF16"
  | "Q4_0"
  | "Q4_1"
  | "Q5_0"
  | "Q5_1"
  | "Q8_0"
  | "Q2_K"
  | "Q3_K"
  | "Q4_K"
  | "Q5_K"
  | "Q6_K"
  | "MXFP4";

/** Geometry of one GGML type: `blockSize` weights per block of `typeSize` bytes. */
export interface GgmlTypeInfo {
  id: number;
  blockSize: number;
  typeSize: number;
}

/**
 * GGMLQuantizationType ids and GGML_QUANT_SIZES (gguf-py constants.py). QK_K = 256; block byte sizes
 * follow the structs of ggml-common.h, e.g. block_q4_K = d, dmin (fp16) + 12 scale bytes + 128 nibbles.
 */
export const GGML_TYPES: Readonly<Record<GgmlTypeName, GgmlTypeInfo>> = {
  F32: { id: 0, blockSize: 1, typeSize: 4 },
  F16: { id: 1, blockSize: 1, typeSize: 2 },
  Q4_0: { id: 2, blockSize: 32, typeSize: 2 + 16 },
  Q4_1: { id: 3, blockSize: 32, typeSize: 2 + 2 + 16 },
  Q5_0: { id: 6, blockSize: 32, typeSize: 2 + 4 + 16 },
  Q5_1: { id: 7, blockSize: 32, typeSize: 2 + 2 + 4 + 16 },
  Q8_0: { id: 8, blockSize: 32, typeSize: 2 + 32 },
  Q2_K: { id: 10, blockSize: 256, typeSize: 2 + 2 + 256 / 16 + 256 / 4 },
  Q3_K: { id: 11, blockSize: 256, typeSize: 2 + 256 / 4 + 256 / 8 + 12 },
  Q4_K: { id: 12, blockSize: 256, typeSize: 2 + 2 + 256 / 2 + 12 },
  Q5_K: { id: 13, blockSize: 256, typeSize: 2 + 2 + 256 / 2 + 256 / 8 + 12 },
  Q6_K: { id: 14, blockSize: 256, typeSize: 2 + 256 / 2 + 256 / 4 + 256 / 16 },
  BF16: { id: 30, blockSize: 1, typeSize: 2 },
  MXFP4: { id: 39, blockSize: 32, typeSize: 1 + 16 },
};

/** The super-block size of the K-quants (ggml-common.h QK_K). */
export const QK_K = 256;

const BY_ID = new Map<number, GgmlTypeName>(
  (Object.entries(GGML_TYPES) as [GgmlTypeName, GgmlTypeInfo][]).map(([n, t]) => [t.id, n]),
);

/** Name of a GGML type id, or undefined for types this program does not handle. */
export function ggmlTypeName(id: number): GgmlTypeName | undefined {
  return BY_ID.get(id);
}

/** Bytes of a row of `k` weights of `type` (k must be a multiple of the block size). */
export function ggmlRowBytes(type: GgmlTypeName, k: number): number {
  const t = GGML_TYPES[type];
  return (k / t.blockSize) * t.typeSize;
}
