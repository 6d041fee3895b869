/**
 * The quantize pipeline, one pass block by block (ARCHITECTURE.md § Data flow):
 *
 *   calibration tokens → embeddings X₀ (activation stores: backend memory, or host when short)
 *   for each block b: read its weights → fp forward: targets and next fp inputs (+ imatrix)
 *     → quantize each Linear (RTN, opt-RTN, or SignRound against the targets from the quantized
 *       stream) → stream packed tensors to every exporter → quantized forward: next quantized
 *       inputs → free block b
 *   then embeddings, final norm, lm_head and configs; the output folder appears only on success.
 *
 * Host memory holds one block's weights plus what the exporters are writing. A Linear's starting
 * state is linear_state.ts; what a finished block hands the exporters, block_outputs.ts.
 */
import type { QuantState, Tensor } from "../backend/backend.ts";
import type { LayerPlan } from "../formats/run.ts";
import type { CalibrationSet } from "../io/calib.ts";
import { PyRandom } from "../io/pyrandom.ts";
import type { Log } from "../log.ts";
import type { LinearInputObserver, RopeTensors } from "../model/block.ts";
import { blockLinears } from "../model/block_layout.ts";
import { blockPrefix, type LinearName } from "../model/config.ts";
import { tensorsOutsideBlocks } from "../model/multimodal.ts";
import { loadBlockWeights, uploadRope } from "../model/transformer.ts";
import { embeddingSource } from "./calib_embeddings.ts";
import type { QuantScheme } from "../qmath/quantized.ts";
import { type ActivationStore, activationStore, computeBytes, samplesPerPass } from "./activations.ts";
import {
  type ExportCall,
  finishBlock,
  type OutputTargets,
  runExportCalls,
  writeRawTo,
} from "./block_outputs.ts";
import type { BlockProgress, BlockReport } from "./block_report.ts";
import type { JournalBlock, RunJournal } from "./journal.ts";
import { journalCalls, replayedCalls } from "./replay.ts";
import type { LayerConfigResult } from "./layer_config.ts";
import {
  initialStateOf,
  optRtnScales,
  outlierLossFor,
  quantParams,
  signRoundV2InitScales,
  usesOptRtn,
  usesSignRoundV2,
} from "./linear_state.ts";
import { floatInitScales } from "./float_init.ts";
import { type SignRoundSettings, tuneBlock, type TunedLinear } from "./signround.ts";
import { actMaxObserver, BlockActQuant, hasActQuant, nextInputsTransform } from "./act_quant.ts";
import { copyStore, forwardInPlace, forwardOver } from "./store_passes.ts";
import { blockNeedsActCalibration, floatExtras, nvWeightGlobalScales } from "./float_block.ts";

/** Settings of the quantization step itself (formats and I/O are the caller's). */
export interface QuantizeSettings extends SignRoundSettings {
  /** undefined = AutoRound's default (opt-RTN on, except W8). */
  disableOptRtn?: boolean;
  /** Feed each block the quantized previous blocks' outputs (auto-round enable_quanted_input). */
  enableQuantedInput: boolean;
  /** Keep calibration activations in host memory (auto-round low_gpu_mem_usage). */
  lowGpuMemUsage: boolean;
  seed: number;
}

export type { BlockProgress, BlockReport } from "./block_report.ts";

/** The inputs the pipeline needs from the caller. */
export interface PipelineInput extends OutputTargets {
  scheme: QuantScheme;
  layers: LayerConfigResult;
  settings: QuantizeSettings;
  calib?: CalibrationSet;
  log: Log;
  onBlock?: BlockProgress;
  /** The resume journal: its finished blocks are replayed, each new block is recorded in it. */
  journal?: RunJournal;
}

/** The activation streams while blocks are processed. */
interface Streams {
  rope: RopeTensors & Disposable;
  /** fp inputs of the current block; overwritten in place with its fp outputs (the targets). */
  fp: ActivationStore;
  /** Quantized-stream inputs (SignRound with quanted input); overwritten with the q-block outputs. */
  q?: ActivationStore;
  /** Tuning inputs when quantized inputs are disabled (a copy of the fp inputs). */
  fpIn?: ActivationStore;
}

