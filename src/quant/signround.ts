/**
 * SignRound tuning of one decoder block (spec ALGORITHM.md § The tuning loop; auto-round
 * algorithms/quantization/sign_round/quantizer.py `quantize_block`), written once against Backend:
 *
 *   params per quantized Linear: V (rounding offsets, 0), α = min_scale and β = max_scale (1)
 *   each iteration: a batch of samples → block forward with fake-quantized weights → masked MSE to
 *   the fp block's outputs (×1000 before backward) → straight-through gradients → sign-SGD step,
 *   lr decaying linearly to 0; the parameters of the lowest-loss iteration are kept.
 *
 * Everything stays on the device; the host only schedules (sample indices, learning rates) and reads
 * the per-iteration losses once, after the last iteration.
 */
import type { Backend, CapturedWork, FakeQuantGrads, QuantState, Tensor } from "../backend/backend.ts";
import { blockBackward, blockForward, type BlockWeights, type RopeTensors } from "../model/block.ts";
import type { LinearName, ModelSpec } from "../model/config.ts";
import type { PyRandom } from "../io/pyrandom.ts";
import { yieldToEventLoop } from "../std/event_loop.ts";
import { type ActivationStore, DeviceActivations, samplesPerPass } from "./activations.ts";
import type { BlockActQuant } from "./act_quant.ts";
import { IndexSampler } from "./index_sampler.ts";
import { fakeQuantBackwardOf, fakeQuantOf, type LayerQuantParams, paramBits } from "./weight_quant.ts";
import { QuantizeError } from "../errors.ts";

/** The backend's outlier-suppressed loss, or a QuantizeError naming the backend that lacks it. */
function outlierLoss(be: Backend): NonNullable<Backend["outlierSuppressedMseLoss"]> {
  if (!be.outlierSuppressedMseLoss) {
    throw new QuantizeError(
      `--enable_alg_ext's loss is not implemented on the ${be.name} backend yet: use --device cpu`,
    );
  }
  return be.outlierSuppressedMseLoss.bind(be);
}

/** Tuning settings (auto-round SignRoundConfig names in comments). */
export interface SignRoundSettings {
  iters: number;
  /** Explicit lr, or undefined for auto-round's rule (1/iters; 2/iters for ≤3-bit layers at ≥1000 iters). */
  lr?: number;
  /** Explicit minmax_lr, or undefined: the layer's lr. */
  minmaxLr?: number;
  batchSize: number;
  gradientAccumulateSteps: number;
  enableMinmaxTuning: boolean;
  /** not_use_best_mse: keep the last parameters instead of the best-loss ones. */
  notUseBestMse: boolean;
  /** dynamic_max_gap: stop after this many iterations without improvement (≤ 0: off). */
  dynamicMaxGap: number;
  /**
   * enable_alg_ext: SignRoundV2 (spec/SCHEMES.md § 9.6) for symmetric int layers: searched initial
   * scales tuned within [0, 2], and the outlier-suppressed loss when bits < 4 or act_bits ≤ 4.
   */
  enableAlgExt?: boolean;
}

/** A quantized Linear of the block being tuned. */
export interface TunedLinear {
  name: LinearName;
  params: LayerQuantParams;
  state: QuantState & Disposable;
}

/** Outcome of one block's tuning. */
export interface BlockTuning {
  lossStart: number;
  lossBest: number;
  bestIter: number;
  iterations: number;
  /** Logged loss of every iteration (auto-round's `total_loss`). */
  history: Float64Array;
}

/** auto-round's learning-rate rule (`SignRoundConfig._lr_for_bits`). */
export function autoLr(iters: number, bits: number): number {
  return iters >= 1000 && bits <= 3 ? 2 / iters : 1 / iters;
}

