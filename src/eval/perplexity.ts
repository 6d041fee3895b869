/**
 * Token perplexity over non-overlapping windows (the protocol of the stories260K reference and of
 * GPTQ/AutoRound's wikitext2 numbers): the token stream is cut into windows of `seqlen` tokens
 * (an incomplete tail is dropped), each window runs alone from position 0, and every token but the
 * first of each window is a target. ppl = exp(Σ NLL / #targets).
 */
import type { LoadedModel } from "../model/transformer.ts";
import { yieldToEventLoop } from "../std/event_loop.ts";

/** Result of a perplexity run. */
export interface PerplexityResult {
  ppl: number;
  meanNll: number;
  targets: number;
  windows: number;
  /** Σ NLL of each window, in order. */
  windowNllSums: number[];
}

/**
 * Perplexity of a token stream under the model, `batch` windows per forward pass.
 *
 * @example
 * ```ts
 * const r = await windowedPerplexity(model, ids, { seqlen: 256 });
 * console.log(r.ppl);
 * ```
 */
export async function windowedPerplexity(
  model: LoadedModel,
  ids: Int32Array,
  opts: { seqlen: number; batch?: number; onProgress?: (done: number, total: number) => void },
): Promise<PerplexityResult> {
  const { seqlen } = opts;
  const windows = Math.floor(ids.length / seqlen);
  const batch = Math.max(1, opts.batch ?? Math.max(1, Math.floor(4096 / seqlen)));
  const sums: number[] = [];
  for (let w = 0; w < windows; w += batch) {
    const nb = Math.min(batch, windows - w);
    const chunk = ids.subarray(w * seqlen, (w + nb) * seqlen);
    const nll = await model.nextTokenNll(chunk, { batch: nb, seqLen: seqlen });
    for (let b = 0; b < nb; b++) {
      let s = 0;
      for (let t = 0; t + 1 < seqlen; t++) s += nll[b * seqlen + t];
      sums.push(s);
    }
    opts.onProgress?.(w + nb, windows);
    await yieldToEventLoop();
  }
  const targets = windows * (seqlen - 1);
  const total = sums.reduce((a, b) => a + b, 0);
  const meanNll = targets > 0 ? total / targets : NaN;
  return { ppl: Math.exp(meanNll), meanNll, targets, windows, windowNllSums: sums };
}

/**
 * The stories260K evaluation stream: each non-empty line of the text is one document,
 * `[BOS] + encode(line)` (the tokenizer adds BOS), documents concatenated in order.
 */
export function documentStream(text: string, encode: (line: string) => number[]): Int32Array {
  const out: number[] = [];
  for (const line of text.split("\n")) if (line.length > 0) { for (const id of encode(line)) out.push(id); }
  return Int32Array.from(out);
}
