/**
 * Straight-through gradients of src/qmath/float_tune.ts and act_quant.ts against central differences
 * of the independent float64 frozen surrogate (tests/float_surrogate.ts): dv and dmax_scale of the MX,
 * NVFP4 and FP8 weight quantizers, dx of the MX / NVFP4 / FP8 / INT8 activation quantizers and
 * d act_max_scale of static FP8. Bound: 1e-6 of the gradient's ∞-norm. Why it is enough and not
 * loose: production evaluates the derivative formulas in float64 on float32 intermediates (relative
 * perturbation ≤ a few 2^-24 ≈ 2e-7), and central differences with h = 1e-6 of the smooth surrogate
 * err by ~h² + 1e-16·|L|/h < 1e-9. INT8 alone rounds its scale gradient to float16 as torch does
 * (§ 7): that test states its own bound from the fp16 unit roundoff.
 */
import {
  floatFakeQuantBackwardRows,
  floatFakeQuantRows,
  type FloatWeightArgs,
} from "../src/qmath/float_tune.ts";
import { type ActArgs, actFakeQuantBackwardRows } from "../src/qmath/act_quant.ts";
import { mxFormat } from "../src/qmath/float_quant.ts";
import type { ActQuant, FloatScheme } from "../src/qmath/quantized.ts";
import { fdRelErr, Frozen, sAbsMax, sFp8, sMx, sNv } from "./float_surrogate.ts";
import { assert } from "./assert.ts";

const worst = new Map<string, number>();
function check(name: string, e: number, bound: number) {
  worst.set(name, Math.max(worst.get(name) ?? 0, e));
  assert(e <= bound, `${name}: relative error ${e} exceeds ${bound}`);
}
const rnd = (n: number, s: number) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);
const H = 1e-6, BOUND = 1e-6;

function groupMinMax(w: Float32Array, k: number, g: number) {
  const G = w.length / g, wMin = new Float32Array(G), wMax = new Float32Array(G);
  for (let i = 0; i < w.length; i++) {
    const gi = Math.floor(i / g);
    wMin[gi] = Math.min(wMin[gi], w[i]);
    wMax[gi] = Math.max(wMax[gi], w[i]);
  }
  void k;
  return { wMin, wMax };
}

function weightCase(name: string, scheme: FloatScheme, n: number, k: number, scaleW: number, gs?: number) {
  const g = scheme.groupSize === 0 ? n * k : scheme.groupSize < 0 ? k : scheme.groupSize;
  const w = rnd(n * k, scaleW), v = rnd(n * k, 0.4), G = (n * k) / g;
  const maxScale = Float32Array.from({ length: G }, () => 0.6 + 0.4 * Math.random());
  const { wMin, wMax } = groupMinMax(w, k, g);
  const a: FloatWeightArgs = { w, k, scheme, v, maxScale, wMin, wMax, globalScale: gs };
  const dOut = rnd(n * k, 1), dv = new Float32Array(n * k), dB = new Float32Array(G);
  floatFakeQuantBackwardRows(a, 0, n, dOut, dv, dB);
  const F = new Frozen();
  const fmt = scheme.dataType === "nv_fp" || scheme.dataType === "fp"
    ? undefined
    : mxFormat(`${scheme.dataType}${scheme.bits}`, scheme.bits);
  const loss = (p: number[]) => {
    let l = 0;
    for (let gi = 0; gi < G; gi++) {
      const xs = [...w.subarray(gi * g, (gi + 1) * g)], vs = p.slice(gi * g, (gi + 1) * g);
      const vec = Math.max(wMax[gi], -wMin[gi]) * p[n * k + gi];
      const o = fmt
        ? sMx(F, fmt, false, xs, vs, vec)
        : scheme.dataType === "nv_fp"
        ? sNv(F, gs!, xs, vs, vec)
        : sFp8(F, xs, vs, vec);
      o.forEach((y, j) => (l += y * dOut[gi * g + j]));
    }
    return l;
  };
  const x0 = [...v, ...maxScale];
  loss(x0); // record the frozen offsets and branches at the base point
  const f = (p: number[]) => (F.replay(), loss(p));
  const { rel, norm } = fdRelErr([...dv, ...dB], x0, f, H);
  // MX and FP8 (t = fl32(x/scale) + v): dmax_scale = (scale/β)·Σ dOut·(q − (q/t)·x/scale) cancels to ~Σ dOut·q·v/t, and t is the float32
  // value (as in torch) while the surrogate's is float64: |δt| ≤ 2^-24|t| moves each term by
  // ≤ 2^-24|dOut·q|, so the error is bounded by (scale/β)·Σ|dOut·q|·2^-22 (E4M3 elements near 448).
  let cond = 0;
  if (fmt || scheme.dataType === "fp") {
    const out = new Float32Array(n * k), el = new Float32Array(n * k), sc = new Float32Array(G);
    floatFakeQuantRows(a, 0, n, out, el, sc);
    for (let gi = 0; gi < G; gi++) {
      let s = 0;
      for (let j = gi * g; j < (gi + 1) * g; j++) s += Math.abs(dOut[j] * el[j]);
      cond = Math.max(cond, ((fmt ? 2 ** sc[gi] : sc[gi]) / maxScale[gi]) * s * 2 ** -22);
    }
  }
  check(`${name} dv, dmax_scale`, rel, Math.max(BOUND, cond / norm));
}

