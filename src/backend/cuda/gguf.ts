/**
 * Launcher of the GGUF quantizer (ffi/cuda/gguf.cu): the per-group parameter search, the K-quants'
 * double quantization per super-block and the packed block bytes, three launches; the host decides
 * the plan (../gguf_plan.ts) and reads back only the bytes.
 */
import type { GgufBlockType, GgufQuantizeOptions, Tensor } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { type GgufPlan, ggufPlan } from "../gguf_plan.ts";
import type { OpContext } from "./matmul.ts";
import { type CudaTensor, DTYPE_CODE } from "./tensor.ts";

/** Mode flags of the kernels (GG_* in ffi/cuda/gguf_math.cuh). */
export function ggufFlags(p: GgufPlan): number {
  return (p.imatrix ? 1 : 0) | (p.hasZero ? 2 : 0) | (p.optRtn ? 4 : 0) | (p.mad ? 8 : 0) |
    (p.atExport ? 16 : 0);
}

/** A small f32 table on the device (at least one element, so its address is always valid). */
function table(op: OpContext, values: Float32Array): CudaTensor {
  const t = op.newTensor([Math.max(1, values.length)], "f32");
  if (values.length > 0) op.rt.stream.copyToDevice(t.addr, values);
  return t;
}

/**
 * The packed GGML blocks of `w` `[N, K]` as `type` (Backend.ggufQuantize).
 *
 * @example
 * ```ts
 * const bytes = await ggufQuantize(be, w, "Q4_K", { optRtn: true }, (x) => be.t(x));
 * ```
 */
export async function ggufQuantize(
  op: OpContext,
  w: CudaTensor,
  type: GgufBlockType,
  opts: GgufQuantizeOptions,
  as: (x: Tensor) => CudaTensor,
): Promise<Uint8Array> {
  const rt = op.rt;
  if (w.shape.length !== 2) throw new BackendError(`ggufQuantize: weight must be 2-D, got [${w.shape}]`);
  if (w.dtype !== "f32" && w.dtype !== "bf16" && w.dtype !== "f16") {
    throw new BackendError(`ggufQuantize: weight must be a float tensor, got ${w.dtype}`);
  }
  const [n, k] = w.shape;
  const im = opts.imatrix ? as(opts.imatrix) : undefined;
  let imHost: Float32Array | undefined;
  if (im) {
    if (im.dtype !== "f32") throw new BackendError(`ggufQuantize: imatrix must be f32, got ${im.dtype}`);
    imHost = new Float32Array(im.size);
    await rt.stream.synchronize();
    rt.stream.copyToHost(imHost, im.addr);
  }
  const p = ggufPlan(type, n, k, opts, imHost);
  const out = new Uint8Array(p.bytes);
  if (p.nb === 0) return out;
  const flags = ggufFlags(p);
  using par = op.newTensor([p.groups * 3], "f32");
  using sup = op.newTensor([Math.max(2, p.nb * 2)], "f32");
  using grid = table(op, p.grid);
  using sgrid = table(op, p.superGrid);
  using bytes = op.newTensor([p.bytes], "u8");
  const dt = DTYPE_CODE[w.dtype];

  const search = p.family === "legacy" ? "gg_legacy" : p.family === "ksym" ? "gg_ksym16" : `gg_kasym${p.gs}`;
  rt.begin().ptr(w.addr).i32(dt).ptr(p.imatrix ? im!.addr : 0n).ptr(grid.addr).ptr(par.addr).i64(p.groups)
    .i64(k)
    .i32(p.family === "legacy" ? p.code : p.bits).i32(flags).i32(p.grid.length);
  rt.launch(rt.fn(search, "gguf"), [Math.ceil(p.groups / 256)], [256]);
  if (p.family !== "legacy") {
    rt.begin().ptr(par.addr).ptr(sup.addr).ptr(sgrid.addr).i64(p.nb).i32(p.sgs).i32(
      p.family === "ksym" ? 1 : 0,
    )
      .i32(p.superBits).i32(flags);
    rt.launch(rt.fn("gg_super", "gguf"), [Math.ceil(p.nb / 256)], [256]);
  }
  rt.begin().ptr(w.addr).i32(dt).ptr(par.addr).ptr(sup.addr).ptr(bytes.addr).i64(p.bytes).i32(p.code).i32(
    flags,
  )
    .i32(p.bs).i32(p.ts).i32(p.gs);
  rt.launch(rt.fn("gg_pack", "gguf"), [Math.ceil(p.bytes / 256)], [256]);
  await rt.stream.synchronize();
  rt.stream.copyToHost(out, bytes.addr);
  return out;
}