/** Inputs of tuneBlock. */
export interface TuneInput {
  be: Backend;
  spec: ModelSpec;
  /** The block's weights; the tuned Linears' weights are the unquantized ones. */
  weights: BlockWeights;
  linears: TunedLinear[];
  /** Block inputs (quantized stream) and fp targets. */
  inputs: ActivationStore;
  targets: ActivationStore;
  /** Per-sample loss masks, host side: `mask[s·seqLen + t]` = 1 when position t of sample s counts. */
  lossMask: Uint8Array;
  rope: RopeTensors;
  settings: SignRoundSettings;
  rng: PyRandom;
  /** Activation quantizers of the block's Linears (schemes with act_bits ≤ 8), tuned act_max_scale included. */
  act?: BlockActQuant;
  /** SignRoundV2's outlier-suppressed loss instead of the MSE (mean reduction always). */
  outlierSuppressedLoss?: boolean;
}

/**
 * Tune V, α, β of every Linear in `linears` in place (best-loss values restored at the end).
 *
 * The iteration is one synchronous function of device tensors: the batch's sample indices and the
 * decayed learning rates are copied into fixed tensors from per-block tables before each run, so a
 * backend that can capture (CUDA graphs) records the iteration once and replays it. Activations
 * spilled to host memory, or batches of unequal valid-token counts, run the same code eagerly.
 */
