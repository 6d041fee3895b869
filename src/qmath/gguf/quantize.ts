/**
 * Quantize one tensor to a GGML type the way AutoRound's GGUF path does, in three steps that
 * SignRound will later reuse with its own tuned values:
 *
 * 1. {@link searchParams}: per-group scales (and mins), double-quantized for the K-quants — the RTN
 *    quantizers of auto_round/data_type (`opt_rtn_int_sym`, `rtn_int_sym`,
 *    `opt_rtn_int_asym_float_zp`, `rtn_int_asym_dq`, `rtn_int_sym_dq`), with the importance matrix
 *    when given;
 * 2. {@link fakeQuant}: the quantize-dequantize result W̃ those parameters give (with an optional
 *    rounding offset V, AutoRound's `v`);
 * 3. {@link packParams} (pack.ts): the ggml blocks, derived from W̃ and the parameters as
 *    export_to_gguf/packing.py does when a layer carries its scales ("scale is not None" branches):
 *    codes are re-derived from W̃, d/dmin are stored as fp16.
 *
 * Tensors that AutoRound quantizes only at export (token_embd) use {@link quantizeAtExport}: the
 * packing.py branches without stored scales — llama.cpp's reference quantizers for the 32-wide types,
 * AutoRound's K-quant searches for the others.
 *
 * Every step is a pure function of whole rows: the `…Into` forms fill preallocated outputs, so a
 * tensor's rows can be split into ranges (subarray views of w and of the outputs, see
 * {@link blocksView}) and quantized independently, e.g. by a worker pool; the result is the same
 * bytes in any split. {@link quantizeInto} runs the three steps row by row (search, W̃ and
 * codes of one row at a time), so its working memory is one row.
 */
import { allocBlocks, type GgmlBlocks, packBlocks } from "./blocks.ts";
import { GGML_TYPES } from "./types.ts";
import { packParamsInto, packWithoutScales } from "./pack.ts";
import { fakeQuantInto } from "./fake_quant.ts";
import {
  allocParams,
  type GgufParams,
  type QuantGgmlType,
  type SearchOptions,
  TYPE_QUANT,
} from "./params.ts";
import { searchInto, type SearchPlan, searchPlan } from "./search_params.ts";

export { fakeQuantInto, packParamsInto, searchInto, searchPlan };
export type { SearchPlan };
export { allocParams, isQuantType, TYPE_QUANT } from "./params.ts";
export type { GgufParams, QuantGgmlType, SearchOptions } from "./params.ts";

/**
 * Step 1: search the parameters of `type` for weight `w` `[n, k]` (k a multiple of the block size).
 *
 * @example
 * ```ts
 * const p = searchParams("Q4_K", w, n, k, { optRtn: true, imatrix });
 * const wq = fakeQuant("Q4_K", w, n, k, p);
 * const blocks = packParams("Q4_K", wq, n, k, p);
 * ```
 */
export function searchParams(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  opts: SearchOptions,
): GgufParams {
  const p = allocParams(type, (n * k) / TYPE_QUANT[type].group);
  searchInto(searchPlan(type, k, opts), w, n, p);
  return p;
}

/**
 * Step 2: W̃ of `w` under `p`, with an optional rounding offset `v` `[n·k]` (SignRound's V).
 * AutoRound's `qdq_result` of the quantizer that produced `p`.
 */
export function fakeQuant(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  p: GgufParams,
  v?: Float32Array,
): Float32Array {
  const out = new Float32Array(n * k);
  fakeQuantInto(type, w, n * k, p, out, v);
  return out;
}

/** Step 3: the ggml blocks of W̃ `wq` under `p` (see pack.ts). */
export function packParams(
  type: QuantGgmlType,
  wq: Float32Array,
  n: number,
  k: number,
  p: GgufParams,
): GgmlBlocks {
  const b = allocBlocks(type, (n * k) / GGML_TYPES[type].blockSize);
  packParamsInto(type, wq, n * k, p, b);
  return b;
}

/** Parameters of one row, reused across calls of {@link quantizeInto} (per type and row length). */
const rowScratch = new Map<string, { p: GgufParams; wq: Float32Array }>();

/**
 * Search, W̃ and blocks of the rows `w` `[n, k]` into `out` (blocks of exactly these rows, e.g. a
 * {@link blocksView}), one row at a time. Same blocks as {@link packParams} ∘ {@link fakeQuant} ∘
 * {@link searchParams}.
 */
export function quantizeInto(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  opts: SearchOptions,
  out: GgmlBlocks,
): void {
  quantizeRowsInto(searchPlan(type, k, opts), w, n, out);
}

