/**
 * The quantize pipeline, one pass block by block (DESIGN.md § Data flow):
 *
 *   calibration tokens → embeddings X₀ (backend memory)
 *   for each block b: read its weights → fp forward for targets / imatrix → quantize each Linear
 *   (RTN, opt-RTN or SignRound) → stream the packed tensors to every exporter → X_{b+1}; free b
 *   then embeddings, final norm, lm_head and configs; the output folder appears only on success.
 *
 * Host memory holds one block's weights plus what the exporters are writing; calibration
 * activations live in the backend.
 */
import type { Backend, QuantState, Tensor } from "../backend/backend.ts";
import type { Exporter, QuantizedLinear, RunInfo } from "../export/exporter.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { CalibrationSet } from "../io/calib.ts";
import type { Log } from "../log.ts";
import { blockForward } from "../model/block.ts";
import { BLOCK_LINEARS, blockPrefix, blockWeightShapes, type LinearName } from "../model/config.ts";
import { loadBlockWeights, uploadRope } from "../model/transformer.ts";
import {
  groupMinMax,
  groupsPerRow,
  importanceForWeight,
  resolveGroupSize,
  searchScalesSym,
} from "./int_quant.ts";
import type { LayerConfigResult, LayerPlan } from "./layer_config.ts";
import type { QuantScheme } from "./scheme.ts";

/** Settings of the quantization step itself (formats and I/O are the caller's). */
export interface QuantizeSettings {
  iters: number;
  /** undefined = AutoRound's default (opt-RTN on, except W8). */
  disableOptRtn?: boolean;
  batchSize: number;
}

/** Per-block record for logs and `--log_json`. */
export interface BlockReport {
  block: number;
  seconds: number;
  quantized: string[];
  skipped: string[];
  /** SignRound only. */
  lossStart?: number;
  lossBest?: number;
  bestIter?: number;
}

/** Progress callback: block i (1-based) of n finished. */
export type BlockProgress = (report: BlockReport, index: number, total: number) => void;

/** Whether AutoRound would use optimized RTN for this layer (rtn/config.py, get_quant_func). */
export function usesOptRtn(s: QuantScheme, iters: number, disableOptRtn: boolean | undefined): boolean {
  if (iters > 0) return false;
  // W8A16 turns it off by default; an explicit --enable_opt_rtn keeps it on.
  const disabled = disableOptRtn ?? s.bits >= 8;
  // Only symmetric int has an opt-RTN quantizer ("opt_rtn_int_sym"); asym falls back to int_asym.
  return !disabled && s.sym;
}

/** f32 row mask `[rows]` from the calibration loss mask. */
export function rowMask(calib: CalibrationSet): Float32Array {
  return Float32Array.from(calib.lossMask);
}

/** Build a Linear's initial tuning state: V = 0, α = β = 1, group min/max of W. */
export function initialState(
  be: Backend,
  w: Float32Array,
  n: number,
  k: number,
  s: QuantScheme,
  initScale?: Float64Array,
): QuantState & Disposable {
  const layout = { n, k, g: resolveGroupSize(s.groupSize, k) };
  const G = groupsPerRow(layout);
  const { wMin, wMax } = groupMinMax(w, layout);
  const t = {
    v: be.full([n, k], 0),
    minScale: be.full([n * G], 1),
    maxScale: be.full([n * G], 1),
    wMin: be.upload(wMin, [n * G]),
    wMax: be.upload(wMax, [n * G]),
    initScale: initScale ? be.upload(initScale, [n * G]) : undefined,
  };
  return {
    ...t,
    [Symbol.dispose]() {
      for (const x of Object.values(t)) x?.[Symbol.dispose]();
    },
  };
}

/** The inputs the pipeline needs from the caller. */
export interface PipelineInput {
  be: Backend;
  ckpt: Checkpoint;
  scheme: QuantScheme;
  layers: LayerConfigResult;
  settings: QuantizeSettings;
  calib?: CalibrationSet;
  exporters: Exporter[];
  log: Log;
  onBlock?: BlockProgress;
  /** Receives each quantized Linear's fake-quantized weight Ŵ (as the backend computed it). */
  onFakeWeight?: (name: string, values: Float32Array) => void;
}

/** Run the pipeline. Exporters receive every tensor; the caller finishes them. */
export async function runPipeline(p: PipelineInput): Promise<BlockReport[]> {
  const { be, ckpt, calib } = p;
  const spec = ckpt.spec;
  const reports: BlockReport[] = [];
  const rope = calib ? uploadRope(be, spec, calib.seqlen) : undefined;
  let x: Tensor | undefined;
  try {
    if (calib) {
      using embed = be.upload(await ckpt.weights.readF32("model.embed_tokens.weight"), [
        spec.vocab,
        spec.hidden,
      ]);
      using ids = be.uploadInt(calib.ids, [calib.ids.length]);
      x = be.embedding(embed, ids);
    }
    for (let b = 0; b < spec.nLayers; b++) {
      const t0 = performance.now();
      const report = await quantizeBlock(p, b, x, rope);
      if (report.next) {
        x?.[Symbol.dispose]();
        x = report.next;
      }
      const r: BlockReport = { ...report.report, seconds: (performance.now() - t0) / 1000 };
      reports.push(r);
      p.onBlock?.(r, b + 1, spec.nLayers);
    }
  } finally {
    x?.[Symbol.dispose]();
    rope?.[Symbol.dispose]();
  }
  // Tensors outside the blocks are kept as stored (lm_head and embeddings are not quantized).
  for (const name of ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]) {
    if (!ckpt.reader.has(name)) continue;
    await writeRawAll(p, name);
  }
  return reports;
}

