/**
 * One block's outputs to the exporters, in two phases (pipeline.ts runs the second while the next
 * block computes): on the device, the final codes, scales and zeros of each quantized Linear and
 * its fake-quantized weight; on the host, every tensor of the block handed to every exporter in
 * model order — packed Linears to the packing formats, float Linears (or the pipeline's own codes,
 * when the format stores that grid) to the self-quantizing ones (GGUF), everything else as stored.
 */
import type { Backend, QuantState, Tensor } from "../backend/backend.ts";
import type { Exporter, RawSource } from "../export/exporter.ts";
import type { LayerPlan } from "../formats/run.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { BlockWeights } from "../model/block.ts";
import { blockWeightShapes } from "../model/block_layout.ts";
import { blockPrefix, type LinearName } from "../model/config.ts";
import {
  type FloatQuantizedLinear,
  type FloatScheme,
  isIntWeightOnly,
  type QuantizedLinear,
  type QuantScheme,
} from "../qmath/quantized.ts";
import { intParams, quantParams } from "./linear_state.ts";
import { fakeQuantOf, floatOps, isFloatParams } from "./weight_quant.ts";

/** Where a block's outputs go. */
export interface OutputTargets {
  be: Backend;
  ckpt: Checkpoint;
  exporters: Exporter[];
  /** Receives each quantized Linear's fake-quantized weight Ŵ (as the backend computed it). */
  onFakeWeight?: (name: string, values: Float32Array) => void;
}

/** What a float-scheme Linear carries besides its weights (SCHEMES.md § 5.1, § 8.3). */
export interface FloatLinearExtras {
  /** NVFP4 weight global scale (fused minimum). */
  globalScale?: number;
  /** FP8_STATIC input_scale. */
  inputScale?: number;
  /** NVFP4 input_global_scale (fused minimum). */
  inputGlobalScale?: number;
}

/**
 * One call to exporters (indices into OutputTargets.exporters), as data: the pipeline runs the
 * calls while the next block computes, and the resume journal records them (journal.ts).
 */
export type ExportCall =
  | { op: "raw"; to: number[]; name: string }
  | { op: "quantized"; to: number[]; layer: QuantizedLinear }
  | {
    op: "floatQuantized";
    to: number[];
    layer: FloatQuantizedLinear;
    /** Its fake-quantized weight on the host (for the journal: the quantized stream's exact input). */
    fake: Float32Array;
  }
  | {
    /** Bytes an exporter quantized on the device in the device phase (Exporter.packLinearOnDevice). */
    op: "packed";
    to: number[];
    name: string;
    n: number;
    k: number;
    bytes: Uint8Array;
    /** Kept for the journal, which rebuilds this call from the checkpoint's weight. */
    importance?: Float32Array;
  }
  | {
    op: "float";
    to: number[];
    name: string;
    n: number;
    k: number;
    weight: Float32Array;
    importance?: Float32Array;
  };

/**
 * One block's outputs, in two phases. The device phase (this function) reads back the final codes,
 * scales and zeros and keeps the fake-quantized weights in `fake`; it returns the host phase —
 * the exporter calls, in model order — which the caller runs while the next block tunes on the
 * device. A quantized Linear no exporter packs still gets a call (to none) when the quantized
 * stream needs it, so that the journal has every code the next blocks' inputs depend on.
 */