export async function tuneBlock(t: TuneInput): Promise<BlockTuning> {
  const { be, settings: s, inputs, targets } = t;
  const T = inputs.seqLen, H = inputs.hidden, nsamples = inputs.samples;
  const globalBatch = Math.min(nsamples, s.batchSize * s.gradientAccumulateSteps);
  // A batch whose activations would not fit one device buffer runs as several passes whose
  // gradients add up to the batch's (a memory split, unlike gradient accumulation, keeps the loss
  // the mean over the whole batch).
  const micro = Math.min(s.batchSize, globalBatch, samplesPerPass(be, t.spec, T, s.batchSize));
  const sampler = new IndexSampler(nsamples, globalBatch, t.rng);
  const batches = Array.from({ length: s.iters }, () => sampler.next());
  const valid = batches.map((b) => b.reduce((n, idx) => n + countValid(t.lossMask, idx, T), 0));
  const uniform = valid.every((v) => v === valid[0]);
  // auto-round: MSE "sum" reduction when accumulating; SignRoundV2's own loss is always a mean.
  const sum = s.gradientAccumulateSteps !== 1 && !t.outlierSuppressedLoss;
  const tuned = new Set(t.linears.map((l) => l.name));

  const own: Tensor[] = [];
  const keep = <X extends Tensor>(x: X) => (own.push(x), x);
  // Per-block tables the iteration reads through fixed tensors.
  const idxTable = keep(be.uploadInt(Int32Array.from(batches.flat()), [Math.max(1, s.iters), globalBatch]));
  const curIdx = keep(be.uploadInt(new Int32Array(globalBatch), [globalBatch]));
  const lrValues = [...new Set(t.linears.flatMap((l) => lrsOf(s, l)))];
  const lrTable = new Map(lrValues.map((v) => [
    v,
    keep(
      be.upload(Float64Array.from({ length: Math.max(1, s.iters) }, (_, i) => v * (1 - i / s.iters)), [
        Math.max(1, s.iters),
        1,
      ]),
    ),
  ]));
  const lrCur = new Map(lrValues.map((v) => [v, keep(be.full([1], v))]));
  const maskAll = keep(be.upload(Float32Array.from(t.lossMask), [nsamples * T, 1]));
  // Buffers reused by every iteration.
  const xb = keep(be.full([micro * T, H], 0, be.computeDType));
  const yb = keep(be.full([micro * T, H], 0, be.computeDType));
  const maskBuf = keep(be.full([micro * T, 1], 0));
  const total = keep(be.full([1], 0)), zero = keep(be.full([1], 0));
  const best = keep(be.full([1], 3.4028234663852886e38)); // torch.finfo(torch.float).max
  const history = keep(be.full([Math.max(1, s.iters), 1], 0));
  // With one micro-batch per iteration the gradients feed the step directly: no accumulators (at
  // an 8B shape they would be another f32 copy of every tuned weight, 0.87 GB).
  const single = globalBatch === micro;
  const acc = t.linears.map((l) => ({
    l,
    dv: single ? undefined : keep(be.full(l.state.v.shape, 0)),
    dMin: single ? undefined : keep(be.full(l.state.minScale.shape, 0)),
    dMax: single ? undefined : keep(be.full(l.state.maxScale.shape, 0)),
    bestV: keep(be.full(l.state.v.shape, 0)),
    bestMin: keep(be.full(l.state.minScale.shape, 1)),
    bestMax: keep(be.full(l.state.maxScale.shape, 1)),
  }));
  const bestPairs = [
    ...acc.flatMap((a) =>
      [[a.l.state.v, a.bestV], [a.l.state.minScale, a.bestMin], [a.l.state.maxScale, a.bestMax]] as const
    ),
    ...[...(t.act?.scales.values() ?? [])].map((x) => [x.param, x.best] as const),
  ];
  // auto-round logs (and compares) Σ losses / valid tokens of the global batch; mseLoss returns the
  // mean over rows·hidden, so the sum reduction multiplies that back.
  const invValid = (i: number) => 1 / valid[i];
  let direct: FakeQuantGrads[] | undefined;
  /** Linears that got a gradient this iteration; the others are not stepped (auto-round: grad None). */
  const reached = new Set<number>();
  /**
   * Everything after the batch is in place: loss, backward, accumulation (one micro-batch). In
   * mean mode a pass over part of a batch weighs its mean by its share of the batch's samples.
   */
  const microStep = (rows: number, first: boolean, inv: number, batchRows: number) => {
    const share = sum ? 1 : rows / batchRows;
    direct = step(
      t,
      acc,
      xb,
      yb,
      maskBuf,
      total,
      rows / T,
      (sum ? rows * H : share) * inv,
      share,
      sum,
      first,
      tuned,
      single,
      reached,
    );
  };
  /** Best-loss bookkeeping and the sign-SGD updates at the current learning rates. */
  const update = () => {
    if (!s.notUseBestMse) be.keepBest(total, best, bestPairs);
    acc.forEach((a, j) => {
      if (!reached.has(j)) return; // a MoE expert no calibration token reached (spec/MODELS.md § 7.2)
      const [lrV, lrMin] = lrsOf(s, a.l);
      const g = direct?.[j];
      be.signSgdStep(a.l.state.v, g?.dv ?? a.dv!, lrCur.get(lrV)!);
      if (s.enableMinmaxTuning) {
        // minmax_scale_bound: (0, 1), SignRoundV2's (0, 2) (sign_roundv2/quantizer.py:102).
        const bound = { lo: 0, hi: a.l.params.signRoundV2 ? 2 : 1 };
        be.signSgdStep(a.l.state.minScale, g?.dMinScale ?? a.dMin!, lrCur.get(lrMin)!, bound);
        be.signSgdStep(a.l.state.maxScale, g?.dMaxScale ?? a.dMax!, lrCur.get(lrMin)!, bound);
      }
      // A static activation range's coefficient is in the min-max group (auto-round wrapper.py:213-216).
      const as = t.act?.scales.get(a.l.name);
      if (as) be.signSgdStep(as.param, as.grad, lrCur.get(lrMin)!, { lo: 0, hi: 1 });
    });
    for (const g of direct ?? []) for (const x of [g?.dv, g?.dMinScale, g?.dMaxScale]) x?.[Symbol.dispose]();
    direct = undefined;
    reached.clear();
  };
  /** Rows of the batch (of `batchSize` samples, one gradient-accumulation step) a pass belongs to. */
  const microBatchRows = (start: number) => {
    const b0 = Math.floor(start / s.batchSize) * s.batchSize;
    return Math.min(s.batchSize, globalBatch - b0) * T;
  };
  const deviceStores = inputs instanceof DeviceActivations && targets instanceof DeviceActivations;
  /** One iteration entirely on the device (capturable when alpha does not vary). */
  const deviceIteration = (alpha: number) => {
    be.copy(total, zero);
    t.act?.zeroGrads();
    for (let start = 0; start < globalBatch; start += micro) {
      const n = Math.min(micro, globalBatch - start);
      using idx = be.rows(curIdx, start, n);
      using xv = be.rows(xb, 0, n * T), yv = be.rows(yb, 0, n * T), mv = be.rows(maskBuf, 0, n * T);
      (inputs as DeviceActivations).gatherByTensor(xv, idx);
      (targets as DeviceActivations).gatherByTensor(yv, idx);
      be.gatherSamples(mv, maskAll, idx, T);
      microStep(n * T, start === 0, alpha, microBatchRows(start));
    }
    update();
  };
  const hostIteration = async (i: number) => {
    be.copy(total, zero);
    t.act?.zeroGrads();
    for (let start = 0; start < globalBatch; start += micro) {
      const chunk = batches[i].slice(start, start + micro);
      using xv = be.rows(xb, 0, chunk.length * T), yv = be.rows(yb, 0, chunk.length * T);
      using mv = be.rows(maskBuf, 0, chunk.length * T);
      await inputs.gather(xv, chunk);
      await targets.gather(yv, chunk);
      be.gatherSamples(mv, maskAll, chunk, T);
      microStep(chunk.length * T, start === 0, invValid(i), microBatchRows(start));
    }
    update();
  };

  let graph: CapturedWork | undefined;
  let iterations = 0;
  try {
    for (let i = 0; i < s.iters; i++) {
      using idxRow = be.rows(idxTable, i, 1);
      be.copy(curIdx, idxRow);
      for (const [v, table] of lrTable) {
        using row = be.rows(table, i, 1);
        be.copy(lrCur.get(v)!, row);
      }
      if (deviceStores && uniform) {
        // MoE routing reads the router logits back each forward: not capturable.
        if (be.capture && s.iters > 1 && !t.spec.moe) {
          graph ??= be.capture(() => deviceIteration(invValid(0)));
          graph.replay();
        } else deviceIteration(invValid(0));
      } else if (deviceStores) deviceIteration(invValid(i));
      else await hostIteration(i);
      using slot = be.rows(history, i, 1);
      be.copy(slot, total);
      iterations = i + 1;
      await yieldToEventLoop(); // Ctrl-C is served between iterations (std/event_loop.ts)
      if (s.dynamicMaxGap > 0 && !s.notUseBestMse) {
        // Early stop needs the loss on the host: only then does the loop synchronise.
        const h = await be.read(history);
        let bestIter = 0;
        for (let j = 1; j <= i; j++) if (h[j] < h[bestIter]) bestIter = j;
        if (i - bestIter >= s.dynamicMaxGap) break;
      }
    }
    const h = Float64Array.from((await be.read(history)).subarray(0, iterations));
    let bestIter = 0;
    for (let j = 1; j < h.length; j++) if (h[j] < h[bestIter]) bestIter = j;
    if (!s.notUseBestMse && iterations > 0) { for (const [src, dst] of bestPairs) be.copy(src, dst); }
    return {
      lossStart: h[0] ?? NaN,
      lossBest: s.notUseBestMse ? h[h.length - 1] : h[bestIter],
      bestIter: s.notUseBestMse ? iterations : bestIter,
      iterations,
      history: h,
    };
  } finally {
    graph?.[Symbol.dispose]();
    for (const x of own) x[Symbol.dispose]();
  }
}