async function writeRawAll(p: PipelineInput, name: string): Promise<void> {
  await writeRawTo(p, p.exporters, name);
}

/** Copy a tensor as stored into the given exporters. */
async function writeRawTo(p: PipelineInput, to: Exporter[], name: string): Promise<void> {
  if (to.length === 0) return;
  const info = p.ckpt.reader.info(name);
  const bytes = await p.ckpt.reader.readBytes(name);
  for (const e of to) await e.writeRaw(name, info.dtype, info.shape, bytes);
}

/** Quantize one block; returns its report and the next block's inputs (when calibrating). */
async function quantizeBlock(
  p: PipelineInput,
  b: number,
  x: Tensor | undefined,
  rope: (Disposable & { cos: Tensor; sin: Tensor }) | undefined,
): Promise<{ report: Omit<BlockReport, "seconds">; next?: Tensor }> {
  const { be, ckpt, calib } = p;
  const spec = ckpt.spec;
  const prefix = blockPrefix(b);
  using w = await loadBlockWeights(be, spec, ckpt.weights, b);
  const plans = new Map<LinearName, LayerPlan>();
  for (const l of BLOCK_LINEARS) plans.set(l, p.layers.layers.get(prefix + l)!);

  // fp forward over the calibration set: next block's inputs, plus importance statistics.
  let next: Tensor | undefined;
  const imatrix = new Map<LinearName, Tensor>();
  if (calib && x && rope) {
    const needImatrix = [...plans.values()].some((pl) =>
      pl.quantize && usesOptRtn(pl.scheme, p.settings.iters, p.settings.disableOptRtn)
    );
    next = be.full(x.shape, 0);
    const rowsPer = calib.seqlen;
    for (let s = 0; s < calib.nsamples; s += p.settings.batchSize) {
      const nb = Math.min(p.settings.batchSize, calib.nsamples - s);
      using xb = be.rows(x, s * rowsPer, nb * rowsPer);
      const observe = needImatrix
        ? (name: LinearName, input: Tensor) => {
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
      const { y } = blockForward(be, spec, w, xb, { batch: nb, seqLen: rowsPer }, rope, { observe });
      using dst = be.rows(next, s * rowsPer, nb * rowsPer);
      be.copy(dst, y);
      y[Symbol.dispose]();
    }
  }

  const quantized: string[] = [], skipped: string[] = [];
  const packed = p.exporters.filter((e) => !e.wantsFloatLinears);
  const floatWanting = p.exporters.filter((e) => e.wantsFloatLinears);
  try {
    for (const [lname, plan] of plans) {
      const full = prefix + lname;
      const weight = w.linear[lname];
      if (floatWanting.length) {
        const wf = await be.read(weight);
        const imp = imatrix.get(lname);
        const impValues = imp ? await be.read(imp) : undefined;
        for (const e of floatWanting) {
          await e.writeFloatLinear!(full, weight.shape[0], weight.shape[1], wf, impValues);
        }
      }
      if (!plan.quantize) {
        skipped.push(full);
        await writeRawTo(p, packed, `${full}.weight`);
        continue;
      }
      const q = await rtnQuantizeLinear(p, full, weight, plan.scheme, imatrix.get(lname));
      for (const e of packed) await e.writeQuantized(q);
      quantized.push(full);
    }
  } finally {
    for (const t of imatrix.values()) t[Symbol.dispose]();
  }
  // The rest of the block (norms; biases of Linears kept in 16-bit) is copied as stored.
  for (const [rel] of blockWeightShapes(spec)) {
    const lin = rel.replace(/\.(weight|bias)$/, "") as LinearName;
    const plan = plans.get(lin);
    if (plan && rel.endsWith(".weight")) continue; // Linear weights handled above
    const packedGetsIt = !(plan?.quantize && rel.endsWith(".bias")); // quantized layers carry their bias
    await writeRawTo(p, packedGetsIt ? p.exporters : floatWanting, prefix + rel);
  }
  return { report: { block: b, quantized, skipped }, next };
}

/** RTN (or opt-RTN) of one Linear → packed codes for the exporters. */
async function rtnQuantizeLinear(
  p: PipelineInput,
  name: string,
  weight: Tensor,
  s: QuantScheme,
  imatrix: Tensor | undefined,
): Promise<QuantizedLinear> {
  const { be } = p;
  const [n, k] = weight.shape;
  const w = await be.read(weight);
  let initScale: Float64Array | undefined;
  if (usesOptRtn(s, p.settings.iters, p.settings.disableOptRtn)) {
    const layout = { n, k, g: resolveGroupSize(s.groupSize, k) };
    const imp = imatrix ? importanceForWeight(await be.read(imatrix), w, layout, s.bits) : undefined;
    initScale = searchScalesSym(w, layout, s.bits, imp, 1e-5);
  }
  using state = initialState(be, w, n, k, s, initScale);
  const params = { bits: s.bits, groupSize: resolveGroupSize(s.groupSize, k), sym: s.sym, scaleDType: "f16" as const };
  const q = await be.quantizeWeights(weight, state, params);
  if (p.onFakeWeight) {
    using fq = be.fakeQuant(weight, state, params);
    p.onFakeWeight(`${name}.weight`, await be.read(fq));
  }
  const biasName = `${name}.bias`;
  const bias = p.ckpt.weights.has(biasName) ? await p.ckpt.weights.readF32(biasName) : undefined;
  return { name, n, k, bits: s.bits, groupSize: s.groupSize, sym: s.sym, q, bias };
}

export type { RunInfo };
