/**
 * One SignRound block-iteration assembled from Backend ops (for bench/webgpu_matmul.ts): fake-quantize
 * the 7 Linears, forward the Llama block with saved intermediates, masked MSE, backward through the
 * MLP, RMSNorms, attention and RoPE to the 7 weight gradients, straight-through gradients to V, α, β,
 * sign-SGD steps and the device-side keepBest. The same op sequence as src/model/block.ts and the
 * tuning loop, written out here so the bench depends only on the Backend interface.
 */
import type { Backend, DType, IntQuantParams, QuantState, Tensor } from "../src/backend/backend.ts";

/** Llama-family block dimensions. */
export interface BlockDims {
  batch: number;
  seqLen: number;
  hidden: number;
  inter: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

/** Llama-3-8B block at 8 × 2048 tokens. */
export const LLAMA3_8B: BlockDims = {
  batch: 8,
  seqLen: 2048,
  hidden: 4096,
  inter: 14336,
  heads: 32,
  kvHeads: 8,
  headDim: 128,
};

const NAMES = ["q", "k", "v", "o", "gate", "up", "down"] as const;
type Name = typeof NAMES[number];

function shapes(d: BlockDims): Record<Name, [number, number]> {
  const q = d.heads * d.headDim, kv = d.kvHeads * d.headDim;
  return {
    q: [q, d.hidden],
    k: [kv, d.hidden],
    v: [kv, d.hidden],
    o: [d.hidden, q],
    gate: [d.inter, d.hidden],
    up: [d.inter, d.hidden],
    down: [d.hidden, d.inter],
  };
}

/**
 * FLOPs of one iteration: Linear forward (2·rows·N·K each), backward dX for o/gate/up/down (the
 * block input's gradient is not needed) and dW for all 7, causal attention forward (2 products over
 * half the scores) and backward (5 products; recomputing P adds 2 more in these kernels, not counted).
 */
export function blockFlops(d: BlockDims): number {
  const rows = d.batch * d.seqLen;
  const sh = shapes(d);
  let lin = 0, dx = 0;
  for (const n of NAMES) {
    const [N, K] = sh[n];
    lin += 2 * rows * N * K;
    if (n === "o" || n === "gate" || n === "up" || n === "down") dx += 2 * rows * N * K;
  }
  const attnFwd = 2 * 2 * d.batch * d.heads * d.seqLen * d.seqLen * d.headDim / 2;
  return lin * 2 + dx + attnFwd * 3.5;
}

/** Device state of one block under tuning. */
export interface BlockBench extends Disposable {
  /** Enqueue one iteration (returns at once; `be.sync()` waits). */
  iterate(): void;
}

/**
 * Allocate weights, quantization state and activations for `d` on `be` in `dtype` (constants:
 * speed does not depend on the values).
 *
 * @example
 * ```ts
 * using b = setupBlock(be, LLAMA3_8B, "f16");
 * b.iterate();
 * await be.sync();
 * ```
 */
export function setupBlock(be: Backend, d: BlockDims, dtype: DType): BlockBench {
  const own: Tensor[] = [];
  const keep = (t: Tensor) => (own.push(t), t);
  const rows = d.batch * d.seqLen, sh = shapes(d);
  const p: IntQuantParams = { bits: 4, groupSize: 128, sym: true, scaleDType: "f16" };
  const w = {} as Record<Name, Tensor>, st = {} as Record<Name, QuantState>;
  for (const n of NAMES) {
    const [N, K] = sh[n], G = Math.ceil(K / p.groupSize);
    w[n] = keep(be.full([N, K], 0.01, dtype));
    st[n] = {
      v: keep(be.full([N, K], 0)),
      minScale: keep(be.full([N * G], 1)),
      maxScale: keep(be.full([N * G], 1)),
      wMin: keep(be.full([N * G], -0.05)),
      wMax: keep(be.full([N * G], 0.04)),
    };
  }
  const ln1 = keep(be.full([d.hidden], 1, dtype)), ln2 = keep(be.full([d.hidden], 1, dtype));
  const cos = keep(be.full([d.seqLen, d.headDim / 2], 0.6)),
    sin = keep(be.full([d.seqLen, d.headDim / 2], 0.8));
  const x = keep(be.full([rows, d.hidden], 0.5, dtype)), target = keep(be.full([rows, d.hidden], 0.4, dtype));
  const mask = keep(be.full([rows], 1));
  const best = keep(be.full([1], 3.4e38));
  const attnShape = { ...d, nHeads: d.heads, nKvHeads: d.kvHeads, scale: 1 / Math.sqrt(d.headDim) };
  const ropeGeo = { batch: d.batch, seqLen: d.seqLen, headDim: d.headDim };
  const lr = 1 / 200;

  function iterate(): void {
    const tmp: Tensor[] = [];
    const t = (x: Tensor) => (tmp.push(x), x);
    const wq = {} as Record<Name, Tensor>;
    for (const n of NAMES) wq[n] = t(be.fakeQuant(w[n], st[n], p, dtype));
    const lin = (a: Tensor, n: Name) => t(be.matmul(a, wq[n], { transB: true }));
    // forward
    const h1 = t(be.rmsNorm(x, ln1, 1e-5));
    const q = lin(h1, "q"), k = lin(h1, "k"), v = lin(h1, "v");
    be.rope(q, cos, sin, { ...ropeGeo, nHeads: d.heads });
    be.rope(k, cos, sin, { ...ropeGeo, nHeads: d.kvHeads });
    const { out: attn, lse } = be.attention(q, k, v, attnShape);
    t(attn), t(lse);
    const x2 = t(be.add(x, lin(attn, "o")));
    const h2 = t(be.rmsNorm(x2, ln2, 1e-5));
    const gate = lin(h2, "gate"), up = lin(h2, "up");
    const act = t(be.siluMul(gate, up));
    const y = t(be.add(x2, lin(act, "down")));
    const { loss, dy } = be.mseLoss(y, target, mask, 1000);
    t(loss), t(dy);
    // backward
    const dW = {} as Record<Name, Tensor>;
    const wgrad = (n: Name, dOut: Tensor, input: Tensor) =>
      dW[n] = t(be.matmul(dOut, input, { transA: true }));
    wgrad("down", dy, act);
    const dAct = t(be.matmul(dy, wq.down));
    const { dg, du } = be.siluMulBackward(gate, up, dAct);
    t(dg), t(du);
    wgrad("gate", dg, h2);
    wgrad("up", du, h2);
    const dh2 = t(be.matmul(dg, wq.gate));
    be.matmul(du, wq.up, { out: dh2, beta: 1 });
    const dx2 = t(be.rmsNormBackward(x2, ln2, dh2, 1e-5));
    be.add(dx2, dy, dx2);
    wgrad("o", dx2, attn);
    const dAttn = t(be.matmul(dx2, wq.o));
    const g = be.attentionBackward(q, k, v, attn, lse, dAttn, attnShape);
    t(g.dq), t(g.dk), t(g.dv);
    be.rope(g.dq, cos, sin, { ...ropeGeo, nHeads: d.heads }, true);
    be.rope(g.dk, cos, sin, { ...ropeGeo, nHeads: d.kvHeads }, true);
    wgrad("q", g.dq, h1);
    wgrad("k", g.dk, h1);
    wgrad("v", g.dv, h1);
    // straight-through gradients and sign-SGD
    for (const n of NAMES) {
      const gr = be.fakeQuantBackward(w[n], st[n], p, dW[n]);
      t(gr.dv), t(gr.dMinScale), t(gr.dMaxScale);
      be.signSgdStep(st[n].v, gr.dv, lr, { lo: -0.5, hi: 0.5 });
      be.signSgdStep(st[n].minScale, gr.dMinScale, lr, { lo: 0, hi: 1 });
      be.signSgdStep(st[n].maxScale, gr.dMaxScale, lr, { lo: 0, hi: 1 });
    }
    be.keepBest(loss, best, []);
    for (const x of tmp) x[Symbol.dispose]();
  }

  return {
    iterate,
    [Symbol.dispose]() {
      for (const x of own) x[Symbol.dispose]();
    },
  };
}