/** The learning rates of a Linear: [rounding (V), min-max (α, β)]. */
function lrsOf(s: SignRoundSettings, l: TunedLinear): [number, number] {
  const lr = s.lr ?? autoLr(s.iters, paramBits(l.params));
  return [lr, s.minmaxLr ?? lr];
}

function countValid(mask: Uint8Array, sample: number, T: number): number {
  let n = 0;
  for (let p = 0; p < T; p++) n += mask[sample * T + p];
  return n;
}

/** A tuned Linear and its gradient accumulators (absent when each iteration is one micro-batch). */
type Acc = { l: TunedLinear; dv?: Tensor; dMin?: Tensor; dMax?: Tensor };

/**
 * One micro-batch (already gathered into xb/yb/mask): forward with fake-quantized weights, masked
 * MSE, backward, gradient accumulation. Synchronous: only enqueues device work.
 */
function step(
  t: TuneInput,
  acc: Acc[],
  xb: Tensor,
  yb: Tensor,
  mask: Tensor,
  total: Tensor,
  batch: number,
  lossAlpha: number,
  /** Share of the batch's mean this pass contributes (1 unless a batch runs as several passes). */
  share: number,
  sum: boolean,
  first: boolean,
  tuned: Set<LinearName>,
  /** Return the gradients instead of accumulating them (the only micro-batch of the iteration). */
  keep: boolean,
  /** Receives the index of every Linear that got a gradient (a MoE expert no token reached gets none). */
  reached: Set<number>,
): FakeQuantGrads[] | undefined {
  const { be, spec } = t;
  const T = t.inputs.seqLen, H = t.inputs.hidden;
  const rows = batch * T;
  using x = be.rows(xb, 0, rows);
  using y = be.rows(yb, 0, rows);
  using mr = be.rows(mask, 0, rows);
  using m = be.view(mr, [rows]);
  const fake = new Map<LinearName, Tensor>();
  for (const a of acc) {
    fake.set(a.l.name, fakeQuantOf(be, t.weights.linear[a.l.name], a.l.state, a.l.params, be.computeDType));
  }
  const w: BlockWeights = {
    ...t.weights,
    linear: { ...t.weights.linear, ...Object.fromEntries(fake) },
    inputTransform: t.act,
  };
  const geo = { batch, seqLen: T };
  const { y: out, saved } = blockForward(be, spec, w, x, geo, t.rope, { save: true });
  // auto-round: mean MSE over all rows·hidden elements (masked ones count as zero), or the sum when
  // accumulating gradients; backward of 1000·loss; the logged loss is divided by the valid tokens.
  const elems = rows * H;
  const lossScale = (sum ? 1000 * elems : 1000) * share;
  const { loss, dy } = t.outlierSuppressedLoss
    ? outlierLoss(be)(out, y, m, lossScale)
    : be.mseLoss(out, y, m, lossScale);
  be.accumulate(total, loss, lossAlpha);
  loss[Symbol.dispose]();
  out[Symbol.dispose]();
  // Each weight gradient becomes the quantizer parameters' gradients as soon as the backward
  // produces it, and the saved intermediates go at their last read: the backward's peak holds one
  // Linear's dL/dW, not all seven, and not the MLP activations it is done with.
  const kept: FakeQuantGrads[] = new Array(acc.length);
  const index = new Map(acc.map((a, j) => [a.l.name, j]));
  const onGrad = (name: LinearName, dW: Tensor) => {
    const j = index.get(name)!, a = acc[j];
    const got = reached.has(j);
    reached.add(j);
    const g = fakeQuantBackwardOf(be, t.weights.linear[name], a.l.state, a.l.params, dW);
    dW[Symbol.dispose]();
    if (keep) {
      kept[j] = g;
      return;
    }
    for (const [dst, src] of [[a.dv!, g.dv], [a.dMin!, g.dMinScale], [a.dMax!, g.dMaxScale]] as const) {
      // The first pass that reaches a Linear starts its sums (an earlier pass may have missed it).
      if (first || !got) be.copy(dst, src);
      else be.accumulate(dst, src);
      src[Symbol.dispose]();
    }
  };
  blockBackward(be, spec, w, saved!, dy, geo, t.rope, (n) => tuned.has(n), { onGrad, release: true });
  dy[Symbol.dispose]();
  for (const f of fake.values()) f[Symbol.dispose]();
  return keep ? kept : undefined;
}