Deno.test("weight gradients (dv, dmax_scale) match the frozen surrogate: MXFP4/6/8, MXINT4, NVFP4, FP8", () => {
  for (let rep = 0; rep < 3; rep++) {
    for (const bits of [4, 6, 8]) {
      weightCase(`mx_fp${bits}`, { bits, groupSize: 32, sym: true, dataType: "mx_fp" }, 2, 64, 0.05);
    }
    weightCase("mx_int4", { bits: 4, groupSize: 32, sym: true, dataType: "mx_int" }, 2, 64, 0.05);
    weightCase(
      "nv_fp4",
      { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp" },
      2,
      64,
      0.05,
      Math.fround(2688 / 0.06),
    );
    for (const groupSize of [0, -1, 16]) {
      weightCase(`fp8 g${groupSize}`, { bits: 8, groupSize, sym: true, dataType: "fp" }, 2, 64, 0.05);
    }
  }
});

function actCase(name: string, act: ActQuant, t: number, k: number, extra: Omit<ActArgs, "act"> = {}) {
  const x = rnd(t * k, 2), dOut = rnd(t * k, 1), dx = new Float32Array(t * k);
  const a: ActArgs = { act, ...extra };
  const dS = actFakeQuantBackwardRows(x, k, a, 0, t, dOut, dx);
  const g = act.groupSize === 0 ? t * k : act.groupSize < 0 ? k : act.groupSize, G = (t * k) / g;
  const F = new Frozen();
  const dt = act.dataType;
  const fmt = dt === "mx_fp" || dt === "mx_fp_rceil" || dt === "mx_int"
    ? mxFormat(`${dt === "mx_int" ? "mx_int" : "mx_fp"}${act.bits}`, act.bits)
    : undefined;
  const gs = extra.actMax ? 2688 * Math.fround(1 / extra.actMax) : 0;
  const loss = (p: number[]) => {
    let l = 0;
    for (let gi = 0; gi < G; gi++) {
      const xs = p.slice(gi * g, (gi + 1) * g), vs = xs.map(() => 0);
      const vec = act.groupSize === 0 ? extra.actMax! * p[t * k] : sAbsMax(F, xs);
      const o = fmt
        ? sMx(F, fmt, dt === "mx_fp_rceil", xs, vs, vec)
        : dt === "nv_fp"
        ? sNv(F, gs, xs, vs, vec)
        : sFp8(F, xs, vs, vec);
      o.forEach((y, j) => (l += y * dOut[gi * g + j]));
    }
    return l;
  };
  const x0 = [...x, extra.actMaxScale ?? 1];
  loss(x0);
  const f = (p: number[]) => (F.replay(), loss(p));
  const analytic = [...dx, act.groupSize === 0 && !act.dynamic ? dS : 0];
  if (!(act.groupSize === 0 && !act.dynamic)) x0.pop(), analytic.pop();
  check(
    `act ${name} dx${act.groupSize === 0 ? ", dact_max_scale" : ""}`,
    fdRelErr(analytic, x0, f, H).rel,
    BOUND,
  );
}

Deno.test("activation gradients (dx through the elements and the group max) match the frozen surrogate", () => {
  const mx = (dataType: ActQuant["dataType"], bits: number): ActQuant => ({
    bits,
    groupSize: 32,
    sym: true,
    dataType,
    dynamic: true,
  });
  for (let rep = 0; rep < 3; rep++) {
    actCase("mx_fp4", mx("mx_fp", 4), 3, 64);
    actCase("mx_fp8", mx("mx_fp", 8), 3, 64);
    actCase("mx_fp4_rceil", mx("mx_fp_rceil", 4), 3, 64);
    actCase("mx_int4", mx("mx_int", 4), 3, 64);
    actCase(
      "nv_fp4 static gs",
      { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp", dynamic: true },
      3,
      64,
      { actMax: 2.5 },
    );
    actCase(
      "fp8 dynamic g128",
      { bits: 8, groupSize: 128, sym: true, dataType: "fp", dynamic: true },
      2,
      256,
    );
    actCase("fp8 static", { bits: 8, groupSize: 0, sym: true, dataType: "fp", dynamic: false }, 2, 64, {
      actMax: 1.7,
      actMaxScale: 0.8,
    });
  }
});

Deno.test("float gradient checks: error table", () => {
  const rows = [...worst].map(([k, v]) => `  ${k.padEnd(40)} ${v.toExponential(2)}`);
  console.log(`\nqmath_float_grad_test max relative error:\n${rows.join("\n")}`);
});
