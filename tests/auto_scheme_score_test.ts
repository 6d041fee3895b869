/**
 * AutoScheme's scoring pass (spec/AUTOSCHEME.md § 3) against float64 central finite differences:
 * blockBackward's input gradient (Llama, Qwen2 bias, Qwen3 q/k norm), the whole-model dL/dŴ of the
 * block-streamed pass (cross-entropy head included) on a tiny random 2-block model with an injected
 * quantizer Q(W) = W/2, and the score formula on § 9 T10's hand-checked numbers.
 */
import type { Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { blockBackward, blockForward, type BlockWeights } from "../src/model/block.ts";
import { blockWeightShapes } from "../src/model/block_layout.ts";
import {
  BLOCK_LINEARS,
  blockPrefix,
  type LinearName,
  type ModelSpec,
  parseModelConfig,
} from "../src/model/config.ts";
import { loadBlockWeights, uploadRope, type WeightSource } from "../src/model/transformer.ts";
import { resolveOptions } from "../src/quant/auto_scheme/options.ts";
import { absProductSum, lmTargets, scoreOptions } from "../src/quant/auto_scheme/score.ts";
import { assert, assertAlmostEquals } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";

const be = new CpuBackend({ precision: "f64" });
const EPS = 1e-6;
const rand = (n: number, s = 1) => Float64Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);
const f64 = (t: Tensor) => Float64Array.from((t as unknown as { f: Float64Array }).f);
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

const sample = (n: number, k: number) => Array.from({ length: k }, () => Math.floor(Math.random() * n));

function tinySpec(modelType: "llama" | "qwen2" | "qwen3", layers = 1): ModelSpec {
  return parseModelConfig({
    model_type: modelType,
    hidden_size: 12,
    intermediate_size: 20,
    num_hidden_layers: layers,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 4,
    vocab_size: 10,
    rms_norm_eps: 1e-5,
  }, "tiny");
}

/** Random weights of a whole model as a WeightSource (values f32-representable, like a checkpoint). */
function randomSource(spec: ModelSpec): WeightSource & { values: Map<string, Float32Array> } {
  const shapes = new Map<string, number[]>([
    ["model.embed_tokens.weight", [spec.vocab, spec.hidden]],
    ["model.norm.weight", [spec.hidden]],
    ["lm_head.weight", [spec.vocab, spec.hidden]],
  ]);
  for (let i = 0; i < spec.nLayers; i++) {
    for (const [n, s] of blockWeightShapes(spec, i)) shapes.set(blockPrefix(i, spec) + n, s);
  }
  const values = new Map<string, Float32Array>();
  for (const [n, s] of shapes) {
    const size = s.reduce((a, b) => a * b, 1);
    const norm = n.includes("norm");
    values.set(n, Float32Array.from(rand(size, norm ? 0.3 : 0.5), (x) => (norm ? 1 + x : x)));
  }
  return {
    origin: "random",
    values,
    has: (n) => shapes.has(n),
    shape: (n) => shapes.get(n)!,
    readF32: (n) => Promise.resolve(values.get(n)!.slice()),
  };
}

for (const modelType of ["llama", "qwen2", "qwen3"] as const) {
  Deno.test(`${modelType} block: blockBackward's input gradient matches finite differences`, async () => {
    const spec = tinySpec(modelType);
    const src = randomSource(spec);
    const geo = { batch: 2, seqLen: 5 };
    const M = geo.batch * geo.seqLen, H = spec.hidden;
    using rope = uploadRope(be, spec, geo.seqLen);
    using w = await loadBlockWeights(be, spec, src, 0);
    const x = rand(M * H), R = rand(M * H);
    const f = () => dot(f64(blockForward(be, spec, w, be.upload(x, [M, H]), geo, rope).y), R);
    for (const release of [false, true]) {
      const { saved } = blockForward(be, spec, w, be.upload(x, [M, H]), geo, rope, { save: true });
      let dx: Float64Array | undefined;
      blockBackward(be, spec, w, saved!, be.upload(R, [M, H]), geo, rope, () => false, {
        release,
        onInputGrad: (t) => (dx = f64(t)),
      });
      const e = fdCheck(x, dx!, f, sample(M * H, 40));
      console.log(`  ${modelType} dL/dx (release ${release}) max rel err ${e.toExponential(2)}`);
      assert(e < 1e-6, `${modelType}: ${e}`);
    }
  });
}

