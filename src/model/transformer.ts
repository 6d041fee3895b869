/**
 * A whole decoder on a backend: embeddings, the blocks, the final norm and the output head.
 * Weights come from any WeightSource (an fp checkpoint, or a quantized folder dequantized on
 * load), so evaluation reads every format through one path.
 */
import type { ActQuantArgs, Backend, DType, Tensor } from "../backend/backend.ts";
import { BackendError, FormatError } from "../errors.ts";
import {
  blockForward,
  type BlockWeights,
  type Geometry,
  type InputTransform,
  type RopeTensors,
} from "./block.ts";
import { blockLinears, blockWeightShapes } from "./block_layout.ts";
import { blockPrefix, type LinearName, type ModelSpec } from "./config.ts";
import { embedName, finalNormName } from "./multimodal.ts";
import { ropeTables } from "./rope.ts";

/** Where weights come from: name → f32 values (dequantized if stored quantized). */
export interface WeightSource {
  /** File or folder, for error messages. */
  readonly origin: string;
  has(name: string): boolean;
  shape(name: string): number[];
  readF32(name: string): Promise<Float32Array>;
  /**
   * Optional: the stored bytes of a float tensor (lets a backend convert on the device); read into
   * `into` (which must hold 4 bytes per element) when given.
   */
  readRaw?(name: string, into?: Uint8Array): Promise<{ dtype: string; bytes: Uint8Array }>;
  /**
   * Optional: the activation quantizer of Linear `layer` (full name without `.weight`) of a
   * checkpoint quantized with activations (MXFP4, NVFP4, FP8_STATIC, INT8_W8A8…): a serving engine
   * quantizes that Linear's input so, and evaluation does the same.
   */
  activationQuant?(layer: string): ActQuantArgs | undefined;
}

const RAW_DTYPES: Record<string, "f32" | "f16" | "bf16"> = { F32: "f32", F16: "f16", BF16: "bf16" };

async function loadChecked(
  be: Backend,
  src: WeightSource,
  name: string,
  shape: number[],
  dtype: DType,
  staging?: { buf: Uint8Array },
): Promise<Tensor> {
  if (!src.has(name)) throw new FormatError(`tensor "${name}" is missing`, src.origin);
  const got = src.shape(name);
  if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
    throw new FormatError(`tensor "${name}" has shape [${got}], expected [${shape}]`, src.origin);
  }
  if (src.readRaw && be.uploadBytes && dtype !== "i32" && dtype !== "u8") {
    // A block's tensors go through one reused host buffer: hundreds of MB of a MoE block's experts
    // are not left as garbage ArrayBuffers for the collector (host RSS stays near one tensor).
    const need = 4 * shape.reduce((a, b) => a * b, 1);
    if (staging && staging.buf.length < need) staging.buf = new Uint8Array(need);
    const raw = await src.readRaw(name, staging?.buf);
    const kind = RAW_DTYPES[raw.dtype];
    if (kind) return be.uploadBytes(raw.bytes, kind, shape, dtype);
  }
  return be.upload(await src.readF32(name), shape, dtype);
}

/** Load block i's weights onto the backend. */
/**
 * Inference-time activation quantization of a block's Linear inputs with fixed parameters (the ones
 * a quantized checkpoint stores). No backward: tuning uses the quantizer's own transform.
 */
export function fixedActivationQuant(
  be: Backend,
  acts: ReadonlyMap<LinearName, ActQuantArgs>,
): InputTransform {
  if (!be.actFakeQuant) {
    throw new BackendError(`the ${be.name} backend cannot quantize activations yet (use --device cpu)`);
  }
  return {
    applies: (name) => acts.has(name),
    forward: (name, x) => be.actFakeQuant!(x, acts.get(name)!),
    backward: () => {
      throw new BackendError("fixedActivationQuant has no backward (inference only)");
    },
  };
}

