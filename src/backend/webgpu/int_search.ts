/**
 * Dispatchers of wgsl/int_search.wgsl (after gguf_math.wgsl): the per-group weight min/max and the
 * optimized-RTN scale search the pipeline runs on a weight already on the device (Backend.groupMinMax,
 * Backend.optRtnScales), split into row chunks whose weight window fits one binding.
 */
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import type { KernelSpec } from "./kernels.ts";
import { Params } from "./params.ts";
import { bind, type Bound, chunks, type GpuTensor } from "./tensor.ts";
import { symSearchGrid } from "../../qmath/int_quant.ts";

const WG = 256;
const f64 = new Float64Array(1), u32 = new Uint32Array(f64.buffer);

interface Geometry {
  n: number;
  k: number;
  g: number;
  G: number;
}

function geometry(w: GpuTensor, groupSize: number, op: string): Geometry {
  if (w.shape.length !== 2) throw new BackendError(`${op}: weight must be 2-D, got [${w.shape}]`);
  const [n, k] = w.shape;
  const g = groupSize <= 0 || groupSize > k ? k : groupSize;
  return { n, k, g, G: Math.ceil(k / g) };
}

/** The uniform of int_search.wgsl (GgufUniform of gguf_math.wgsl, fields as that file documents). */
function uniform(geo: Geometry, rows: number, w: Bound, a: Bound, b: Bound | undefined, ncand = 0): Params {
  return new Params().u(0).u(rows * geo.G).u(geo.k).u(geo.g).u(w.base).u(b?.base ?? 0).u(a.base).u(0)
    .u(0).u(0).u(ncand).u(geo.G);
}

function spec(entry: string, w: GpuTensor, bits: number, imatrix: boolean, out: KernelSpec["bindings"]) {
  return {
    family: "intSearch",
    entry,
    bindings: ["r", ...out],
    types: { w: w.kind },
    consts: { GS: 32, BITS: bits, IMATRIX: imatrix },
  } satisfies KernelSpec;
}

/**
 * AutoRound's weight_min (≤ 0) / weight_max (≥ 0) per group of `groupSize` columns → f32 `[N·G]` each.
 *
 * @example
 * ```ts
 * const { wMin, wMax } = groupMinMax(ctx, w, 128);
 * ```
 */
export function groupMinMax(
  ctx: GpuContext,
  w: GpuTensor,
  groupSize: number,
): { wMin: GpuTensor; wMax: GpuTensor } {
  const { rt } = ctx, geo = geometry(w, groupSize, "groupMinMax");
  const wMin = ctx.alloc([geo.n * geo.G], "f32"), wMax = ctx.alloc([geo.n * geo.G], "f32");
  if (geo.n === 0) return { wMin, wMax };
  const k = rt.kernel(spec("group_minmax", w, 2, false, ["rw", "rw"]));
  for (const [r0, rows] of chunks(rt, geo.n, [geo.k * w.kind.bytes, geo.G * 4], 1)) {
    const W = bind(rt, w, r0 * geo.k, rows * geo.k);
    const A = bind(rt, wMin, r0 * geo.G, rows * geo.G), B = bind(rt, wMax, r0 * geo.G, rows * geo.G);
    rt.dispatch(
      k,
      uniform(geo, rows, W, A, B),
      [W.window, A.window, B.window],
      Math.ceil((rows * geo.G) / WG),
    );
  }
  return { wMin, wMax };
}

/**
 * −(nmax − step·i) for i = −searchMin..searchMin, i ≠ 0 (int_quant.ts searchScalesSym), each as its
 * float64 bits for the kernel's exact product: mantissa top 21 bits (implicit 1 included), low 32
 * bits, biased exponent, sign.
 */
function candidateWords(bits: number): Uint32Array<ArrayBuffer> {
  const { nmax, searchMin, step } = symSearchGrid(bits);
  const out: number[] = [];
  for (let is = -searchMin; is <= searchMin; is++) {
    if (is === 0) continue;
    f64[0] = -(nmax - step * is);
    const hi = u32[1];
    out.push((hi & 0xfffff) | 0x100000, u32[0], (hi >>> 20) & 0x7ff, hi >>> 31);
  }
  return Uint32Array.from(out);
}

/**
 * Optimized-RTN scales (int_quant.ts searchScalesSym with importanceForWeight) → f32 `[N·G]`.
 *
 * @example
 * ```ts
 * using s = optRtnScales(ctx, w, imatrix, 128, 4);
 * ```
 */
export function optRtnScales(
  ctx: GpuContext,
  w: GpuTensor,
  imatrix: GpuTensor | undefined,
  groupSize: number,
  bits: number,
): GpuTensor {
  const { rt } = ctx, geo = geometry(w, groupSize, "optRtnScales");
  if (!(bits >= 2 && bits <= 8)) throw new BackendError(`optRtnScales: ${bits} bits is not supported`);
  if (imatrix && (imatrix.size !== geo.k || imatrix.dtype !== "f32")) {
    throw new BackendError(`optRtnScales: imatrix must be f32 [${geo.k}]`);
  }
  const out = ctx.alloc([geo.n * geo.G], "f32");
  if (geo.n === 0) return out;
  const words = candidateWords(bits);
  using grid = ctx.alloc([words.length], "i32");
  rt.write(grid.storage.buffer, grid.offset * 4, new Uint8Array(words.buffer));
  const k = rt.kernel(spec("opt_rtn_search", w, bits, imatrix !== undefined, ["r", "r", "rw"]));
  const Gd = bind(rt, grid), I = imatrix ? bind(rt, imatrix) : Gd;
  for (const [r0, rows] of chunks(rt, geo.n, [geo.k * w.kind.bytes, geo.G * 4], 1)) {
    const W = bind(rt, w, r0 * geo.k, rows * geo.k), O = bind(rt, out, r0 * geo.G, rows * geo.G);
    const u = uniform(geo, rows, W, O, I, words.length / 4);
    rt.dispatch(k, u, [W.window, I.window, Gd.window, O.window], rows * geo.G);
  }
  return out;
}
