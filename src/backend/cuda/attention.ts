/**
 * Causal GQA attention dispatch: the tensor-core flash kernels (ffi/cuda/flash_attention.cu) for
 * bf16/f16 with head dim 64 or 128 and 16-byte aligned tensors, the general warp-per-row kernels
 * (ffi/cuda/attention.cu) for everything else (f32, other head dims).
 */
import type { AttentionShape, Backend } from "../backend.ts";
import { BackendError, UnsupportedError } from "../../errors.ts";
import type { OpContext } from "./matmul.ts";
import { aligned16, type CudaTensor, DTYPE_CODE } from "./tensor.ts";

const LOG2E = Math.LOG2E;
/** Query/key rows per block of the flash kernels, and dk/dv's streamed query tile per head dim. */
const FLASH_BLOCK = 64;
const FLASH_BQ: Record<number, number> = { 64: 64, 128: 32 };

/**
 * The options of issue 18 this backend has no kernels for yet (softcap, window: Gemma 2/3, Mistral;
 * partial rotary: Phi-3): a clear error instead of silently wrong numbers.
 */
export function rejectUnimplemented(
  what: { softcap?: number; window?: number; partialRotary?: number },
): void {
  const names = [
    what.softcap !== undefined ? `attention softcap (${what.softcap})` : "",
    what.window !== undefined ? `sliding-window attention (window ${what.window})` : "",
    what.partialRotary !== undefined ? `partial rotary (rotaryDim ${what.partialRotary})` : "",
  ].filter((n) => n);
  if (names.length > 0) {
    throw new UnsupportedError(
      `the cuda backend has no kernel for ${names.join(" or ")} yet: use --device cpu (or --device webgpu)`,
    );
  }
}

/** The geometry argument of Backend.rope. */
export type RopeGeo = Parameters<Backend["rope"]>[3];

/** Partial rotary (rotaryDim ≠ headDim) has no kernel here yet. */
export function rejectPartialRotary(geo: RopeGeo): void {
  if (geo.rotaryDim !== undefined && geo.rotaryDim !== geo.headDim) {
    rejectUnimplemented({ partialRotary: geo.rotaryDim });
  }
}

function validate(q: CudaTensor, k: CudaTensor, v: CudaTensor, s: AttentionShape): void {
  rejectUnimplemented(s);
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: hd } = s;
  if (H % KV !== 0) throw new BackendError(`attention: ${H} heads are not a multiple of ${KV} kv heads`);
  if (q.size !== B * T * H * hd) {
    throw new BackendError(`attention: q has ${q.size} elements, need ${B}·${T}·${H}·${hd}`);
  }
  if (k.size !== B * T * KV * hd || v.size !== k.size) {
    throw new BackendError(`attention: k/v have ${k.size}/${v.size} elements, need ${B}·${T}·${KV}·${hd}`);
  }
  if (hd > 256) throw new BackendError(`attention: head dim ${hd} > 256 is not supported`);
}

function useFlash(s: AttentionShape, ...ts: CudaTensor[]): boolean {
  const dt = ts[0].dtype;
  if (dt !== "bf16" && dt !== "f16") return false;
  if (s.headDim !== 64 && s.headDim !== 128) return false;
  if (Deno.env.get("AUTOROUND_CUDA_NO_FLASH") === "1") return false;
  return ts.every((t) => t.dtype === dt) && aligned16(...ts.map((t) => t.addr));
}

/** Forward: out (q's dtype) and the row log-sum-exp lse f32 [B·H·T]. */
export function attentionForward(
  op: OpContext,
  q: CudaTensor,
  k: CudaTensor,
  v: CudaTensor,
  s: AttentionShape,
): { out: CudaTensor; lse: CudaTensor } {
  validate(q, k, v, s);
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: hd } = s;
  const rt = op.rt;
  const out = op.newTensor(q.shape, q.dtype);
  const lse = op.newTensor([B * H * T], "f32");
  if (B * T === 0) return { out, lse };
  if (useFlash(s, q, k, v, out)) {
    const fn = rt.fn(`flash_fwd_${q.dtype}_${hd}`, "flash");
    const smem = 5 * FLASH_BLOCK * hd * 2;
    fn.reserveSharedMemory(smem);
    rt.begin().ptr(out.addr).ptr(lse.addr).ptr(q.addr).ptr(k.addr).ptr(v.addr).i32(T).i32(H).i32(KV)
      .f32(s.scale * LOG2E);
    rt.launch(fn, [H, B, Math.ceil(T / FLASH_BLOCK)], [128], smem);
    return { out, lse };
  }
  const K = op.castTo(k, q.dtype), V = op.castTo(v, q.dtype);
  rt.begin().ptr(out.addr).ptr(lse.addr).ptr(q.addr).ptr(K.addr).ptr(V.addr).i32(DTYPE_CODE[q.dtype])
    .i32(B).i32(T).i32(H).i32(KV).i32(hd).f32(s.scale);
  rt.launch(rt.fn("attn_fwd_simple"), [Math.ceil((B * T * H * 32) / 256)], [256]);
  if (K !== k) K[Symbol.dispose]();
  if (V !== v) V[Symbol.dispose]();
  return { out, lse };
}

