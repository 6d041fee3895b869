/**
 * Between a block's exporter calls and the resume journal (journal.ts): what to keep of a finished
 * block's calls, and how to rebuild them — and the block's fake-quantized weights — from the journal.
 * Tensors the checkpoint holds (float weights, biases, norms) are not journaled but re-read: the
 * replayed calls carry the same values as the original ones.
 */
import type { Tensor } from "../backend/backend.ts";
import type { BlockWeights } from "../model/block.ts";
import { blockPrefix, type LinearName } from "../model/config.ts";
import { dequantizeLinear, type QuantizedLinear } from "../qmath/quantized.ts";
import { biasOf, type ExportCall, floatCalls, type OutputTargets } from "./block_outputs.ts";
import type { JournalBlock, JournalCall } from "./journal.ts";

/** The journal's copy of a block's calls: what tuning produced, the rest by name. */
export function journalCalls(calls: ExportCall[]): JournalCall[] {
  return calls.map((c): JournalCall => {
    if (c.op === "raw") return c;
    if (c.op === "floatQuantized") {
      const { bias: _, ...layer } = c.layer; // the bias is re-read from the checkpoint
      return { op: c.op, to: c.to, layer, fake: c.fake };
    }
    if (c.op === "float" || c.op === "packed") {
      return { op: "float", to: c.to, name: c.name, n: c.n, k: c.k, importance: c.importance };
    }
    const { bias: _, ...layer } = c.layer; // the bias is re-read from the checkpoint
    return { op: "quantized", to: c.to, ...layer };
  });
}

/**
 * Block `b`'s calls rebuilt from its journal record, with `w` the block's weights as loaded from the
 * checkpoint; with `fake`, also each quantized Linear's fake-quantized weight in the compute dtype
 * (scale · (code − zero): the same values finishBlock's fakeQuant gave the quantized stream).
 */
export async function replayedCalls(
  p: OutputTargets,
  b: number,
  rec: JournalBlock,
  w: BlockWeights,
  fake?: Map<LinearName, Tensor>,
): Promise<ExportCall[]> {
  const prefix = blockPrefix(b, p.ckpt.spec);
  const linearOf = (name: string) => name.slice(prefix.length) as LinearName;
  const calls: ExportCall[] = [];
  for (const c of rec.calls) {
    if (c.op === "raw") {
      calls.push(c);
    } else if (c.op === "float") {
      calls.push(...await floatCalls(p, c.to, c.name, w.linear[linearOf(c.name)], c.importance));
    } else if (c.op === "floatQuantized") {
      const layer = { ...c.layer, bias: await biasOf(p, c.layer.name) };
      fake?.set(linearOf(c.layer.name), p.be.upload(c.fake, [c.layer.n, c.layer.k], p.be.computeDType));
      calls.push({ op: "floatQuantized", to: c.to, layer, fake: c.fake });
    } else {
      const { op: _, to, ...fields } = c;
      const layer: QuantizedLinear = { ...fields, bias: await biasOf(p, c.name) };
      fake?.set(linearOf(c.name), p.be.upload(dequantizeLinear(layer), [c.n, c.k], p.be.computeDType));
      calls.push({ op: "quantized", to, layer });
    }
  }
  return calls;
}
