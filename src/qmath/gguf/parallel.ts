/**
 * GGUF quantization of a tensor on every core: rows are independent (search, W̃ and codes of a row
 * use that row only, quantize.ts), so a chunk of rows is copied into shared memory and its row
 * ranges go to the worker pool; each range writes its own bytes of the output. The bytes equal
 * {@link quantizeToBytes}'s whatever the split (tests/gguf_parallel_test.ts).
 */
import { allocBlocks, packBlocks } from "./blocks.ts";
import { GGML_TYPES } from "./types.ts";
import { defineTask, type WorkerPool } from "../../parallel/pool.ts";
import { packWithoutScales } from "./pack.ts";
import type { QuantGgmlType, SearchOptions } from "./params.ts";
import { quantizeRowsInto, quantizeToBytes } from "./quantize.ts";
import { searchPlan } from "./search_params.ts";

/** Weights per shared chunk (64 MiB of f32): bounds the extra copy of a large tensor. */
const CHUNK_WEIGHTS = 1 << 24;

interface RowsArgs {
  type: QuantGgmlType;
  k: number;
  /** "plain": llama.cpp's reference rules (token_embd of the 32-wide types); else a search. */
  mode: "plain" | "search";
  optRtn: boolean;
  imatrix?: Float64Array;
  /** The chunk's rows `[rows, k]` and their output bytes. */
  w: Float32Array;
  out: Uint8Array;
}

/** Quantize and pack rows `[r0, r1)` of the chunk into their bytes of `out`. */
export const ggufRowsTask = defineTask(import.meta.url, "ggufRows", (a: RowsArgs, r0: number, r1: number) => {
  const { blockSize, typeSize } = GGML_TYPES[a.type], perRow = a.k / blockSize;
  const w = a.w.subarray(r0 * a.k, r1 * a.k);
  const dst = a.out.subarray(r0 * perRow * typeSize, r1 * perRow * typeSize);
  if (a.mode === "plain") {
    packBlocks(packWithoutScales(a.type, w, r1 - r0, a.k), dst);
    return;
  }
  const plan = searchPlan(a.type, a.k, { optRtn: a.optRtn, imatrix: a.imatrix });
  const blocks = allocBlocks(a.type, (r1 - r0) * perRow);
  quantizeRowsInto(plan, w, r1 - r0, blocks);
  packBlocks(blocks, dst);
});

/**
 * quantizeToBytes on the pool's threads (the same bytes); with a one-thread pool it is
 * quantizeToBytes itself.
 */
export function quantizeToBytesOn(
  pool: WorkerPool | undefined,
  type: QuantGgmlType,
  n: number,
  k: number,
  rows: (r0: number, r1: number) => Float32Array,
  opts: SearchOptions | "export",
  chunkWeights = CHUNK_WEIGHTS,
): Uint8Array {
  if (!pool || pool.threads === 1) return quantizeToBytes(type, n, k, rows, opts);
  const { blockSize, typeSize } = GGML_TYPES[type], perRow = k / blockSize;
  const rowBytes = perRow * typeSize;
  const out = new Uint8Array(n * rowBytes);
  const chunk = Math.max(1, Math.min(n, Math.floor(chunkWeights / k)));
  const w = new Float32Array(new SharedArrayBuffer(chunk * k * 4));
  const bytes = new Uint8Array(new SharedArrayBuffer(chunk * rowBytes));
  const search = opts === "export" ? { optRtn: false } : opts;
  let imatrix: Float64Array | undefined;
  if (search.imatrix) {
    imatrix = new Float64Array(new SharedArrayBuffer(search.imatrix.length * 8));
    imatrix.set(search.imatrix);
  }
  // quantizeToBytes' rule: llama.cpp's reference quantizers for the 32-wide types at export.
  const mode = opts === "export" && !type.endsWith("_K") ? "plain" : "search";
  for (let r0 = 0; r0 < n; r0 += chunk) {
    const r1 = Math.min(n, r0 + chunk), m = r1 - r0;
    w.set(rows(r0, r1));
    const args: RowsArgs = {
      type,
      k,
      mode,
      optRtn: search.optRtn,
      imatrix,
      w: w.subarray(0, m * k),
      out: bytes.subarray(0, m * rowBytes),
    };
    pool.run(ggufRowsTask, m, args, 1);
    out.set(bytes.subarray(0, m * rowBytes), r0 * rowBytes);
  }
  return out;
}