/** {@link quantizeInto} with the per-tensor preparation done (a pool worker reuses one plan). */
export function quantizeRowsInto(plan: SearchPlan, w: Float32Array, n: number, out: GgmlBlocks): void {
  const { type, k } = plan, { group } = TYPE_QUANT[type], bs = GGML_TYPES[type].blockSize;
  const key = `${type}/${k}`;
  let row = rowScratch.get(key);
  if (!row) rowScratch.set(key, row = { p: allocParams(type, k / group), wq: new Float32Array(k) });
  for (let r = 0; r < n; r++) {
    const wr = w.subarray(r * k, (r + 1) * k);
    searchInto(plan, wr, 1, row.p);
    fakeQuantInto(type, wr, k, row.p, row.wq);
    packParamsInto(type, row.wq, k, row.p, blocksView(out, (r * k) / bs, ((r + 1) * k) / bs));
  }
}

/** The blocks `[i0, i1)` of `b` as a GgmlBlocks sharing b's arrays. */
export function blocksView(b: GgmlBlocks, i0: number, i1: number): GgmlBlocks {
  const bs = GGML_TYPES[b.type].blockSize, sub = b.sc ? b.sc.length / b.nb : 0;
  return {
    type: b.type,
    nb: i1 - i0,
    q: b.q.subarray(i0 * bs, i1 * bs),
    d: b.d.subarray(i0, i1),
    m: b.m?.subarray(i0, i1),
    sc: b.sc?.subarray(i0 * sub, i1 * sub),
    mn: b.mn?.subarray(i0 * sub, i1 * sub),
  };
}

/**
 * A tensor quantized the way AutoRound quantizes block Linears (and an untied lm_head) for GGUF:
 * search, W̃, pack.
 */
export function quantizeTensor(
  type: QuantGgmlType,
  w: Float32Array,
  n: number,
  k: number,
  opts: SearchOptions,
): GgmlBlocks {
  const b = allocBlocks(type, (n * k) / GGML_TYPES[type].blockSize);
  quantizeInto(type, w, n, k, opts, b);
  return b;
}

/**
 * A tensor AutoRound quantizes only at export (token_embd): packing.py without stored scales.
 * Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 use llama.cpp's `quantize_row_*_ref` rules (ggml-quants.c) as packing.py
 * ports them ({@link packWithoutScales}); the K-quants run AutoRound's searches without an
 * importance matrix.
 */
export function quantizeAtExport(type: QuantGgmlType, w: Float32Array, n: number, k: number): GgmlBlocks {
  if (type.endsWith("_K")) return quantizeTensor(type, w, n, k, { optRtn: false });
  return packWithoutScales(type, w, n, k);
}

/** Weights per chunk of {@link quantizeToBytes}: 1M (4 MB of float rows). */
const CHUNK_WEIGHTS = 1 << 20;

/**
 * The packed GGUF bytes of a `[n, k]` tensor, quantized a chunk of rows at a time: `rows(r0, r1)`
 * gives the float rows (e.g. decoded from the checkpoint's bytes on demand), so the working memory
 * is one chunk of floats and blocks, not the tensor. `opts` "export" quantizes as
 * {@link quantizeAtExport}, otherwise as {@link quantizeTensor}; the bytes are the same.
 */
export function quantizeToBytes(
  type: QuantGgmlType,
  n: number,
  k: number,
  rows: (r0: number, r1: number) => Float32Array,
  opts: SearchOptions | "export",
): Uint8Array {
  const { blockSize, typeSize } = GGML_TYPES[type], perRow = k / blockSize;
  const out = new Uint8Array(n * perRow * typeSize);
  const chunk = Math.max(1, Math.floor(CHUNK_WEIGHTS / k));
  const plain = opts === "export" && !type.endsWith("_K"); // llama.cpp's reference rules
  const plan = plain ? undefined : searchPlan(type, k, opts === "export" ? { optRtn: false } : opts);
  const b = allocBlocks(type, Math.min(n, chunk) * perRow);
  for (let r0 = 0; r0 < n; r0 += chunk) {
    const r1 = Math.min(n, r0 + chunk), w = rows(r0, r1);
    const view = blocksView(b, 0, (r1 - r0) * perRow);
    const blocks = plan
      ? (quantizeRowsInto(plan, w, r1 - r0, view), view)
      : packWithoutScales(type, w, r1 - r0, k);
    packBlocks(blocks, out.subarray(r0 * perRow * typeSize, r1 * perRow * typeSize));
  }
  return out;
}