/** Run the pipeline. Exporters receive every tensor; the caller finishes them. */
export async function runPipeline(p: PipelineInput): Promise<BlockReport[]> {
  const { ckpt, calib } = p;
  const spec = ckpt.spec;
  const reports: BlockReport[] = [];
  const streams = calib ? await initStreams(p, calib) : undefined;
  const rng = new PyRandom(p.settings.seed);
  // Exporter writes of block b (host: packing, file I/O) and its journal record run while block
  // b+1 computes on the device; they are chained so the exporters still see the model in order.
  let pending: Promise<void> = Promise.resolve();
  let writeError: unknown;
  const resumeFrom = p.journal?.finished ?? 0;
  if (resumeFrom > 0) {
    const which = resumeFrom === 1 ? "block 1" : `blocks 1-${resumeFrom}`;
    p.log.info(`resuming: ${which} of ${spec.nLayers} finished earlier`);
  }
  try {
    for (let b = 0; b < spec.nLayers; b++) {
      const t0 = performance.now();
      let r: BlockReport;
      let calls: ExportCall[];
      if (b < resumeFrom) {
        const rec = await p.journal!.readBlock(b);
        calls = await replayBlock(p, b, streams, rec);
        rng.setState(rec.rng);
        r = { ...rec.report, replayed: true };
      } else {
        const done = await quantizeBlock(p, b, streams, rng, () => pending);
        calls = done.calls;
        r = { ...done.report, seconds: (performance.now() - t0) / 1000 };
        if (p.journal) {
          const rec: JournalBlock = { calls: journalCalls(calls), report: r, rng: rng.getState() };
          pending = pending.then(() => p.journal!.writeBlock(b, rec));
        }
      }
      pending = pending.then(() => runExportCalls(p, calls)).catch((e) => void (writeError ??= e));
      if (writeError) throw writeError;
      reports.push(r);
      p.onBlock?.(r, b + 1, spec.nLayers);
    }
    await pending;
    if (writeError) throw writeError;
  } finally {
    if (streams) {
      for (const s of [streams.rope, streams.fp, streams.q, streams.fpIn]) s?.[Symbol.dispose]();
    }
  }
  // Tensors outside the blocks are kept as stored (lm_head and embeddings are not quantized; a
  // VLM's vision tower and projector neither, spec/MODELS.md § 9.1).
  for (const name of tensorsOutsideBlocks(spec, ckpt.reader.names())) {
    await writeRawTo(p, p.exporters, name);
  }
  return reports;
}

/** Embed the calibration tokens into the activation stores. */
async function initStreams(p: PipelineInput, calib: CalibrationSet): Promise<Streams> {
  const { be, ckpt } = p;
  const spec = ckpt.spec;
  const tuning = p.settings.iters > 0;
  const streams = 1 + (tuning ? 1 : 0);
  const bytes = streams * calib.nsamples * calib.seqlen * spec.hidden * computeBytes(be);
  const free = be.freeMemory?.();
  // Spill to host memory when asked (auto-round's low_gpu_mem_usage) or when the streams would
  // leave less than half of the device's free memory for a block's weights and the tuning buffers.
  const spill = p.settings.lowGpuMemUsage || (free !== undefined && bytes > free / 2);
  if (spill && !p.settings.lowGpuMemUsage) {
    p.log.info(
      `calibration activations (${(bytes / 2 ** 30).toFixed(1)} GiB) kept in host memory: the device has ${
        (free! / 2 ** 30).toFixed(1)
      } GiB free`,
    );
  }
  const where = spill ? "host" : "device";
  const make = () => activationStore(be, where, calib.nsamples, calib.seqlen, spec.hidden);
  const s: Streams = {
    rope: uploadRope(be, spec, calib.seqlen),
    fp: make(),
    q: tuning && p.settings.enableQuantedInput ? make() : undefined,
    fpIn: tuning && !p.settings.enableQuantedInput ? make() : undefined,
  };
  const embed = await embeddingSource(p.be, p.ckpt, calib.ids);
  try {
    const bs = samplesPerPass(be, spec, calib.seqlen, p.settings.batchSize);
    for (let i = 0; i < calib.nsamples; i += bs) {
      const n = Math.min(bs, calib.nsamples - i);
      using x = embed.lookup(calib.ids.subarray(i * calib.seqlen, (i + n) * calib.seqlen));
      for (const st of [s.fp, s.q, s.fpIn]) await st?.write(i, x);
    }
  } finally {
    embed[Symbol.dispose]();
  }
  return s;
}

