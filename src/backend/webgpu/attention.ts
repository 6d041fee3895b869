/**
 * Dispatchers of wgsl/attention.wgsl and wgsl/attention_backward.wgsl (with the soft cap and the
 * sliding window of AttentionShape). Block sizes follow the head
 * dimension and the device's workgroup memory; the work is split over batch entries when the
 * tensors of all entries do not fit one binding (one sequence's q/k/v must).
 */
import type { AttentionShape } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import type { GpuContext } from "./context.ts";
import { Params } from "./params.ts";
import { type Bound, forChunks, type GpuTensor } from "./tensor.ts";

/** Compile-time block sizes of one attention kernel. */
export interface AttnBlocks {
  D: number;
  BQ: number;
  BK: number;
  TPR: number;
}

/**
 * Threads per query (or key) row: enough that each owns about 8 dims of the head (so small heads do
 * not repeat the softmax's exp across threads), at most 8, each owning whole vec4s of the head.
 */
function threadsPerRow(D: number): number {
  return [8, 4, 2, 1].find((t) => t <= Math.max(1, D / 8) && D % (4 * t) === 0)!;
}

/**
 * Largest blocks whose workgroup memory (f32 words, per kernel) fits the device limit, with about
 * 64–128 threads per workgroup.
 *
 * @example
 * ```ts
 * attnBlocks(128, 32768, "forward"); // { D: 128, BQ: 16, BK: 16, TPR: 8 }
 * ```
 */
export function attnBlocks(D: number, limitBytes: number, kernel: "forward" | "dq" | "dkv"): AttnBlocks {
  if (D % 4 !== 0) throw new BackendError(`attention: head dimension ${D} is not a multiple of 4`);
  const TPR = threadsPerRow(D), DS = D + 4;
  for (const BQ of [64, 32, 16, 8].filter((b) => b * TPR <= 128 && b >= TPR)) {
    for (const BK of (kernel === "dkv" ? [16, 8] : [32, 16, 8]).filter((b) => b >= TPR)) {
      const words = kernel === "forward"
        ? (BQ + 2 * BK) * DS + BQ * (BK + 1)
        : kernel === "dq"
        ? (2 * BQ + 2 * BK) * DS + BQ * (BK + 1)
        : (2 * BQ + 2 * BK) * DS + 2 * BK * (BQ + 1) + 2 * BQ;
      if (words * 4 <= limitBytes) return { D, BQ, BK, TPR };
    }
  }
  throw new BackendError(
    `attention: head dimension ${D} needs more workgroup memory than ${limitBytes} bytes`,
  );
}

/** The kernels' window: the sliding window, or T (plain causal) without one or when it is wider. */
function windowOf(shape: AttentionShape): number {
  return Math.min(shape.window ?? shape.seqLen, shape.seqLen);
}

function check(shape: AttentionShape, q: GpuTensor, k: GpuTensor): void {
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, softcap, window } = shape;
  if (window !== undefined && !(Number.isInteger(window) && window >= 1)) {
    throw new BackendError(`attention window must be a positive integer, got ${window}`);
  }
  if (softcap !== undefined && !(Number.isFinite(softcap) && softcap > 0)) {
    throw new BackendError(`attention softcap must be a positive number, got ${softcap}`);
  }
  if (H % KV !== 0) throw new BackendError(`attention: ${H} heads are not a multiple of ${KV} kv heads`);
  if (q.size !== B * T * H * D || k.size !== B * T * KV * D) {
    throw new BackendError(`attention: q/k sizes ${q.size}/${k.size} do not match the shape`);
  }
}

/** Per-batch-entry chunks of the tensors (rows b·T .. (b+1)·T). */
function perBatch(
  ctx: GpuContext,
  shape: AttentionShape,
  parts: { t: GpuTensor; width: number }[],
  emit: (b0: number, nb: number, bound: Bound[]) => void,
): void {
  const T = shape.seqLen;
  forChunks(ctx.rt, shape.batch, parts.map((p) => ({ t: p.t, per: T * p.width })), emit, 1);
}

