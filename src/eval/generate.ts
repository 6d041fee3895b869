/**
 * Text generation with a key/value cache, built on the Backend ops without changing the model code:
 * - prefill runs the prompt through `blockForward` (with `save`, which keeps each block's roped k
 *   and v) and copies k, v to a host cache;
 * - each decode step runs one token through the block math (the same ops in the same order as
 *   `blockForward`) except attention, which is done on the host over the cache in f64 — the same
 *   arithmetic as the CPU reference kernel, for one query row.
 * On a GPU backend that costs two small transfers per block and token; a device-side cached
 * attention op would remove them (see the eval report).
 * Families whose block has more than the Llama parts (MoE, Gemma, Phi-3: spec/MODELS.md) decode by
 * running the whole sequence through `LoadedModel.hidden` each step: exact, quadratic in length.
 */
import { UsageError } from "../errors.ts";
import type { Tensor } from "../backend/backend.ts";
import { blockForward, type BlockWeights, disposeSaved } from "../model/block.ts";
import type { ModelSpec } from "../model/config.ts";
import type { LoadedModel } from "../model/transformer.ts";
import { yieldToEventLoop } from "../std/event_loop.ts";
import { Sampler, type SamplerOptions } from "./sampler.ts";

/** Whether blockStep's one-token Llama block math is the model's (else: recompute each step). */
function llamaBlock(spec: ModelSpec): boolean {
  return !spec.moe && !spec.fused && !spec.sandwichNorms && spec.act !== "gelu_tanh" && !spec.rotaryDim &&
    spec.attnScale === undefined && spec.attnSoftcap === undefined && spec.embedScale === undefined &&
    spec.slidingWindow === undefined && spec.ropeScaling.type !== "longrope";
}

/** A model plus its growing key/value cache. */
export class KvCacheDecoder {
  private readonly k: Float32Array[];
  private readonly v: Float32Array[];
  /** Tokens in the cache. */
  length = 0;
  /** The sequence so far, when every step recomputes it (families blockStep does not cover). */
  private readonly ids?: number[];

  constructor(readonly model: LoadedModel, readonly capacity: number) {
    const row = model.spec.nKvHeads * model.spec.headDim;
    const cached = llamaBlock(model.spec);
    this.k = cached ? model.blocks.map(() => new Float32Array(capacity * row)) : [];
    this.v = cached ? model.blocks.map(() => new Float32Array(capacity * row)) : [];
    if (!cached) this.ids = [];
  }

  /** Logits after the last of `this.ids`, from the whole sequence. */
  private async recompute(): Promise<Float32Array> {
    const ids = this.ids!, m = this.model;
    using h = m.hidden(Int32Array.from(ids), { batch: 1, seqLen: ids.length });
    using last = m.be.rows(h, ids.length - 1, 1);
    using logits = m.logits(last);
    this.length = ids.length;
    return await m.be.read(logits);
  }

  /** Run the prompt (the cache must be empty); returns the logits after its last token. */
  async prefill(ids: readonly number[]): Promise<Float32Array> {
    if (this.length !== 0) throw new Error("prefill needs an empty cache");
    if (ids.length === 0) throw new Error("prefill needs at least one token");
    if (ids.length > this.capacity) throw new Error(`prompt of ${ids.length} tokens exceeds the cache`);
    if (this.ids) {
      this.ids.push(...ids);
      return await this.recompute();
    }
    const { be, spec } = this.model;
    const geo = { batch: 1, seqLen: ids.length };
    using idT = be.uploadInt(Int32Array.from(ids), [ids.length]);
    let x = be.embedding(this.model.embed, idT);
    try {
      for (let i = 0; i < this.model.blocks.length; i++) {
        const { y, saved } = blockForward(be, spec, this.model.blocks[i], x, geo, this.model.rope, {
          save: true,
        });
        try {
          this.k[i].set(await be.read(saved!.k));
          this.v[i].set(await be.read(saved!.v));
        } finally {
          disposeSaved(saved!);
        }
        x[Symbol.dispose]();
        x = y;
      }
      this.length = ids.length;
      using last = be.rows(x, ids.length - 1, 1);
      return await this.head(last);
    } finally {
      x[Symbol.dispose]();
    }
  }

  /** Append one token; returns the logits for the next. */
  async step(id: number): Promise<Float32Array> {
    if (this.length >= this.capacity) throw new Error("the key/value cache is full");
    if (this.ids) {
      this.ids.push(id);
      return await this.recompute();
    }
    const be = this.model.be;
    using idT = be.uploadInt(Int32Array.of(id), [1]);
    let x = be.embedding(this.model.embed, idT);
    try {
      for (let i = 0; i < this.model.blocks.length; i++) {
        const y = await this.blockStep(i, this.model.blocks[i], x);
        x[Symbol.dispose]();
        x = y;
      }
      this.length++;
      return await this.head(x);
    } finally {
      x[Symbol.dispose]();
    }
  }

  private async head(x: Tensor): Promise<Float32Array> {
    const { be, spec } = this.model;
    using h = be.rmsNorm(x, this.model.finalNorm, spec.rmsEps);
    using logits = this.model.logits(h);
    return await be.read(logits);
  }