/** The model loss (mean next-token CE over counted tokens) with the given Ŵ, all on the host in f64. */
async function referenceLoss(
  spec: ModelSpec,
  src: WeightSource & { values: Map<string, Float32Array> },
  wq: Map<string, Float64Array>,
  ids: Int32Array,
  geo: { batch: number; seqLen: number },
): Promise<number> {
  const M = geo.batch * geo.seqLen, V = spec.vocab;
  using rope = uploadRope(be, spec, geo.seqLen);
  const up = (n: string) => be.upload(Float64Array.from(src.values.get(n)!), src.shape(n));
  let x = be.embedding(up("model.embed_tokens.weight"), be.uploadInt(ids, [M]));
  for (let i = 0; i < spec.nLayers; i++) {
    using bw = await loadBlockWeights(be, spec, src, i);
    const linear = Object.fromEntries(
      BLOCK_LINEARS.map((l) => [l, be.upload(wq.get(blockPrefix(i, spec) + l)!, bw.linear[l].shape)]),
    ) as Record<LinearName, Tensor>;
    const w: BlockWeights = { ...bw, linear };
    x = blockForward(be, spec, w, x, geo, rope).y;
  }
  const z = be.rmsNorm(x, up("model.norm.weight"), spec.rmsEps);
  const logits = f64(be.matmul(z, up("lm_head.weight"), { transB: true }));
  const mask = new Uint8Array(M).map((_, r) => (r % geo.seqLen < geo.seqLen - 1 ? 1 : 0));
  const { targets, count } = lmTargets(ids, mask, geo.batch, geo.seqLen);
  let loss = 0;
  for (let r = 0; r < M; r++) {
    if (targets[r] < 0) continue;
    const row = logits.subarray(r * V, (r + 1) * V);
    const m = Math.max(...row);
    loss += m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0)) - row[targets[r]];
  }
  return loss / count;
}

Deno.test("scoring pass: whole-model dL/dŴ matches finite differences of the model loss; S = Σ|G ⊙ (W − Ŵ)|", async () => {
  const spec = tinySpec("llama", 2);
  const src = randomSource(spec);
  const geo = { batch: 2, seqLen: 5 };
  const M = geo.batch * geo.seqLen;
  const ids = Int32Array.from({ length: M }, () => Math.floor(Math.random() * spec.vocab));
  const mask = new Uint8Array(M).map((_, r) => (r % geo.seqLen < geo.seqLen - 1 ? 1 : 0));
  const names = [...Array(spec.nLayers).keys()].flatMap((i) =>
    BLOCK_LINEARS.map((l) => blockPrefix(i, spec) + l)
  );
  const wq = new Map(names.map((n) => [n, Float64Array.from(src.values.get(n + ".weight")!, (x) => x / 2)]));
  const grads = new Map<string, Float64Array>();
  const { options } = resolveOptions("W4A16");
  const { scores, losses } = await scoreOptions({
    be,
    spec,
    weights: src,
    options,
    scored: new Set(names),
    ids,
    lossMask: mask,
    nsamples: geo.batch,
    seqlen: geo.seqLen,
    batchSize: geo.batch,
    quantizer: (_n, _o, w) => Promise.resolve(be.upload(f64(w).map((x) => x / 2), w.shape)),
    onWeightGrad: (n, _o, dW) => grads.set(n, f64(dW)),
  });
  const L0 = await referenceLoss(spec, src, wq, ids, geo);
  assertAlmostEquals(losses[0][0], L0, 1e-6 * L0, "pass loss vs reference loss");
  let worst = 0;
  for (const n of [names[0], names[4], names[9], names[13]]) {
    const x = wq.get(n)!;
    // Central differences of the (async) reference loss, fdCheck's rule.
    const idx = sample(x.length, 6);
    let err = 0, scale = 0;
    for (const i of idx) {
      const x0 = x[i];
      x[i] = x0 + EPS;
      const fp = await referenceLoss(spec, src, wq, ids, geo);
      x[i] = x0 - EPS;
      const fm = await referenceLoss(spec, src, wq, ids, geo);
      x[i] = x0;
      const num = (fp - fm) / (2 * EPS);
      err = Math.max(err, Math.abs(num - grads.get(n)![i]));
      scale = Math.max(scale, Math.abs(num));
    }
    const rel = err / scale;
    console.log(`  dL/dŴ ${n} max rel err ${rel.toExponential(2)}`);
    worst = Math.max(worst, rel);
    // The score of the pass: Σ|G ⊙ (W − Ŵ)| with W − Ŵ = W/2 (reduced from f32 reads: 1e-6).
    const want = absProductSum(
      grads.get(n)!,
      Float64Array.from(src.values.get(n + ".weight")!, (v) => v / 2),
    );
    assertAlmostEquals(scores.get(n)![0], want, 1e-6 * want, `score of ${n}`);
  }
  assert(worst < 1e-6, `worst ${worst}`);
});

Deno.test("score formula: § 9 T10 (G = [−0.55, −1.1], W − Ŵ = [0.15, −0.35]) → 0.4675", () => {
  // One Linear, Q(W) = W/2, W = [[0.3, −0.7]], x = [1, 2], L = ½y², y = Ŵx = −0.55: G = y·xᵀ.
  const W = [0.3, -0.7], Wq = W.map((w) => w / 2), x = [1, 2];
  const y = Wq[0] * x[0] + Wq[1] * x[1];
  assertAlmostEquals(y, -0.55, 1e-15);
  const G = x.map((xi) => y * xi);
  assertAlmostEquals(absProductSum(G, W.map((w, i) => w - Wq[i])), 0.4675, 1e-15);
});
