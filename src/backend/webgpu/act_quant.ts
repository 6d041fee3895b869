/**
 * Dispatchers of wgsl/act_quant.wgsl: the activation quantizers of the float schemes (issue 17;
 * spec/SCHEMES.md § 8) and their straight-through backward, as src/qmath/act_quant.ts computes them
 * on the CPU: INT8 per token, MX dynamic per 32 (floor, RCEIL; mx_fp, mx_int), NVFP4 with the global scale from
 * actMax (or a stored one) and FP8 E4M3 static per tensor or dynamic per row / group. A first one-workgroup pass (act_prep) puts the
 * clamped actMaxScale and actMax (for `rangeFromInput` max|x| of the input, reduced on the GPU) into
 * a 2-word scratch that the kernels read, so nothing waits for a readback.
 *
 * actMax and a stored inputScale enter the kernels as f32 uniforms: in the pipeline they are f32
 * values (a max over f32 activations, a checkpoint tensor), where the result equals the CPU's bit for
 * bit; a caller passing a value with more than 24 significant bits gets it rounded to f32 first.
 */
import type { ActQuantArgs } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import { type FloatFormat, floatParams, mxFloatFormat, nvOrFp8Format } from "./float_quant.ts";
import { forChunks, gpu, type GpuTensor } from "./tensor.ts";

const WG = 64;

interface ActPlan {
  fmt: FloatFormat;
  rows: number;
  k: number;
  g: number;
  perRow: number;
  stat: boolean;
  actMax: number;
  /** act_prep flags: FLAG_RANGE 1, FLAG_RANGE_GS 4 (see the WGSL). */
  flags: number;
}

function plan(x: GpuTensor, a: ActQuantArgs): ActPlan {
  const { dataType: dt, groupSize: gsz, bits } = a.act;
  const k = x.shape[x.shape.length - 1], rows = x.size / k;
  let fmt: FloatFormat;
  if (dt === "mx_fp" || dt === "mx_fp_rceil" || dt === "mx_int") {
    if (gsz !== 32) throw new BackendError("MX acts: g 32");
    fmt = mxFloatFormat(dt === "mx_int" ? "mx_int" : "mx_fp", bits, dt === "mx_fp_rceil");
  } else if (dt === "nv_fp") {
    if (gsz !== 16) throw new BackendError("NVFP4 acts: group 16");
    let gs = a.inputGlobalScale;
    if (gs === undefined && a.rangeFromInput) gs = 0; // from max|x| on the GPU (FLAG_RANGE_GS)
    else if (gs === undefined) {
      if (a.actMax === undefined) throw new BackendError("nv_fp activations need the calibrated actMax");
      gs = a.actMax === 0 ? 0 : Math.fround(2688 * Math.fround(1 / a.actMax));
    }
    fmt = nvOrFp8Format(1, gs);
  } else if (dt === "fp") {
    if (gsz === 0 && a.actMax === undefined && a.inputScale === undefined && !a.rangeFromInput) {
      throw new BackendError("per-tensor acts: static FP8 only");
    }
    fmt = nvOrFp8Format(2, 0, a.inputScale !== undefined && !a.act.dynamic ? a.inputScale : 0);
  } else if (dt === "int") {
    // quant_tensor_sym per token with float16 scales; the bit width rides in mbits.
    fmt = { ...nvOrFp8Format(2), kind: 3, mbits: bits };
  } else {
    throw new BackendError(`no WebGPU activation kernel for ${dt}`);
  }
  const g = gsz <= 0 || gsz > k ? k : gsz;
  return {
    fmt,
    rows,
    k,
    g,
    perRow: Math.ceil(k / g),
    stat: gsz === 0,
    actMax: a.actMax ?? 0,
    flags: a.rangeFromInput ? (dt === "nv_fp" && a.inputGlobalScale === undefined ? 5 : 1) : 0,
  };
}

function params(
  pl: ActPlan,
  rows: number,
  bases: readonly number[],
  extra: { flags?: number; segLen?: number; finish?: boolean },
) {
  const l = { rows, k: pl.k, g: pl.g, perRow: pl.perRow };
  return floatParams(pl.fmt, l, bases, { stat: pl.stat, actMax: pl.actMax, flags: pl.flags, ...extra });
}

