/**
 * One block's outputs to the exporters, in two phases (pipeline.ts runs the second while the next
 * block computes): on the device, the final codes, scales and zeros of each quantized Linear and
 * its fake-quantized weight; on the host, every tensor of the block handed to every exporter in
 * model order — packed Linears to the packing formats, float Linears (or the pipeline's own codes,
 * when the format stores that grid) to the self-quantizing ones (GGUF), everything else as stored.
 */
import type { Backend, QuantState, Tensor } from "../backend/backend.ts";
import type { Exporter } from "../export/exporter.ts";
import type { LayerPlan } from "../formats/run.ts";
import type { Checkpoint } from "../io/checkpoint.ts";
import type { BlockWeights } from "../model/block.ts";
import { blockPrefix, blockWeightShapes, type LinearName } from "../model/config.ts";
import type { QuantizedLinear } from "../qmath/quantized.ts";
import { quantParams } from "./linear_state.ts";

/** Where a block's outputs go. */
export interface OutputTargets {
  be: Backend;
  ckpt: Checkpoint;
  exporters: Exporter[];
  /** Receives each quantized Linear's fake-quantized weight Ŵ (as the backend computed it). */
  onFakeWeight?: (name: string, values: Float32Array) => void;
}

/**
 * One block's outputs, in two phases. The device phase (this function) reads back the final codes,
 * scales and zeros and keeps the fake-quantized weights in `fake`; it returns the host phase —
 * packing and writing to every exporter, in model order — which the caller runs while the next
 * block tunes on the device.
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
): Promise<() => Promise<void>> {
  const { be } = p;
  const prefix = blockPrefix(b);
  const packed = p.exporters.filter((e) => !e.wantsFloatLinears);
  const floatWanting = p.exporters.filter((e) => e.wantsFloatLinears);
  // The packing quantization is skipped when nothing consumes it (a GGUF-only RTN run).
  const needPacked = packed.length > 0 || p.onFakeWeight !== undefined || needsFake;
  const writes: (() => Promise<void>)[] = [];
  for (const [lname, plan] of plans) {
    const full = prefix + lname;
    const weight = w.linear[lname];
    let ql: QuantizedLinear | undefined;
    if (plan.quantize && needPacked) {
      const state = states.get(lname)!;
      const params = quantParams(plan.scheme, weight.shape[1]);
      const q = await be.quantizeWeights(weight, state, params);
      const fq = be.fakeQuant(weight, state, params, be.computeDType);
      fake.set(lname, fq);
      if (p.onFakeWeight) p.onFakeWeight(`${full}.weight`, await be.read(fq));
      const biasName = `${full}.bias`;
      ql = {
        name: full,
        n: weight.shape[0],
        k: weight.shape[1],
        bits: plan.scheme.bits,
        groupSize: plan.scheme.groupSize,
        sym: plan.scheme.sym,
        q,
        bias: p.ckpt.weights.has(biasName) ? await p.ckpt.weights.readF32(biasName) : undefined,
      };
    }
    for (const e of floatWanting) {
      if (ql && e.acceptsQuantized?.(ql)) {
        const l = ql;
        writes.push(() => e.writeQuantized(l)); // quantized once, shared
      } else {
        const imp = imatrix.get(lname);
        const [n, k, wf, iv] = [
          weight.shape[0],
          weight.shape[1],
          await be.read(weight),
          imp && await be.read(imp),
        ];
        writes.push(() => e.writeFloatLinear!(full, n, k, wf, iv));
      }
    }
    if (!plan.quantize) {
      report.skipped.push(full);
      writes.push(() => writeRawTo(p, packed, `${full}.weight`));
      continue;
    }
    const l = ql!;
    for (const e of packed) writes.push(() => e.writeQuantized(l));
    report.quantized.push(full);
  }
  // The rest of the block (norms; biases of Linears kept in 16-bit) is copied as stored.
  for (const [rel] of blockWeightShapes(p.ckpt.spec)) {
    const lin = rel.replace(/\.(weight|bias)$/, "") as LinearName;
    const plan = plans.get(lin);
    if (plan && rel.endsWith(".weight")) continue; // Linear weights handled above
    const packedGetsIt = !(plan?.quantize && rel.endsWith(".bias")); // quantized layers carry their bias
    writes.push(() => writeRawTo(p, packedGetsIt ? p.exporters : floatWanting, prefix + rel));
  }
  return async () => {
    for (const write of writes) await write();
  };
}

/** Copy a tensor as stored into the given exporters. */
export async function writeRawTo(
  p: Pick<OutputTargets, "ckpt">,
  to: Exporter[],
  name: string,
): Promise<void> {
  if (to.length === 0) return;
  const info = p.ckpt.reader.info(name);
  const bytes = await p.ckpt.reader.readBytes(name);
  for (const e of to) await e.writeRaw(name, info.dtype, info.shape, bytes);
}