  /** blockForward for one token at position `this.length`, attention over the cache on the host. */
  private async blockStep(layer: number, w: BlockWeights, x: Tensor): Promise<Tensor> {
    const { be, spec } = this.model;
    const lin = (a: Tensor, wt: Tensor) => be.matmul(a, wt, { transB: true });
    const pos = this.length;
    const ropeGeo = { batch: 1, seqLen: 1, headDim: spec.headDim, posOffset: pos };
    using h1 = be.rmsNorm(x, w.inputNorm, spec.rmsEps);
    let q = lin(h1, w.linear["self_attn.q_proj"]);
    let k = lin(h1, w.linear["self_attn.k_proj"]);
    using v = lin(h1, w.linear["self_attn.v_proj"]);
    try {
      if (w.bias) {
        be.addRowVector(q, w.bias.q);
        be.addRowVector(k, w.bias.k);
        be.addRowVector(v, w.bias.v);
      }
      if (w.qNorm && w.kNorm) {
        const qn = be.rmsNorm(q, w.qNorm, spec.rmsEps), kn = be.rmsNorm(k, w.kNorm, spec.rmsEps);
        q[Symbol.dispose]();
        k[Symbol.dispose]();
        q = qn;
        k = kn;
      }
      be.rope(q, this.model.rope.cos, this.model.rope.sin, { ...ropeGeo, nHeads: spec.nHeads });
      be.rope(k, this.model.rope.cos, this.model.rope.sin, { ...ropeGeo, nHeads: spec.nKvHeads });
      const row = spec.nKvHeads * spec.headDim;
      this.k[layer].set(await be.read(k), pos * row);
      this.v[layer].set(await be.read(v), pos * row);
      const attnHost = this.attend(layer, await be.read(q), pos + 1);
      using attn = be.upload(attnHost, [1, spec.nHeads * spec.headDim], x.dtype);
      using o = lin(attn, w.linear["self_attn.o_proj"]);
      using x2 = be.add(x, o);
      using h2 = be.rmsNorm(x2, w.postNorm, spec.rmsEps);
      using gate = lin(h2, w.linear["mlp.gate_proj"]);
      using up = lin(h2, w.linear["mlp.up_proj"]);
      using act = be.siluMul(gate, up);
      const d = lin(act, w.linear["mlp.down_proj"]);
      return be.add(x2, d, d);
    } finally {
      q[Symbol.dispose]();
      k[Symbol.dispose]();
    }
  }

  /** Causal GQA attention of one query row over `len` cached positions, f64 accumulation. */
  private attend(layer: number, q: Float32Array, len: number): Float64Array {
    const { nHeads: H, nKvHeads: KV, headDim: D } = this.model.spec;
    const scale = 1 / Math.sqrt(D), group = H / KV;
    const K = this.k[layer], V = this.v[layer];
    const out = new Float64Array(H * D);
    const p = new Float64Array(len);
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / group);
      let m = -Infinity;
      for (let s = 0; s < len; s++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += q[h * D + d] * K[s * KV * D + kh * D + d];
        p[s] = dot * scale;
        if (p[s] > m) m = p[s];
      }
      let sum = 0;
      for (let s = 0; s < len; s++) sum += p[s] = Math.exp(p[s] - m);
      for (let s = 0; s < len; s++) {
        const ps = p[s] / sum;
        for (let d = 0; d < D; d++) out[h * D + d] += ps * V[s * KV * D + kh * D + d];
      }
    }
    return out;
  }
}

/** Options of {@linkcode generate}. */
export interface GenerateOptions extends SamplerOptions {
  maxNewTokens: number;
  /** Ids that end generation (not emitted). */
  stopIds: readonly number[];
  /** Called with each new token as soon as it is chosen. */
  onToken?: (id: number) => void;
}

/** Why generation ended. */
export type StopReason = "stop_token" | "max_new_tokens" | "context";

/**
 * Continue `promptIds` (which include any BOS) with up to `maxNewTokens` tokens.
 *
 * @example
 * ```ts
 * const r = await generate(model, tok.encode("Once upon a time"), {
 *   maxNewTokens: 64, temperature: 0, topP: 1, seed: 42, stopIds: [1, 2],
 * });
 * tok.decode(r.ids);
 * ```
 */
export async function generate(
  model: LoadedModel,
  promptIds: readonly number[],
  opts: GenerateOptions,
): Promise<{ ids: number[]; stop: StopReason }> {
  const capacity = Math.min(model.spec.maxPositions, model.rope.cos.shape[0]);
  if (promptIds.length >= capacity) {
    throw new UsageError(`the prompt has ${promptIds.length} tokens; the model's context is ${capacity}`);
  }
  const dec = new KvCacheDecoder(model, capacity);
  const sampler = new Sampler(opts);
  const out: number[] = [];
  let logits = await dec.prefill(promptIds);
  for (;;) {
    if (out.length >= opts.maxNewTokens) return { ids: out, stop: "max_new_tokens" };
    const next = sampler.sample(logits);
    if (opts.stopIds.includes(next)) return { ids: out, stop: "stop_token" };
    out.push(next);
    opts.onToken?.(next);
    if (dec.length >= capacity) return { ids: out, stop: "context" };
    await yieldToEventLoop();
    logits = await dec.step(next);
  }
}
