/**
 * Log-likelihood requests as lm-eval's Hugging Face backend (HFLM, v0.4) turns text into tokens and
 * scores them: `tok_encode`, `_encode_pair`, the empty-context rule of `loglikelihood`, the rolling
 * windows of `loglikelihood_rolling` (`get_rolling_token_windows` + `make_disjoint_window`), and
 * `_loglikelihood_tokens` (left-truncate to max_length + 1 tokens, drop the last, sum the
 * continuation's log-softmax, greedy = every continuation token is the row's argmax).
 *
 * Batches are padded on the right like HFLM's: with causal attention, padding never changes a real
 * position's logits, so batching changes speed, not results.
 */
import type { LoadedModel } from "../model/transformer.ts";
import { yieldToEventLoop } from "../std/event_loop.ts";
import { pyRstrip } from "./pystr.ts";

/** What scoring needs from a tokenizer (the HF Tokenizer, or a GGUF vocabulary later). */
export interface EvalTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: readonly number[], opts?: { skipSpecialTokens?: boolean }): string;
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
}

/** Encoding settings shared by every request of a run. */
export interface EncodeSettings {
  /**
   * HFLM's `add_bos_token`: true → `add_special_tokens=True` (the tokenizer's own BOS, if it adds
   * one); false → `add_special_tokens=False`. lm-eval ≤ 0.4.8 defaults to false; ≥ 0.4.9 passes
   * nothing, i.e. the tokenizer's default (true for Llama-style tokenizers).
   */
  addSpecialTokens: boolean;
}

/** A tokenized request: score `continuation` after `context`. */
export interface TokenRequest {
  context: number[];
  continuation: number[];
}

/** lm-eval's answer to one request. */
export interface LoglikelihoodResult {
  /** Σ log p(continuation token | everything before it), natural log. */
  logprob: number;
  /** Every continuation token was the argmax of its row. */
  isGreedy: boolean;
}

/**
 * HFLM `prefix_token_id`: the token an empty context or the first rolling window conditions on —
 * BOS if the tokenizer has one, else EOS.
 */
export function prefixTokenId(tok: EvalTokenizer): number {
  const id = tok.bosTokenId ?? tok.eosTokenId;
  if (id === undefined) throw new Error("the tokenizer has neither a BOS nor an EOS token to condition on");
  return id;
}

/** HFLM `tok_encode` (no explicit add_special_tokens): a text already starting with BOS gets none. */
export function tokEncode(tok: EvalTokenizer, text: string, s: EncodeSettings): number[] {
  let add = s.addSpecialTokens;
  const bos = tok.bosTokenId ?? tok.eosTokenId;
  if (bos !== undefined && text.startsWith(tok.decode([bos]))) add = false;
  return tok.encode(text, { addSpecialTokens: add });
}

/**
 * One (context, continuation) text pair to tokens, as `loglikelihood` + `_encode_pair` do:
 * trailing whitespace of the context moves to the continuation, the pair is encoded whole, and
 * the continuation is whatever follows the context's own token count. An empty context becomes
 * the prefix token (or the continuation's first token, when that already is the prefix token).
 *
 * @example
 * ```ts
 * encodeRequest(tok, "Question: Who?\nAnswer:", " Bob", { addSpecialTokens: false });
 * ```
 */