/** act_prep into a new [2] scratch: [clamped actMaxScale or 1, actMax or max|x|]. */
function prep(ctx: GpuContext, x: GpuTensor, a: ActQuantArgs, pl: ActPlan): GpuTensor {
  const { rt } = ctx, par = ctx.alloc([2], "f32");
  const beta = a.actMaxScale ? gpu(a.actMaxScale) : x;
  const k = rt.kernel({
    family: "actQuant",
    entry: "act_prep",
    bindings: ["r", "r", "rw"],
    types: { x: x.kind, beta: beta.kind },
  });
  let first = true;
  forChunks(
    rt,
    pl.rows,
    [{ t: x, per: pl.k }, { t: beta, per: 0 }, { t: par, per: 0 }],
    (_r0, rows, [X, B, R]) => {
      const flags = pl.flags | (first ? 0 : 2);
      // has_beta is the `finish` word of the shared uniform.
      const extra = { flags, segLen: rows * pl.k, finish: !!a.actMaxScale };
      const prm = params(pl, rows, [X.base, B.base, 0, 0, 0, 0, 0, R.base], extra);
      rt.dispatch(k, prm, [X.window, B.window, R.window], 1);
      first = false;
    },
    1,
  );
  return par;
}

/** Fake-quantized activations in x's dtype (act_quant.ts actFakeQuantRows). */
export function actFakeQuant(ctx: GpuContext, x: GpuTensor, a: ActQuantArgs): GpuTensor {
  const { rt } = ctx, pl = plan(x, a);
  using par = prep(ctx, x, a, pl);
  const bp = { t: par, per: 0 };
  const out = ctx.alloc(x.shape, x.dtype);
  const types = { x: x.kind, out: out.kind };
  const k = rt.kernel({ family: "actQuant", entry: "act_fwd", bindings: ["r", "r", "rw"], types });
  forChunks(rt, pl.rows, [{ t: x, per: pl.k }, bp, { t: out, per: pl.k }], (_r0, rows, [X, B, O]) => {
    const prm = params(pl, rows, [X.base, B.base, 0, 0, 0, O.base], {});
    rt.dispatch(k, prm, [X.window, B.window, O.window], Math.ceil((rows * pl.perRow) / WG));
  }, 1);
  return out;
}

/** dL/dx in dOut's dtype and, when actMaxScale is given, dL/d(actMaxScale) [1] (actFakeQuantBackwardRows). */
export function actFakeQuantBackward(
  ctx: GpuContext,
  x: GpuTensor,
  a: ActQuantArgs,
  dOut: GpuTensor,
): { dx: GpuTensor; dActMaxScale?: GpuTensor } {
  const { rt } = ctx, pl = plan(x, a);
  using par = prep(ctx, x, a, pl);
  const bp = { t: par, per: 0 };
  if (dOut.size !== x.size) {
    throw new BackendError(`actFakeQuantBackward: dOut has ${dOut.size} elements, x ${x.size}`);
  }
  const dx = ctx.alloc(x.shape, dOut.dtype);
  using dstat = ctx.alloc([pl.rows * pl.perRow * 2], "f32"); // a (hi, lo) pair per group
  const types = { x: x.kind, dout: dOut.kind, dx: dx.kind };
  const kb = rt.kernel({
    family: "actQuant",
    entry: "act_bwd",
    bindings: ["r", "r", "r", "rw", "rw"],
    types,
  });
  const parts = [{ t: x, per: pl.k }, bp, { t: dOut, per: pl.k }, { t: dx, per: pl.k }, {
    t: dstat,
    per: pl.perRow * 2,
  }];
  forChunks(rt, pl.rows, parts, (_r0, rows, [X, B, D, DX, S]) => {
    const prm = params(pl, rows, [X.base, B.base, 0, 0, 0, D.base, S.base, DX.base], {});
    rt.dispatch(
      kb,
      prm,
      [X.window, B.window, D.window, DX.window, S.window],
      Math.ceil((rows * pl.perRow) / WG),
    );
  }, 1);
  if (!a.actMaxScale) return { dx };
  // Static FP8 tunes actMaxScale: its gradient is the sum of every group's share (0 for dynamic ones).
  const g = ctx.alloc([1], "f32");
  const ks = rt.kernel({ family: "actQuant", entry: "act_sum", bindings: ["r", "rw"] });
  forChunks(rt, 1, [{ t: dstat, per: dstat.size }, { t: g, per: 1 }], (_s, _c, [S, G]) => {
    const prm = floatParams(pl.fmt, { ...pl, perRow: pl.perRow }, [0, 0, 0, 0, 0, 0, S.base, G.base], {
      segLen: dstat.size / 2,
    });
    rt.dispatch(ks, prm, [S.window, G.window], 1);
  }, 1);
  return { dx, dActMaxScale: g };
}
