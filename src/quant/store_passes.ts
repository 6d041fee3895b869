/**
 * Passes of a block's forward over the calibration activation stores: in place (the stream
 * advances to the next block's inputs), or read-only for observers (activation range calibration).
 */
import type { Backend } from "../backend/backend.ts";
import {
  blockForward,
  type BlockWeights,
  type LinearInputObserver,
  type RopeTensors,
} from "../model/block.ts";
import type { ModelSpec } from "../model/config.ts";
import { yieldToEventLoop } from "../std/event_loop.ts";
import { type ActivationStore, samplesPerPass } from "./activations.ts";

/** What a pass needs of the pipeline's input. */
export interface StorePassContext {
  be: Backend;
  ckpt: { spec: ModelSpec };
  settings: { batchSize: number };
}

/** Forward every calibration sample through a block, in place: rows of `store` ← block(rows). */
export async function forwardInPlace(
  p: StorePassContext,
  w: BlockWeights,
  store: ActivationStore,
  rope: RopeTensors,
  observe?: LinearInputObserver,
): Promise<void> {
  const bs = samplesPerPass(p.be, p.ckpt.spec, store.seqLen, p.settings.batchSize);
  for (let s = 0; s < store.samples; s += bs) {
    const nb = Math.min(bs, store.samples - s);
    using xb = await store.read(s, nb);
    const { y } = blockForward(p.be, p.ckpt.spec, w, xb, { batch: nb, seqLen: store.seqLen }, rope, {
      observe,
    });
    await store.write(s, y);
    y[Symbol.dispose]();
    await yieldToEventLoop();
  }
}

/** A forward over a store that keeps it unchanged (for observers: calibration of activation ranges). */
export async function forwardOver(
  p: StorePassContext,
  w: BlockWeights,
  store: ActivationStore,
  rope: RopeTensors,
  observe: LinearInputObserver,
): Promise<void> {
  const bs = samplesPerPass(p.be, p.ckpt.spec, store.seqLen, p.settings.batchSize);
  for (let s = 0; s < store.samples; s += bs) {
    const nb = Math.min(bs, store.samples - s);
    using xb = await store.read(s, nb);
    const { y } = blockForward(p.be, p.ckpt.spec, w, xb, { batch: nb, seqLen: store.seqLen }, rope, {
      observe,
    });
    y[Symbol.dispose]();
    await yieldToEventLoop();
  }
}

/** Copy every sample of one store into another. */
export async function copyStore(from: ActivationStore, to: ActivationStore, bs: number): Promise<void> {
  for (let s = 0; s < from.samples; s += bs) {
    using x = await from.read(s, Math.min(bs, from.samples - s));
    await to.write(s, x);
  }
}