export function encodeRequest(
  tok: EvalTokenizer,
  context: string,
  continuation: string,
  s: EncodeSettings,
): TokenRequest {
  if (context === "") {
    const cont = tok.encode(continuation, { addSpecialTokens: false });
    const prefix = prefixTokenId(tok);
    return prefix !== cont[0]
      ? { context: [prefix], continuation: cont }
      : { context: cont.slice(0, 1), continuation: cont.slice(1) };
  }
  const stripped = pyRstrip(context);
  if (stripped.length < context.length) {
    continuation = context.slice(stripped.length) + continuation;
    context = stripped;
  }
  const whole = tokEncode(tok, context + continuation, s);
  const ctx = tokEncode(tok, context, s);
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/**
 * `get_rolling_token_windows(tokens, prefix, maxLen, context_len=1)` followed by
 * `make_disjoint_window`: the first window predicts the first min(maxLen, n) tokens from the
 * prefix token; each later one predicts up to maxLen more, conditioned on what precedes them
 * (one token for a full window; the last, shorter window keeps up to maxLen tokens of context).
 *
 * @example
 * ```ts
 * rollingWindows([1, 2, 3, 4, 5], 0, 2);
 * // [{context: [0], continuation: [1, 2]}, {context: [2], continuation: [3, 4]},
 * //  {context: [3, 4], continuation: [5]}]
 * ```
 */
export function rollingWindows(tokens: readonly number[], prefix: number, maxLen: number): TokenRequest[] {
  const out: TokenRequest[] = [];
  if (tokens.length === 0) return out;
  const disjoint = (a: number[], b: number[]) => ({
    context: a.slice(0, a.length - (b.length - 1)),
    continuation: b,
  });
  const first = Math.min(maxLen, tokens.length);
  out.push(disjoint([prefix, ...tokens.slice(0, first - 1)], tokens.slice(0, first)));
  let predicted = first;
  while (predicted < tokens.length) {
    const len = Math.min(tokens.length - predicted, maxLen);
    const end = predicted + len;
    // Python slice semantics: a negative start counts from the end; here end − maxLen − 1 ≥ 0
    // always holds because the first window predicted maxLen tokens.
    out.push(disjoint(tokens.slice(end - maxLen - 1, end - 1), tokens.slice(end - len, end)));
    predicted += len;
  }
  return out;
}

/** Options of {@linkcode scoreRequests}. */
export interface ScoreOptions {
  /** Longest input the model sees (HFLM `max_length`); longer requests are cut on the left. */
  maxLength: number;
  /** Requests per forward pass. */
  batchSize: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Score tokenized requests (HFLM `_loglikelihood_tokens`). Requests are run longest first to keep
 * padding small; results come back in the original order.
 */
export async function scoreRequests(
  model: LoadedModel,
  requests: readonly TokenRequest[],
  opts: ScoreOptions,
): Promise<LoglikelihoodResult[]> {
  const { maxLength } = opts;
  const prepared = requests.map((r, index) => {
    if (r.continuation.length === 0) throw new Error(`request ${index} has an empty continuation`);
    if (r.continuation.length > maxLength) {
      throw new Error(`request ${index}: continuation of ${r.continuation.length} tokens exceeds max_length`);
    }
    const input = [...r.context, ...r.continuation].slice(-(maxLength + 1)).slice(0, -1);
    return { index, input, targets: r.continuation };
  });
  const order = [...prepared].sort((a, b) => b.input.length - a.input.length || a.index - b.index);
  const results: LoglikelihoodResult[] = new Array(requests.length);
  const be = model.be;
  const batchSize = Math.max(1, opts.batchSize);
  opts.onProgress?.(0, order.length);
  for (let start = 0; start < order.length; start += batchSize) {
    const batch = order.slice(start, start + batchSize);
    const seqLen = batch[0].input.length;
    const ids = new Int32Array(batch.length * seqLen); // right padding with token 0, as HFLM pads
    batch.forEach((r, b) => ids.set(r.input, b * seqLen));
    using h = model.hidden(ids, { batch: batch.length, seqLen });
    const pending = batch.map((r, b) => {
      const n = r.targets.length;
      using rows = be.rows(h, b * seqLen + r.input.length - n, n);
      using logits = model.logits(rows);
      using targets = be.uploadInt(Int32Array.from(r.targets), [n]);
      const nll = be.crossEntropy(logits, targets);
      const argmax = be.argmaxRows(logits);
      return { r, nll, argmax };
    });
    for (const { r, nll, argmax } of pending) {
      try {
        const nl = await be.read(nll);
        const am = await be.readInt(argmax);
        let logprob = 0;
        for (let i = 0; i < nl.length; i++) logprob -= nl[i];
        results[r.index] = { logprob, isGreedy: r.targets.every((t, i) => am[i] === t) };
      } finally {
        nll[Symbol.dispose]();
        argmax[Symbol.dispose]();
      }
    }
    opts.onProgress?.(Math.min(start + batchSize, order.length), order.length);
    await yieldToEventLoop();
  }
  return results;
}
