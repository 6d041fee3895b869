/**
 * GGUF file constants as tables: the magic, version and alignment, the value types of the metadata,
 * llama.cpp's file types and token types. Source: llama.cpp `gguf-py/gguf/constants.py`
 * (GGUFValueType, LlamaFileType, TokenType). The tensor types are qmath/gguf/types.ts.
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
  MOSTLY_MXFP4_MOE: 38,
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
