/**
 * Gemma's activations on the CPU backend: GeGLU with the tanh approximation of GELU (transformers'
 * `gelu_pytorch_tanh`, PyTorch `gelu(approximate="tanh")`) and the tanh soft cap of the final logits,
 * as plain kernels and as pool tasks over element ranges (any cut gives the same bits).
 */
import { defineTask } from "../../parallel/pool.ts";
import type { FArr } from "./kernels.ts";

const url = import.meta.url;

/** √(2/π), the constant of the tanh approximation. */
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
/** The cubic coefficient of the tanh approximation (Hendrycks & Gimpel 2016). */
const CUBIC = 0.044715;

/** gelu_tanh(x) = x/2·(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + CUBIC * x * x * x)));
}

/** d gelu_tanh / dx = ½(1 + th) + ½x·(1 − th²)·√(2/π)(1 + 3·0.044715x²), th the tanh above. */
export function geluTanhGrad(x: number): number {
  const th = Math.tanh(SQRT_2_OVER_PI * (x + CUBIC * x * x * x));
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * SQRT_2_OVER_PI * (1 + 3 * CUBIC * x * x);
}

/** h = gelu_tanh(g)·u elementwise. */
export function geluTanhMul(g: FArr, u: FArr, h: FArr): void {
  for (let i = 0; i < h.length; i++) h[i] = geluTanh(g[i]) * u[i];
}

/** dg, du of h = gelu_tanh(g)·u: du = dh·gelu_tanh(g), dg = dh·u·gelu_tanh′(g). */
export function geluTanhMulBackward(g: FArr, u: FArr, dh: FArr, dg: FArr, du: FArr): void {
  for (let i = 0; i < g.length; i++) {
    const x = g[i], gu = dh[i] * u[i];
    du[i] = dh[i] * geluTanh(x);
    dg[i] = gu * geluTanhGrad(x);
  }
}

/** x ← cap·tanh(x/cap) in place. */
export function tanhSoftcap(x: FArr, cap: number): void {
  for (let i = 0; i < x.length; i++) x[i] = cap * Math.tanh(x[i] / cap);
}

export const geluTanhMulTask = defineTask(
  url,
  "geluTanhMul",
  (a: { g: FArr; u: FArr; h: FArr }, s, e) =>
    geluTanhMul(a.g.subarray(s, e), a.u.subarray(s, e), a.h.subarray(s, e)),
);

export const geluTanhMulBackwardTask = defineTask(
  url,
  "geluTanhMulBackward",
  (a: { g: FArr; u: FArr; dh: FArr; dg: FArr; du: FArr }, s, e) =>
    geluTanhMulBackward(
      a.g.subarray(s, e),
      a.u.subarray(s, e),
      a.dh.subarray(s, e),
      a.dg.subarray(s, e),
      a.du.subarray(s, e),
    ),
);

export const tanhSoftcapTask = defineTask(
  url,
  "tanhSoftcap",
  (a: { x: FArr; cap: number }, s, e) => tanhSoftcap(a.x.subarray(s, e), a.cap),
);