export async function finishBlock(
  p: OutputTargets,
  b: number,
  w: BlockWeights,
  plans: Map<LinearName, LayerPlan>,
  states: Map<LinearName, QuantState>,
  imatrix: Map<LinearName, Tensor>,
  fake: Map<LinearName, Tensor>,
  report: { quantized: string[]; skipped: string[] },
  /** The quantized stream needs the fake-quantized weights (SignRound's next inputs). */
  needsFake: boolean,
  /** Per float-scheme Linear: global and static activation scales. */
  extras: ReadonlyMap<LinearName, FloatLinearExtras> = new Map(),
): Promise<ExportCall[]> {
  const { be } = p;
  const prefix = blockPrefix(b, p.ckpt.spec);
  const all = p.exporters.map((_, i) => i);
  const packed = all.filter((i) => !p.exporters[i].wantsFloatLinears);
  const floatWanting = all.filter((i) => p.exporters[i].wantsFloatLinears);
  // The packing quantization is skipped when nothing consumes it (a GGUF-only RTN run).
  const needPacked = packed.length > 0 || p.onFakeWeight !== undefined || needsFake;
  const calls: ExportCall[] = [];
  for (const [lname, plan] of plans) {
    const full = prefix + lname;
    const weight = w.linear[lname];
    let ql: QuantizedLinear | undefined;
    if (plan.quantize && !isIntWeightOnly(plan.scheme)) {
      // Float and activation-quantized schemes: only formats that store them are in the run.
      const fl = await floatLinear(p, full, weight, plan.scheme, states.get(lname)!, extras.get(lname) ?? {});
      fake.set(lname, fl.fake);
      calls.push({ op: "floatQuantized", to: packed, layer: fl.layer, fake: fl.host });
      report.quantized.push(full);
      continue;
    }
    if (plan.quantize && needPacked) {
      const state = states.get(lname)!;
      const params = intParams(plan.scheme, weight.shape[1]);
      const q = await be.quantizeWeights(weight, state, params);
      const fq = be.fakeQuant(weight, state, params, be.computeDType);
      fake.set(lname, fq);
      if (p.onFakeWeight) p.onFakeWeight(`${full}.weight`, await be.read(fq));
      ql = {
        name: full,
        n: weight.shape[0],
        k: weight.shape[1],
        bits: plan.scheme.bits,
        groupSize: plan.scheme.groupSize,
        sym: plan.scheme.sym,
        q,
        bias: await biasOf(p, full),
      };
    }
    const takesQuantized = floatWanting.filter((i) => ql && p.exporters[i].acceptsQuantized?.(ql));
    const wantFloat = floatWanting.filter((i) => !takesQuantized.includes(i));
    if (wantFloat.length > 0) {
      const imp = imatrix.get(lname);
      calls.push(...await floatCalls(p, wantFloat, full, weight, imp && await be.read(imp)));
    }
    if (!plan.quantize) {
      report.skipped.push(full);
      if (takesQuantized.length > 0) throw new Error(`${full}: not quantized, yet accepted as quantized`);
      calls.push({ op: "raw", to: packed, name: `${full}.weight` });
      continue;
    }
    // Float-wanting exporters that accept the pipeline's grid are served first, as they always were.
    if (ql) calls.push({ op: "quantized", to: [...takesQuantized, ...packed], layer: ql });
    report.quantized.push(full);
  }
  // The rest of the block (norms; biases of Linears kept in 16-bit) is copied as stored.
  for (const [rel] of blockWeightShapes(p.ckpt.spec, b)) {
    const lin = rel.replace(/\.(weight|bias)$/, "") as LinearName;
    const plan = plans.get(lin);
    if (plan && rel.endsWith(".weight")) continue; // Linear weights handled above
    const packedGetsIt = !(plan?.quantize && rel.endsWith(".bias")); // quantized layers carry their bias
    calls.push({ op: "raw", to: packedGetsIt ? all : floatWanting, name: prefix + rel });
  }
  return calls;
}