export async function loadBlockWeights(
  be: Backend,
  spec: ModelSpec,
  src: WeightSource,
  i: number,
  dtype: DType = be.computeDType,
): Promise<BlockWeights & Disposable> {
  const p = blockPrefix(i, spec);
  const t: Record<string, Tensor> = {};
  const staging = { buf: new Uint8Array(0) };
  try {
    for (const [name, shape] of blockWeightShapes(spec, i)) {
      t[name] = spec.normOffset && /norm\.weight$/.test(name)
        ? await loadNorm(be, src, p + name, shape, dtype)
        : await loadChecked(be, src, p + name, shape, dtype, staging);
    }
  } catch (e) {
    for (const x of Object.values(t)) x[Symbol.dispose]();
    throw e;
  }
  const linear: Record<LinearName, Tensor> = {};
  for (const [name, x] of Object.entries(t)) if (name.endsWith(".weight")) linear[name.slice(0, -7)] = x;
  const names = blockLinears(spec, i).map((l) => l.name);
  const acts = src.activationQuant
    ? new Map(names.map((n) => [n, src.activationQuant!(p + n)] as const).filter(([, a]) => a))
    : undefined;
  const sandwich = spec.sandwichNorms === true;
  return {
    layer: i,
    inputTransform: acts?.size ? fixedActivationQuant(be, acts as Map<LinearName, ActQuantArgs>) : undefined,
    inputNorm: t["input_layernorm.weight"],
    postNorm: t[sandwich ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight"],
    postAttnNorm: sandwich ? t["post_attention_layernorm.weight"] : undefined,
    postFfnNorm: sandwich ? t["post_feedforward_layernorm.weight"] : undefined,
    linear,
    bias: spec.traits.qkvBias
      ? { q: t["self_attn.q_proj.bias"], k: t["self_attn.k_proj.bias"], v: t["self_attn.v_proj.bias"] }
      : undefined,
    qNorm: t["self_attn.q_norm.weight"],
    kNorm: t["self_attn.k_norm.weight"],
    [Symbol.dispose]() {
      for (const x of Object.values(t)) x[Symbol.dispose]();
    },
  };
}

/**
 * A norm weight of a family that applies (1 + w) (Gemma): 1 + w computed once in f32, as
 * transformers computes it, and uploaded in place of w.
 */
export async function loadNorm(
  be: Backend,
  src: WeightSource,
  name: string,
  shape: number[],
  dtype: DType,
): Promise<Tensor> {
  using raw = await loadChecked(be, src, name, shape, "f32");
  const w = await be.read(raw);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(1 + w[i]);
  return be.upload(w, shape, dtype === "i32" || dtype === "u8" ? "f32" : dtype);
}

/** Embedding rows scaled as the family scales them (Gemma: ×√hidden); `x` is consumed. */
export function scaleEmbeddings(be: Backend, spec: ModelSpec, x: Tensor): Tensor {
  if (spec.embedScale === undefined) return x;
  const out = be.full(x.shape, 0, x.dtype);
  be.accumulate(out, x, spec.embedScale);
  x[Symbol.dispose]();
  return out;
}

/** Upload RoPE tables for `positions` positions (and the local/long variants the spec has). */
export function uploadRope(be: Backend, spec: ModelSpec, positions: number): RopeTensors & Disposable {
  const half = (spec.rotaryDim ?? spec.headDim) / 2;
  const owned: Tensor[] = [];
  const up = (kind: "global" | "local" | "long") => {
    const { cos, sin } = ropeTables(spec, positions, kind);
    const c = be.upload(cos, [positions, half]), s = be.upload(sin, [positions, half]);
    owned.push(c, s);
    return { cos: c, sin: s };
  };
  const rope: RopeTensors & Disposable = {
    ...up("global"),
    [Symbol.dispose]() {
      for (const t of owned) t[Symbol.dispose]();
    },
  };
  if (spec.localRopeTheta !== undefined) rope.local = up("local");
  if (spec.ropeScaling.type === "longrope") rope.long = up("long");
  return rope;
}

/** Every weight of a model resident on one backend (for evaluation and generation). */
export class LoadedModel implements Disposable {
  private constructor(
    readonly be: Backend,
    readonly spec: ModelSpec,
    readonly embed: Tensor,
    readonly finalNorm: Tensor,
    readonly lmHead: Tensor,
    readonly blocks: (BlockWeights & Disposable)[],
    readonly rope: RopeTensors & Disposable,
  ) {}

  /** Load all weights from `src`; RoPE tables cover `positions` positions. */
  static async load(
    be: Backend,
    spec: ModelSpec,
    src: WeightSource,
    opts: { positions?: number; dtype?: DType } = {},
  ): Promise<LoadedModel> {
    const dtype = opts.dtype ?? be.computeDType;
    const embed = await loadChecked(be, src, embedName(spec), [spec.vocab, spec.hidden], dtype);
    const norm = spec.normOffset
      ? await loadNorm(be, src, finalNormName(spec), [spec.hidden], dtype)
      : await loadChecked(be, src, finalNormName(spec), [spec.hidden], dtype);
    // Tied models may still ship lm_head.weight (a copy); prefer it when present.
    const lmHead = !spec.tieEmbeddings || src.has(spec.lmHeadName)
      ? await loadChecked(be, src, spec.lmHeadName, [spec.vocab, spec.hidden], dtype)
      : embed;
    const blocks = [];
    for (let i = 0; i < spec.nLayers; i++) blocks.push(await loadBlockWeights(be, spec, src, i, dtype));
    const rope = uploadRope(be, spec, opts.positions ?? spec.maxPositions);
    return new LoadedModel(be, spec, embed, norm, lmHead, blocks, rope);
  }

  /** Final normalized hidden states `[B·T, hidden]` for token ids `[B·T]`. */
  hidden(ids: Int32Array, geo: Geometry, posOffset = 0): Tensor {
    using idT = this.be.uploadInt(ids, [ids.length]);
    let x = scaleEmbeddings(this.be, this.spec, this.be.embedding(this.embed, idT));
    for (const b of this.blocks) {
      const { y } = blockForward(this.be, this.spec, b, x, geo, this.rope, { posOffset });
      x[Symbol.dispose]();
      x = y;
    }
    const h = this.be.rmsNorm(x, this.finalNorm, this.spec.rmsEps);
    x[Symbol.dispose]();
    return h;
  }

  /** Logits `[rows, vocab]` of hidden states. */
  logits(hidden: Tensor): Tensor {
    const out = this.be.matmul(hidden, this.lmHead, { transB: true });
    if (this.spec.finalSoftcap !== undefined) {
      if (!this.be.tanhSoftcap) {
        throw new BackendError(`the ${this.be.name} backend cannot soft-cap logits (use --device cpu)`);
      }
      this.be.tanhSoftcap(out, this.spec.finalSoftcap);
    }
    return out;
  }

  /**
   * Negative log-likelihood of each next token: for sequences `ids` `[B, T]`, row b·T + t holds
   * −log p(ids[b, t+1] | ids[b, ≤t]) for t < T−1 (the last position of each sequence gets 0).
   * The output head runs in row chunks so a large vocabulary never needs all logits at once.
   */
  async nextTokenNll(ids: Int32Array, geo: Geometry, chunkRows = 2048): Promise<Float64Array> {
    const n = geo.batch * geo.seqLen;
    const targets = new Int32Array(n);
    for (let b = 0; b < geo.batch; b++) {
      for (let t = 0; t + 1 < geo.seqLen; t++) targets[b * geo.seqLen + t] = ids[b * geo.seqLen + t + 1];
    }
    using h = this.hidden(ids, geo);
    const out = new Float64Array(n);
    for (let r = 0; r < n; r += chunkRows) {
      const rows = Math.min(chunkRows, n - r);
      using hr = this.be.rows(h, r, rows);
      using lg = this.logits(hr);
      using tg = this.be.uploadInt(targets.subarray(r, r + rows), [rows]);
      using nll = this.be.crossEntropy(lg, tg);
      out.set(await this.be.read(nll), r);
    }
    for (let b = 0; b < geo.batch; b++) out[b * geo.seqLen + geo.seqLen - 1] = 0;
    return out;
  }

  [Symbol.dispose](): void {
    this.embed[Symbol.dispose]();
    this.finalNorm[Symbol.dispose]();
    if (this.lmHead !== this.embed) this.lmHead[Symbol.dispose]();
    for (const b of this.blocks) b[Symbol.dispose]();
    this.rope[Symbol.dispose]();
  }
}
