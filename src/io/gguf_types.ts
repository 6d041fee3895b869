/**
 * GGUF and GGML constants as tables: value types of the metadata, tensor (block) types with their
 * block geometry, and llama.cpp's file types. Source: llama.cpp `gguf-py/gguf/constants.py`
 * (GGUFValueType, GGMLQuantizationType, GGML_QUANT_SIZES, LlamaFileType) and `ggml/src/ggml-common.h`
 * (block structs), checked against auto-round's `export/export_to_gguf/config.py`.
 */

/** GGUF file magic "GGUF" read as a little-endian u32, and the version this program writes. */
export const GGUF_MAGIC = 0x46554747;
export const GGUF_VERSION = 3;
/** `general.alignment` default (gguf-py GGUF_DEFAULT_ALIGNMENT). */
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types (gguf-py GGUFValueType). */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;
export type GgufValueTypeId = typeof GgufValueType[keyof typeof GgufValueType];

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
  | "Q6_K";

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

/** llama.cpp file types (`general.file_type`, gguf-py LlamaFileType). */
export const LLAMA_FILE_TYPES: Readonly<Record<string, number>> = {
  ALL_F32: 0,
  MOSTLY_F16: 1,
  MOSTLY_Q4_0: 2,
  MOSTLY_Q4_1: 3,
  MOSTLY_Q8_0: 7,
  MOSTLY_Q5_0: 8,
  MOSTLY_Q5_1: 9,
  MOSTLY_Q2_K: 10,
  MOSTLY_Q3_K_S: 11,
  MOSTLY_Q3_K_M: 12,
  MOSTLY_Q3_K_L: 13,
  MOSTLY_Q4_K_S: 14,
  MOSTLY_Q4_K_M: 15,
  MOSTLY_Q5_K_S: 16,
  MOSTLY_Q5_K_M: 17,
  MOSTLY_Q6_K: 18,
  MOSTLY_Q2_K_S: 21,
  MOSTLY_BF16: 32,
};

/** Name of a `general.file_type` value ("Q4_K_M"), for inspect. */
export function llamaFileTypeName(id: number): string | undefined {
  const hit = Object.entries(LLAMA_FILE_TYPES).find(([, v]) => v === id);
  return hit?.[0].replace(/^(MOSTLY|ALL)_/, "");
}

/** llama.cpp token types (`tokenizer.ggml.token_type`, gguf-py TokenType). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