/** Quantize one block. */
async function quantizeBlock(
  p: PipelineInput,
  b: number,
  st: Streams | undefined,
  rng: PyRandom,
  /** The previous block's exports: awaited before this block's codes exist (host holds one block's). */
  previousExports: () => Promise<void> = () => Promise.resolve(),
): Promise<{ report: Omit<BlockReport, "seconds">; calls: ExportCall[] }> {
  const { be, ckpt } = p;
  const spec = ckpt.spec;
  // Weights keep the checkpoint's dtype (the quantizer sees what auto-round sees); matmuls run in
  // the backend's compute dtype, as under autocast.
  using w = await loadBlockWeights(be, spec, ckpt.weights, b, checkpointDType(spec));
  const plans = blockPlans(p, b);
  const quantizedNames = [...plans.keys()].filter((l) => plans.get(l)!.quantize);

  // fp forward over the calibration set: the targets (= next fp inputs), plus importance statistics.
  const imatrix = new Map<LinearName, Tensor>();
  const states = new Map<LinearName, QuantState & Disposable>();
  // Float schemes: static activation ranges (RTN: from the fp pass; SignRound: from its inputs).
  const actMax = new Map<LinearName, number>();
  const actReads: Promise<void>[] = [];
  const calibrateActs = blockNeedsActCalibration(plans);
  const report: Omit<BlockReport, "seconds"> = { block: b, quantized: [], skipped: [] };
  let actQ: BlockActQuant | undefined;
  try {
    if (st) {
      const needImatrix = p.exporters.some((e) => e.wantsFloatLinears || e.wantsImportance) ||
        quantizedNames.some((l) =>
          usesOptRtn(schemeOf(plans, l), p.settings.iters, p.settings.disableOptRtn) ||
          usesSignRoundV2(schemeOf(plans, l), p.settings)
        );
      const imatrixObserver: LinearInputObserver | undefined = needImatrix
        ? (name, input) => {
          // q/k/v share h1 and gate/up share h2: record under each consumer.
          const consumers: LinearName[] = name === "self_attn.q_proj"
            ? ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"]
            : name === "mlp.gate_proj"
            ? ["mlp.gate_proj", "mlp.up_proj"]
            : [name];
          for (const c of consumers) {
            if (!imatrix.has(c)) imatrix.set(c, be.full([input.size / input.shape[0]], 0));
            be.accumulateColumnSquares(imatrix.get(c)!, input);
          }
        }
        : undefined;
      const actObserver = calibrateActs ? actMaxObserver(be, plans, actMax, actReads) : undefined;
      const tuning = p.settings.iters > 0;
      const observe = both(imatrixObserver, tuning ? undefined : actObserver);
      if (st.fpIn) {
        await copyStore(st.fp, st.fpIn, samplesPerPass(be, spec, st.fp.seqLen, p.settings.batchSize));
      }
      if (tuning && actObserver) await forwardOver(p, w, st.q ?? st.fpIn!, st.rope, actObserver);
      await forwardInPlace(p, w, st.fp, st.rope, observe);
      await Promise.all(actReads);
    }
    const weightGs = await nvWeightGlobalScales(be, w.linear, plans);

    // Initial quantizer state of each Linear: V = 0, α = β = 1 (and the opt-RTN scale search);
    // not needed when only self-quantizing formats (GGUF) are written from RTN.
    const needStates = p.settings.iters > 0 || p.onFakeWeight !== undefined ||
      p.exporters.some((e) => !e.wantsFloatLinears);
    for (const l of needStates ? quantizedNames : []) {
      const s = schemeOf(plans, l);
      const weight = w.linear[l];
      const optRtn = usesOptRtn(s, p.settings.iters, p.settings.disableOptRtn);
      const v2 = usesSignRoundV2(s, p.settings);
      const initScale = s.dataType !== "int" && (optRtn || v2)
        ? await floatInitScales(be, weight, imatrix.get(l), s, optRtn ? "optRtn" : "signRoundV2")
        : optRtn
        ? await optRtnScales(be, weight, imatrix.get(l), s)
        : v2
        ? await signRoundV2InitScales(be, weight, imatrix.get(l), s)
        : undefined;
      states.set(l, await initialStateOf(be, weight, s, initScale));
    }

    if (p.settings.iters > 0 && st && quantizedNames.length > 0) {
      // The allocator caches freed buffers by size. Tuning needs other sizes than the forwards
      // around it, so each phase starts with the last one's cache given back: the peak is then
      // what one phase uses, not one phase's tensors plus the other's cache.
      be.releaseCachedMemory?.();
      const linears: TunedLinear[] = quantizedNames.map((l) => {
        const s = schemeOf(plans, l), params = quantParams(s, w.linear[l].shape[1], weightGs.get(l));
        if (usesSignRoundV2(s, p.settings)) params.signRoundV2 = true;
        return { name: l, params, state: states.get(l)! };
      });
      if (hasActQuant(plans)) actQ = new BlockActQuant(be, plans, { actMax, tune: true });
      const r = await tuneBlock({
        be,
        spec,
        weights: w,
        linears,
        inputs: st.q ?? st.fpIn!,
        targets: st.fp,
        lossMask: p.calib!.lossMask,
        rope: st.rope,
        settings: p.settings,
        rng,
        act: actQ,
        outlierSuppressedLoss: quantizedNames.some((l) => outlierLossFor(schemeOf(plans, l), p.settings)),
      });
      be.releaseCachedMemory?.();
      Object.assign(report, {
        lossStart: r.lossStart,
        lossBest: r.lossBest,
        bestIter: r.bestIter,
        iterations: r.iterations,
      });
    }

    // Final integers → exporters; fake-quantized weights → the quantized stream's next inputs.
    const fake = new Map<LinearName, Tensor>();
    let calls: ExportCall[];
    try {
      const extras = await floatExtras(be, plans, weightGs, actMax, actQ);
      await previousExports();
      calls = await finishBlock(p, b, w, plans, states, imatrix, fake, report, st?.q !== undefined, extras);
      if (st?.q) {
        using inputTransform = nextInputsTransform(be, plans);
        await forwardInPlace(
          p,
          { ...w, linear: { ...w.linear, ...Object.fromEntries(fake) }, inputTransform },
          st.q,
          st.rope,
        );
      }
    } finally {
      for (const t of fake.values()) t[Symbol.dispose]();
    }
    return { report, calls };
  } finally {
    for (const t of imatrix.values()) t[Symbol.dispose]();
    for (const s of states.values()) s[Symbol.dispose]();
    actQ?.[Symbol.dispose]();
  }
}