/** A float-scheme Linear's fake-quantized weight and its exported values. */
async function floatLinear(
  p: OutputTargets,
  full: string,
  weight: Tensor,
  scheme: QuantScheme,
  state: QuantState,
  extras: FloatLinearExtras,
): Promise<{ fake: Tensor; host: Float32Array; layer: FloatQuantizedLinear }> {
  const { be } = p;
  const [n, k] = weight.shape;
  const params = quantParams(scheme, k, extras.globalScale);
  const fq = fakeQuantOf(be, weight, state, params, be.computeDType);
  const host = await be.read(fq);
  if (p.onFakeWeight) p.onFakeWeight(`${full}.weight`, host);
  let elements: Float32Array, scales: Float32Array;
  if (isFloatParams(params)) {
    ({ elements, scales } = await floatOps(be, params).floatQuantizeWeights(weight, state, params));
  } else {
    // INT8_W8A8: int_sym weights (SCHEMES.md § 7) as signed codes.
    const q = await be.quantizeWeights(weight, state, params);
    const G = q.scales.length / n, g = Math.ceil(k / G);
    elements = new Float32Array(n * k);
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < k; c++) {
        elements[r * k + c] = q.codes[r * k + c] - q.zeros[r * G + Math.floor(c / g)];
      }
    }
    scales = q.scales;
  }
  return {
    fake: fq,
    host,
    // validateScheme admits float data types and INT8_W8A8 only with sym = true.
    layer: {
      name: full,
      n,
      k,
      scheme: scheme as FloatScheme,
      elements,
      scales,
      ...extras,
      bias: await biasOf(p, full),
    },
  };
}

/**
 * A block Linear for exporters that quantize it themselves: those that can do it from the device
 * tensor do it now (the call carries their packed bytes: at a 70B shape the f32 host copy of one
 * block's Linears would be 3.4 GB); the rest get one call with the weight read to the host.
 */
export async function floatCalls(
  p: OutputTargets,
  to: number[],
  name: string,
  weight: Tensor,
  importance: Float32Array | undefined,
): Promise<ExportCall[]> {
  const [n, k] = weight.shape;
  const calls: ExportCall[] = [];
  const host: number[] = [];
  for (const i of to) {
    const bytes = await p.exporters[i].packLinearOnDevice?.(name, weight, importance);
    if (bytes) calls.push({ op: "packed", to: [i], name, n, k, bytes, importance });
    else host.push(i);
  }
  if (host.length > 0) {
    calls.push({ op: "float", to: host, name, n, k, weight: await p.be.read(weight), importance });
  }
  return calls;
}

/** The bias of Linear `full` (without `.bias`) as stored, or undefined. */
export async function biasOf(
  p: Pick<OutputTargets, "ckpt">,
  full: string,
): Promise<Float32Array | undefined> {
  const name = `${full}.bias`;
  return p.ckpt.weights.has(name) ? await p.ckpt.weights.readF32(name) : undefined;
}

/** Run exporter calls in order (each exporter sees its calls in model order). */
export async function runExportCalls(p: OutputTargets, calls: ExportCall[]): Promise<void> {
  for (const c of calls) {
    if (c.op === "raw") {
      await writeRawTo(p, c.to.map((i) => p.exporters[i]), c.name);
    } else if (c.op === "quantized") {
      for (const i of c.to) await p.exporters[i].writeQuantized(c.layer);
    } else if (c.op === "floatQuantized") {
      for (const i of c.to) await p.exporters[i].writeFloatQuantized!(c.layer);
    } else if (c.op === "packed") {
      for (const i of c.to) await p.exporters[i].writePackedLinear!(c.name, c.n, c.k, c.bytes);
    } else {
      for (const i of c.to) await p.exporters[i].writeFloatLinear!(c.name, c.n, c.k, c.weight, c.importance);
    }
  }
}

/** Copy a tensor as stored into the given exporters. */
export async function writeRawTo(
  p: Pick<OutputTargets, "ckpt">,
  to: Exporter[],
  name: string,
): Promise<void> {
  if (to.length === 0) return;
  const info = p.ckpt.reader.info(name);
  const reader = p.ckpt.reader;
  // Read in pieces by each exporter that streams (a 151936 × 4096 bf16 lm_head is 1.2 GB).
  const src: RawSource = {
    byteLength: info.end - info.start,
    read: (offset, length) => reader.readRange(name, offset, length),
  };
  for (const e of to) await e.writeRaw(name, info.dtype, info.shape, src);
}
