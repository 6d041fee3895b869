/**
 * Searched initial coefficients of float-scheme Linears (spec/SCHEMES.md § 4.3, § 5.3, § 9.6), as the
 * state's initScale (one per group, multiplying the group maximum with β):
 * - NVFP4 RTN: auto-round's default `opt_rtn_fast_nvfp4` — per group c ∈ [0.5, 1.51] searched with
 *   the layer's own global scale, importance from the imatrix with its zero handling;
 * - SignRoundV2 (`--enable_alg_ext`) on MX / NVFP4: `search_mx_scale` (c ∈ {1, 0.5, 2}) or
 *   `search_nvfp4_scale`, importance from the imatrix as collected (reshape_imatrix_for_weight: no
 *   zero handling, data_type/utils.py:200-214).
 * On the host (the weight is read once).
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import { mxFormat } from "../qmath/float_quant.ts";
import { searchMxScaleRows, searchNvfp4ScaleRows } from "../qmath/float_tune.ts";
import { importanceForWeight } from "../qmath/int_quant.ts";
import type { QuantScheme } from "../qmath/quantized.ts";
import { nvGlobalScale } from "./float_block.ts";

/** How the importance enters the search. */
export type FloatInitMode = "optRtn" | "signRoundV2";

/** The searched coefficients `[n·G]` of weight `[n, k]` for scheme `s` (mx_fp or nv_fp). */
export async function floatInitScales(
  be: Backend,
  weight: Tensor,
  imatrix: Tensor | undefined,
  s: QuantScheme,
  mode: FloatInitMode,
): Promise<Tensor> {
  const [n, k] = weight.shape;
  const w = await be.read(weight);
  const g = s.dataType === "nv_fp" ? 16 : 32;
  let importance: Float32Array | undefined;
  if (imatrix) {
    const im = await be.read(imatrix);
    importance = mode === "optRtn"
      ? Float32Array.from(importanceForWeight(im, w, { n, k, g }, s.bits))
      : Float32Array.from({ length: n * k }, (_, i) => im[i % k]);
  }
  let coeff: Float32Array;
  if (s.dataType === "nv_fp") {
    let amax = 0;
    for (let i = 0; i < w.length; i++) amax = Math.max(amax, Math.abs(w[i]));
    // The search takes the layer's own global scale; the quantizer then the fused one (§ 12.6).
    coeff = searchNvfp4ScaleRows(w, k, 0, n, nvGlobalScale(amax), importance);
  } else if (s.dataType === "mx_fp") {
    coeff = searchMxScaleRows(w, k, 0, n, mxFormat(`mx_fp${s.bits}`, s.bits), importance);
  } else {
    throw new Error(`no initial-scale search for data type ${s.dataType}`);
  }
  return be.upload(coeff, [coeff.length]);
}
