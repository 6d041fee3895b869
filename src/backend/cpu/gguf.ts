/**
 * The CPU backend's GGUF quantizer: the host reference itself (src/qmath/gguf/quantize.ts, then
 * qmath/gguf/blocks.ts packBlocks) on a weight's f32 values, after the same shape checks as the
 * device quantizers (gguf_plan.ts).
 */
import type { GgufBlockType, GgufQuantizeOptions } from "../backend.ts";
import { packBlocks } from "../../qmath/gguf/blocks.ts";
import { quantizeAtExport, quantizeTensor } from "../../qmath/gguf/quantize.ts";
import { ggufPlan } from "../gguf_plan.ts";
import type { FArr } from "./kernels.ts";

/** Packed llama.cpp block bytes of weight `w` `[n, k]`; `imatrix` the importance `[k]` when given. */
export function ggufQuantizeValues(
  w: FArr,
  n: number,
  k: number,
  type: GgufBlockType,
  opts: GgufQuantizeOptions,
  imatrix?: Float32Array,
): Uint8Array {
  ggufPlan(type, n, k, opts, imatrix); // the same shape checks as the device backends
  const wf = Float32Array.from(w);
  const blocks = opts.atExport
    ? quantizeAtExport(type, wf, n, k)
    : quantizeTensor(type, wf, n, k, { optRtn: opts.optRtn, imatrix });
  return packBlocks(blocks);
}