/** Forward: out and lse (f32 [B·H·T]). */
export function attention(
  ctx: GpuContext,
  q: GpuTensor,
  k: GpuTensor,
  v: GpuTensor,
  out: GpuTensor,
  lse: GpuTensor,
  shape: AttentionShape,
): void {
  check(shape, q, k);
  const { rt } = ctx;
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D } = shape;
  const blk = attnBlocks(D, rt.maxWorkgroupStorage, "forward");
  const kern = rt.kernel({
    family: "attention",
    entry: "attention",
    bindings: ["r", "r", "r", "rw", "rw"],
    types: { q: q.kind, k: k.kind, v: v.kind, o: out.kind },
    consts: { ...blk },
  });
  const parts = [
    { t: q, width: H * D },
    { t: k, width: KV * D },
    { t: v, width: KV * D },
    { t: out, width: H * D },
    { t: lse, width: H },
  ];
  perBatch(ctx, shape, parts, (_b0, nb, [Q, K, V, O, L]) => {
    const p = new Params().u(T).u(H).u(KV).u(H / KV).u(Q.base).u(K.base).u(V.base).u(O.base)
      .u(L.base).u(H * D).u(KV * D).f(shape.scale).f(shape.softcap ?? 0).u(windowOf(shape));
    rt.dispatch(kern, p, [Q.window, K.window, V.window, O.window, L.window], [Math.ceil(T / blk.BQ), H, nb]);
  });
}

/** Backward: dq, dk, dv (already allocated). */
export function attentionBackward(
  ctx: GpuContext,
  t: { q: GpuTensor; k: GpuTensor; v: GpuTensor; out: GpuTensor; lse: GpuTensor; dOut: GpuTensor },
  g: { dq: GpuTensor; dk: GpuTensor; dv: GpuTensor },
  shape: AttentionShape,
): void {
  check(shape, t.q, t.k);
  const { rt } = ctx;
  const { seqLen: T, nHeads: H, nKvHeads: KV, headDim: D } = shape;
  using delta = ctx.alloc([shape.batch * H * T], "f32");
  const types = {
    q: t.q.kind,
    k: t.k.kind,
    v: t.v.kind,
    do: t.dOut.kind,
    o: t.out.kind,
    dq: g.dq.kind,
    dk: g.dk.kind,
    dv: g.dv.kind,
  };
  const kvBlk = attnBlocks(D, rt.maxWorkgroupStorage, "dkv");
  const qBlk = attnBlocks(D, rt.maxWorkgroupStorage, "dq");
  const kDelta = rt.kernel({
    family: "attentionBackward",
    entry: "attn_delta",
    bindings: ["r", "r", "rw"],
    types,
    consts: { ...qBlk },
  });
  const kKv = rt.kernel({
    family: "attentionBackward",
    entry: "attn_bwd_kv",
    bindings: ["r", "r", "r", "r", "r", "r", "rw", "rw"],
    types,
    consts: { ...kvBlk },
  });
  const kQ = rt.kernel({
    family: "attentionBackward",
    entry: "attn_bwd_q",
    bindings: ["r", "r", "r", "r", "r", "r", "rw"],
    types,
    consts: { ...qBlk },
  });
  const parts = [
    { t: t.q, width: H * D },
    { t: t.k, width: KV * D },
    { t: t.v, width: KV * D },
    { t: t.dOut, width: H * D },
    { t: t.lse, width: H },
    { t: delta, width: H },
    { t: t.out, width: H * D },
    { t: g.dq, width: H * D },
    { t: g.dk, width: KV * D },
    { t: g.dv, width: KV * D },
  ];
  perBatch(ctx, shape, parts, (_b0, nb, [Q, K, V, DO, L, DL, O, DQ, DK, DV]) => {
    // Field order of BwdParams; the output bases ride in d_base/o_base/g_base per kernel.
    const params = (oBase: number, gBase: number) =>
      new Params().u(T).u(H).u(KV).u(H / KV).u(Q.base).u(K.base).u(V.base).u(DO.base)
        .u(L.base).u(H * D).u(KV * D).f(shape.scale).u(DL.base).u(oBase).u(gBase).u(nb * T)
        .f(shape.softcap ?? 0).u(windowOf(shape));
    rt.dispatch(kDelta, params(O.base, 0), [DO.window, O.window, DL.window], Math.ceil((nb * T * H) / 256));
    const inputs = [Q.window, K.window, V.window, DO.window, L.window, DL.window];
    rt.dispatch(kKv, params(DV.base, DK.base), [...inputs, DK.window, DV.window], [
      Math.ceil(T / kvBlk.BK),
      KV,
      nb,
    ]);
    rt.dispatch(kQ, params(0, DQ.base), [...inputs, DQ.window], [Math.ceil(T / qBlk.BQ), H, nb]);
  });
}
