/**
 * Dispatcher of the GGUF quantizer (wgsl/gguf_search.wgsl, gguf_super.wgsl, gguf_pack.wgsl, all
 * after gguf_math.wgsl): the per-group parameter search, the K-quants' double quantization per
 * super-block, and the packed block bytes — three passes over block ranges that fit one binding.
 * The host decides the plan (../gguf_plan.ts); only the packed bytes come back.
 */
import type { GgufBlockType, GgufQuantizeOptions } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { type GgufPlan, ggufPlan } from "../gguf_plan.ts";
import type { GpuContext } from "./context.ts";
import type { KernelFamily, KernelSpec } from "./kernels.ts";
import { Params } from "./params.ts";
import { bind, type Bound, chunks, gpu, type GpuTensor } from "./tensor.ts";

const WG = 256;
/** Floats per group in the parameter scratch (scale, min or zero point, Σ importance). */
const PAR = 3;
/** Floats per super-block (d, dmin). */
const SUP = 2;

/** The uniform every GGUF kernel reads (GgufUniform in gguf_math.wgsl). */
function uniform(
  u: {
    count: number;
    k: number;
    col0?: number;
    w?: Bound;
    im?: Bound;
    par?: Bound;
    sup?: Bound;
    out?: Bound;
    outBytes?: number;
    ncand?: number;
  },
): Params {
  return new Params().u(0).u(u.count).u(u.k).u(u.col0 ?? 0)
    .u(u.w?.base ?? 0).u(u.im?.base ?? 0).u(u.par?.base ?? 0).u(u.sup?.base ?? 0)
    .u(u.out?.base ?? 0).u(u.outBytes ?? 0).u(u.ncand ?? 0).u(0);
}

function spec(
  family: KernelFamily,
  entry: string,
  p: GgufPlan,
  bindings: KernelSpec["bindings"],
  w?: GpuTensor,
) {
  return {
    family,
    entry,
    bindings,
    types: w ? { w: w.kind } : undefined,
    consts: {
      GS: p.gs,
      SGS: Math.max(p.sgs, 8),
      BS: p.bs,
      TS: p.ts,
      BITS: p.bits,
      TYPE: p.code,
      SUPER_BITS: Math.max(p.superBits, 2),
      IMATRIX: p.imatrix,
      HAS_ZERO: p.hasZero,
      OPT_RTN: p.optRtn,
      MAD: p.mad,
      EXPORT: p.atExport,
    },
  } satisfies KernelSpec;
}

/** A small f32 table on the device (at least one element, so it can always be bound). */
function table(ctx: GpuContext, values: Float32Array): GpuTensor {
  const t = ctx.alloc([Math.max(1, values.length)], "f32");
  const bytes = new Uint8Array(t.size * 4);
  bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  ctx.rt.write(t.storage.buffer, t.offset * 4, bytes);
  return t;
}

/**
 * The packed GGML blocks of `w` `[N, K]` as `type` (Backend.ggufQuantize).
 *
 * @example
 * ```ts
 * const bytes = await ggufQuantize(ctx, w, "Q4_K", { optRtn: true, imatrix });
 * ```
 */
export async function ggufQuantize(
  ctx: GpuContext,
  w: GpuTensor,
  type: GgufBlockType,
  opts: GgufQuantizeOptions,
): Promise<Uint8Array> {
  const { rt } = ctx;
  if (w.shape.length !== 2) throw new BackendError(`ggufQuantize: weight must be 2-D, got [${w.shape}]`);
  const [n, k] = w.shape;
  let imHost: Float32Array | undefined;
  const im = opts.imatrix ? gpu(opts.imatrix) : undefined;
  if (im) {
    if (im.dtype !== "f32") throw new BackendError(`ggufQuantize: imatrix must be f32, got ${im.dtype}`);
    imHost = new Float32Array(await rt.read(im.storage.buffer, im.offset * 4, im.size * 4));
  }
  const p = ggufPlan(type, n, k, opts, imHost);
  if (p.nb === 0) return new Uint8Array(0);
  const sub = p.bs / p.gs;
  using par = ctx.alloc([p.groups * PAR], "f32");
  using sup = ctx.alloc([p.family === "legacy" ? 1 : p.nb * SUP], "f32");
  using grid = table(ctx, p.grid);
  using superGrid = table(ctx, p.superGrid);
  using out = ctx.alloc([Math.ceil(p.bytes / 4)], "i32");
  const wb = w.kind.bytes;

  // 1. Group searches.
  const entry = p.family === "legacy" ? "gg_legacy" : p.family === "kasym" ? "gg_kasym" : "gg_ksym";
  const ks = rt.kernel(spec("ggufSearch", entry, p, ["r", "r", "r", "rw"], w));
  const G = bind(rt, grid);
  const I = p.imatrix ? bind(rt, im!) : G;
  for (const [b0, nbk] of chunks(rt, p.nb, [p.bs * wb, sub * PAR * 4], 2)) {
    const W = bind(rt, w, b0 * p.bs, nbk * p.bs), Pr = bind(rt, par, b0 * sub * PAR, nbk * sub * PAR);
    const u = uniform({
      count: nbk * sub,
      k,
      col0: (b0 * p.bs) % k,
      w: W,
      im: I,
      par: Pr,
      ncand: p.grid.length,
    });
    rt.dispatch(ks, u, [W.window, I.window, G.window, Pr.window], Math.ceil((nbk * sub) / WG));
  }

  // 2. Double quantization of the K-quants' sub-block scales.
  if (p.family !== "legacy") {
    const entry = p.family === "kasym" ? "gg_super_asym" : "gg_super_sym";
    const kd = rt.kernel(spec("ggufSuper", entry, p, ["rw", "rw", "r"]));
    const SG = bind(rt, superGrid);
    for (const [b0, nbk] of chunks(rt, p.nb, [sub * PAR * 4, SUP * 4], 2)) {
      const Pr = bind(rt, par, b0 * sub * PAR, nbk * sub * PAR), S = bind(rt, sup, b0 * SUP, nbk * SUP);
      rt.dispatch(
        kd,
        uniform({ count: nbk, k, par: Pr, sup: S }),
        [Pr.window, S.window, SG.window],
        Math.ceil(nbk / WG),
      );
    }
  }

  // 3. Block bytes, one thread per output word; chunks start at an even block (word-aligned bytes).
  const kp = rt.kernel(spec("ggufPack", "gg_pack", p, ["r", "r", "r", "rw"], w));
  const supPer = p.family === "legacy" ? 0 : SUP * 4;
  for (const [b0, nbk] of chunks(rt, p.nb, [p.bs * wb, sub * PAR * 4, supPer, p.ts], 2)) {
    if ((b0 * p.ts) % 4 !== 0) {
      throw new BackendError(`internal: GGUF pack chunk at block ${b0} is not word-aligned`);
    }
    const W = bind(rt, w, b0 * p.bs, nbk * p.bs), Pr = bind(rt, par, b0 * sub * PAR, nbk * sub * PAR);
    const S = p.family === "legacy" ? bind(rt, sup) : bind(rt, sup, b0 * SUP, nbk * SUP);
    const words = Math.ceil((nbk * p.ts) / 4);
    const O = bind(rt, out, (b0 * p.ts) / 4, words);
    const u = uniform({ count: words, k, w: W, par: Pr, sup: S, out: O, outBytes: nbk * p.ts });
    rt.dispatch(kp, u, [W.window, Pr.window, S.window, O.window], Math.ceil(words / WG));
  }
  return new Uint8Array(await rt.read(out.storage.buffer, out.offset * 4, p.bytes));
}