function both(a?: LinearInputObserver, b?: LinearInputObserver): LinearInputObserver | undefined {
  if (!a || !b) return a ?? b;
  return (name, input) => (a(name, input), b(name, input));
}

/**
 * A block finished by an interrupted run, from its journal record: its exporter calls again, and the
 * activation streams advanced as the original run advanced them (the fp forward with the
 * checkpoint's weights; the quantized forward with the journaled codes, dequantized).
 */
async function replayBlock(
  p: PipelineInput,
  b: number,
  st: Streams | undefined,
  rec: JournalBlock,
): Promise<ExportCall[]> {
  using w = await loadBlockWeights(p.be, p.ckpt.spec, p.ckpt.weights, b, checkpointDType(p.ckpt.spec));
  const fake = new Map<LinearName, Tensor>();
  try {
    const calls = await replayedCalls(p, b, rec, w, st?.q ? fake : undefined);
    if (st) await forwardInPlace(p, w, st.fp, st.rope);
    if (st?.q) {
      using inputTransform = nextInputsTransform(p.be, blockPlans(p, b));
      const linear = { ...w.linear, ...Object.fromEntries(fake) };
      await forwardInPlace(p, { ...w, linear, inputTransform }, st.q, st.rope);
    }
    return calls;
  } finally {
    for (const t of fake.values()) t[Symbol.dispose]();
  }
}

/** The plans of block b's Linears, in execution order. */
function blockPlans(p: PipelineInput, b: number): Map<LinearName, LayerPlan> {
  return new Map(
    blockLinears(p.ckpt.spec, b).map((
      l,
    ) => [l.name, p.layers.layers.get(blockPrefix(b, p.ckpt.spec) + l.name)!]),
  );
}

/** Device dtype of a checkpoint's weights. */
function checkpointDType(spec: { torchDtype: string }): "f32" | "bf16" | "f16" {
  return spec.torchDtype === "bfloat16" ? "bf16" : spec.torchDtype === "float16" ? "f16" : "f32";
}

function schemeOf(plans: Map<LinearName, LayerPlan>, l: LinearName): QuantScheme {
  const plan = plans.get(l)!;
  if (!plan.quantize) throw new Error(`${l} is not quantized`);
  return plan.scheme;
}
