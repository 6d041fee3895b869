/**
 * The quantization ops of the CPU backend — fake-quant forward and backward, the export integers,
 * the group min/max and the optimized-RTN scale search — run on the worker pool by weight rows. The
 * math is qmath/int_quant.ts; tasks.ts slices it.
 */
import type { IntQuantParams, QuantState, Tensor } from "../backend.ts";
import type { QuantizedWeights } from "../../qmath/quantized.ts";
import { BackendError } from "../../errors.ts";
import { groupsPerRow, resolveGroupSize } from "../../qmath/int_quant.ts";
import type { FArr } from "./kernels.ts";
import type { OpsContext } from "./resources.ts";
import * as tk from "./tasks.ts";

/** The tunable state of one Linear as arrays. */
export interface StateArrays {
  v: FArr;
  minScale: FArr;
  maxScale: FArr;
  wMin: FArr;
  wMax: FArr;
  initScale?: FArr;
}

/** The arrays of a tunable state, through `f` (the CPU backend's tensor check). */
export function stateArrays(st: QuantState, f: (x: Tensor) => FArr): StateArrays {
  return {
    v: f(st.v),
    minScale: f(st.minScale),
    maxScale: f(st.maxScale),
    wMin: f(st.wMin),
    wMax: f(st.wMax),
    initScale: st.initScale ? f(st.initScale) : undefined,
  };
}

/** Task arguments for weight w `[n, K]`; checks the state's sizes. */
export function quantArgs(
  w: FArr,
  n: number,
  s: StateArrays,
  p: IntQuantParams,
  precision: "f32" | "f64",
): tk.QuantArgs {
  const k = w.length / n;
  const G = groupsPerRow({ n, k, g: p.groupSize });
  if (s.wMin.length !== n * G || s.v.length !== w.length) {
    throw new BackendError(`quant state does not match a [${n}, ${k}] weight with group ${p.groupSize}`);
  }
  const v2 = p.signRoundV2 ? { signRoundV2: true } : {};
  return { w, k, g: p.groupSize, bits: p.bits, sym: p.sym, scaleDType: p.scaleDType, precision, ...s, ...v2 };
}

export function fakeQuantRows(c: OpsContext, a: tk.QuantArgs, out: FArr): void {
  c.pool.run(tk.fakeQuantTask, a.w.length / a.k, { ...a, out }, tk.grain(a.k));
}

export function fakeQuantBackwardRows(
  c: OpsContext,
  a: tk.QuantArgs,
  dWq: FArr,
  dv: FArr,
  dMin: FArr,
  dMax: FArr,
): void {
  c.pool.run(tk.fakeQuantBackwardTask, a.w.length / a.k, { ...a, dWq, dv, dMin, dMax }, tk.grain(a.k));
}

/** Codes, scales and zero points, as ordinary arrays for the exporters. */
export function quantizeRows(c: OpsContext, a: tk.QuantArgs): QuantizedWeights {
  const nG = a.wMin.length;
  const codes = c.mem.u8(a.w.length), scales = c.mem.f32(nG), zeros = c.mem.i32(nG);
  const args = { ...a, out: c.mem.floats(a.w.length), codes, scales, zeros };
  c.pool.run(tk.fakeQuantTask, a.w.length / a.k, args, tk.grain(a.k));
  const q = { codes: codes.slice(), scales: scales.slice(), zeros: zeros.slice() };
  for (const x of [args.out, codes, scales, zeros]) c.mem.release(x);
  return q;
}

/** Per-group weight min/max `[n·G]` (groupSize −1 or > K: the whole row). */
export function groupMinMaxRows(
  c: OpsContext,
  w: FArr,
  n: number,
  groupSize: number,
): { wMin: Float64Array; wMax: Float64Array } {
  const k = w.length / n, g = resolveGroupSize(groupSize, k);
  const G = groupsPerRow({ n, k, g });
  const wMin = c.mem.f64(n * G), wMax = c.mem.f64(n * G);
  c.pool.run(tk.groupMinMaxTask, n, { w, k, g, wMin, wMax }, tk.grain(k));
  return { wMin, wMax };
}

/** Optimized-RTN scales `[n·G]`, importance from imatrix `[K]` when given. */
export function optRtnScaleRows(
  c: OpsContext,
  w: FArr,
  n: number,
  imatrix: FArr | undefined,
  groupSize: number,
  bits: number,
): Float64Array {
  const k = w.length / n, g = resolveGroupSize(groupSize, k);
  const scales = c.mem.f64(n * groupsPerRow({ n, k, g }));
  // ~100 candidate scales per group: a row is ~100·k operations.
  c.pool.run(tk.optRtnScalesTask, n, { w, k, g, bits, imatrix, scales }, tk.grain(100 * k));
  return scales;
}