/** Backward: dq, dk, dv in dOut's dtype. */
export function attentionBackward(
  op: OpContext,
  q: CudaTensor,
  k: CudaTensor,
  v: CudaTensor,
  out: CudaTensor,
  lse: CudaTensor,
  dOut: CudaTensor,
  s: AttentionShape,
): { dq: CudaTensor; dk: CudaTensor; dv: CudaTensor } {
  validate(q, k, v, s);
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: hd } = s;
  if (lse.size !== B * H * T || lse.dtype !== "f32") {
    throw new BackendError(`attention backward: lse must be f32 [${B * H * T}]`);
  }
  if (out.size !== q.size || dOut.size !== q.size) {
    throw new BackendError(`attention backward: out/dOut must match q`);
  }
  const rt = op.rt;
  const dt = dOut.dtype;
  const dq = op.newTensor(q.shape, dt), dk = op.newTensor(k.shape, dt), dv = op.newTensor(v.shape, dt);
  if (B * T === 0) return { dq, dk, dv };
  using delta = op.newTensor([B * H * T], "f32");
  rt.begin().ptr(delta.addr).ptr(out.addr).i32(DTYPE_CODE[out.dtype]).ptr(dOut.addr).i32(DTYPE_CODE[dt])
    .i32(B).i32(T).i32(H).i32(hd);
  rt.launch(rt.fn("attn_delta"), [Math.ceil((B * T * H * 32) / 256)], [256]);

  if (useFlash(s, q, k, v, out, dOut, dq, dk, dv)) {
    const sl2 = s.scale * LOG2E;
    const fdq = rt.fn(`flash_bwd_dq_${dt}_${hd}`, "flash");
    const smemDq = 6 * FLASH_BLOCK * hd * 2;
    fdq.reserveSharedMemory(smemDq);
    rt.begin().ptr(dq.addr).ptr(q.addr).ptr(k.addr).ptr(v.addr).ptr(dOut.addr).ptr(lse.addr).ptr(delta.addr)
      .i32(T).i32(H).i32(KV).f32(s.scale).f32(sl2);
    rt.launch(fdq, [H, B, Math.ceil(T / FLASH_BLOCK)], [128], smemDq);
    const bq = FLASH_BQ[hd];
    const fkv = rt.fn(`flash_bwd_dkdv_${dt}_${hd}`, "flash");
    const smemKv = 2 * FLASH_BLOCK * hd * 2 + 4 * bq * hd * 2 + 4 * bq * 4;
    fkv.reserveSharedMemory(smemKv);
    rt.begin().ptr(dk.addr).ptr(dv.addr).ptr(q.addr).ptr(k.addr).ptr(v.addr).ptr(dOut.addr).ptr(lse.addr)
      .ptr(delta.addr).i32(T).i32(H).i32(KV).f32(s.scale).f32(sl2);
    rt.launch(fkv, [KV, B, Math.ceil(T / FLASH_BLOCK)], [128], smemKv);
    return { dq, dk, dv };
  }
  const K = op.castTo(k, q.dtype), V = op.castTo(v, q.dtype);
  const dtc = DTYPE_CODE[q.dtype], dgc = DTYPE_CODE[dt];
  rt.begin().ptr(dq.addr).i32(dgc).ptr(q.addr).ptr(K.addr).ptr(V.addr).i32(dtc).ptr(dOut.addr).i32(dgc)
    .ptr(lse.addr).ptr(delta.addr).i32(B).i32(T).i32(H).i32(KV).i32(hd).f32(s.scale);
  rt.launch(rt.fn("attn_bwd_dq_simple"), [Math.ceil((B * T * H * 32) / 256)], [256]);
  rt.begin().ptr(dk.addr).ptr(dv.addr).i32(dgc).ptr(q.addr).ptr(K.addr).ptr(V.addr).i32(dtc).ptr(dOut.addr)
    .i32(dgc).ptr(lse.addr).ptr(delta.addr).i32(B).i32(T).i32(H).i32(KV).i32(hd).f32(s.scale);
  rt.launch(rt.fn("attn_bwd_dkdv_simple"), [Math.ceil((B * T * KV * 32) / 256)], [256]);
  if (K !== k) K[Symbol.dispose]();
  if (V !== v) V[Symbol.dispose]();
  return { dq, dk, dv };
}
