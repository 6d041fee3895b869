/**
 * Run evaluation tasks on one model: read each task's documents, turn them into lm-eval requests,
 * score them in batches, and aggregate the metrics with lm-eval's standard errors. Used by
 * `autoround eval --tasks` and by `quantize --eval` right after export.
 */
import type { Backend } from "../backend/backend.ts";
import { InputError, UsageError } from "../errors.ts";
import { type Log, silentLog } from "../log.ts";
import type { ModelSpec } from "../model/config.ts";
import { LoadedModel, type WeightSource } from "../model/transformer.ts";
import {
  encodeRequest,
  type EncodeSettings,
  type EvalTokenizer,
  type LoglikelihoodResult,
  prefixTokenId,
  rollingWindows,
  scoreRequests,
  tokEncode,
  type TokenRequest,
} from "./loglikelihood.ts";
import {
  bitsPerByte,
  bootstrapPerplexityStderr,
  mean,
  meanStderr,
  perplexity,
  weightedPerplexity,
} from "./metrics.ts";
import { windowedPerplexity } from "./perplexity.ts";
import {
  applyLimit,
  type DocItems,
  findTaskFile,
  parseTaskDocs,
  parseTaskList,
  processDoc,
  type TaskDoc,
  taskRequests,
  type TaskSpec,
} from "./tasks.ts";
import { wikitextRows } from "./wikitext.ts";

/** Options of {@linkcode runEvalTasks}; everything but `tasks` has lm-eval's default. */
export interface EvalTasksOptions {
  /** "arc_easy,piqa", "all", or parsed specs. */
  tasks: string | TaskSpec[];
  /** Folder with eval/*.jsonl and wikitext-2-raw/ (default: $AUTOROUND_DATA). */
  dataDir?: string;
  /** First N documents of each task, or a fraction of them when < 1. */
  limit?: number;
  /** Requests per forward pass (default 8). */
  batchSize?: number;
  /** HFLM `add_bos_token` (default false: encode without special tokens). */
  addBosToken?: boolean;
  /** Longest model input (default: the model's max_position_embeddings, as HFLM). */
  maxLength?: number;
  /** Window of wikitext2's token_perplexity (default min(2048, context)). */
  seqlen?: number;
  /** Bootstrap resamples for lambada's perplexity stderr (default 100000; 0 = N/A). */
  bootstrapIters?: number;
  /** Keep every document's requests and answers in the result. */
  logSamples?: boolean;
  log?: Log;
  onProgress?: (label: string, done: number, total: number) => void;
}

/** One aggregated metric. */
export interface MetricResult {
  name: string;
  value: number;
  /** null where lm-eval prints "N/A". */
  stderr: number | null;
  /** How the stderr was obtained. */
  stderrMethod: "mean" | "bootstrap" | "none";
  higherIsBetter: boolean;
}

/** One document's requests and answers (with `logSamples`). */
export interface SampleLog {
  docId: number;
  requests: { context: string; continuation: string; tokens: TokenRequest }[];
  answers: LoglikelihoodResult[];
  items: DocItems;
}

/** The result of one task. */
export interface TaskResult {
  task: string;
  version: number;
  nShot: 0;
  /** Documents in the file and documents evaluated (after --limit). */
  nSamples: { original: number; effective: number };
  metrics: MetricResult[];
  seconds: number;
  /** Details of wikitext2's token_perplexity. */
  tokenPerplexity?: { seqlen: number; windows: number; targets: number; meanNll: number };
  samples?: SampleLog[];
}

/** Everything a run produced. */
export interface EvalReport {
  config: {
    limit: number | null;
    batchSize: number;
    addBosToken: boolean;
    maxLength: number;
    bootstrapIters: number;
    dataDir: string;
    device: string;
  };
  results: TaskResult[];
}

/** The model to evaluate: a Checkpoint, or any other source of a spec and weights (GGUF later). */
export interface EvalWeights {
  spec: ModelSpec;
  weights: WeightSource;
}

/**
 * The data folder: `dataDir`, else $AUTOROUND_DATA.
 *
 * @throws {UsageError} neither is set
 */
export function resolveDataDir(dataDir?: string): { dir: string; origin: string } {
  if (dataDir) return { dir: dataDir, origin: "from --data_dir" };
  const env = Deno.env.get("AUTOROUND_DATA");
  if (env) return { dir: env, origin: "from $AUTOROUND_DATA" };
  throw new UsageError(
    `no evaluation data folder: pass --data_dir DIR or set AUTOROUND_DATA ` +
      `(DIR/eval/<task>.jsonl and DIR/wikitext-2-raw/wiki.test.raw, as in shared/data)`,
  );
}

/**
 * Evaluate `model` on tasks and return lm-eval's numbers.
 *
 * @example
 * ```ts
 * using ckpt = await openCheckpoint("tests/fixtures/stories260K");
 * const tok = await Tokenizer.fromDir(ckpt.dir);
 * const report = await runEvalTasks(be, ckpt, tok, { tasks: "arc_easy,piqa", dataDir: "../shared/data", limit: 50 });
 * console.log(formatResultsTable(report));
 * ```
 */
export async function runEvalTasks(
  be: Backend,
  model: EvalWeights,
  tok: EvalTokenizer,
  opts: EvalTasksOptions,
): Promise<EvalReport> {
  const log = opts.log ?? silentLog;
  const tasks = typeof opts.tasks === "string" ? parseTaskList(opts.tasks) : opts.tasks;
  const { dir: dataDir, origin } = resolveDataDir(opts.dataDir);
  if (opts.limit !== undefined && !(opts.limit > 0)) throw new UsageError(`--limit must be > 0`);
  const maxLength = opts.maxLength ?? model.spec.maxPositions;
  if (maxLength < 2) throw new UsageError(`--max_length must be >= 2`);
  const seqlen = opts.seqlen ?? Math.min(2048, model.spec.maxPositions);
  const batchSize = Math.max(1, opts.batchSize ?? 8);
  const bootstrapIters = opts.bootstrapIters ?? 100000;
  const enc: EncodeSettings = { addSpecialTokens: opts.addBosToken ?? false };

  // Every file is found and parsed before the model is loaded, so a typo fails fast.
  const inputs: { task: TaskSpec; docs: TaskDoc[]; original: number }[] = [];
  for (const task of tasks) {
    const file = await findTaskFile(task, dataDir, origin);
    let text: string;
    try {
      text = await Deno.readTextFile(file);
    } catch (e) {
      throw new InputError(`cannot read: ${(e as Error).message}`, file);
    }
    const all = parseTaskDocs(task, text, file);
    inputs.push({ task, docs: applyLimit(all, opts.limit), original: all.length });
  }
  const needTokenPpl = tasks.some((t) => t.metrics.some((m) => m.name === "token_perplexity"));
  const positions = Math.max(maxLength, needTokenPpl ? seqlen : 0);
  if (positions > model.spec.maxPositions) {
    log.warn(`evaluating ${positions} positions, beyond the model's context of ${model.spec.maxPositions}`);
  }
  using lm = await LoadedModel.load(be, model.spec, model.weights, { positions });

  const results: TaskResult[] = [];
  for (const { task, docs, original } of inputs) {
    const t0 = performance.now();
    const progress = (done: number, total: number) => opts.onProgress?.(task.name, done, total);
    const scored = await scoreTask(lm, tok, task, docs, enc, { maxLength, batchSize, onProgress: progress });
    const metrics = aggregate(task, scored.items, bootstrapIters);
    const result: TaskResult = {
      task: task.name,
      version: task.version,
      nShot: 0,
      nSamples: { original, effective: docs.length },
      metrics,
      seconds: 0,
    };
    if (needsTokenPerplexity(task)) {
      const raw = await Deno.readTextFile(await findTaskFile(task, dataDir, origin));
      const tp = await tokenPerplexity(
        lm,
        tok,
        raw,
        seqlen,
        opts.limit,
        batchSize,
        (done, total) => opts.onProgress?.(`${task.name} token_perplexity`, done, total),
      );
      metrics.push({
        name: "token_perplexity",
        value: tp.ppl,
        stderr: null,
        stderrMethod: "none",
        higherIsBetter: false,
      });
      result.tokenPerplexity = { seqlen, windows: tp.windows, targets: tp.targets, meanNll: tp.meanNll };
    }
    if (opts.logSamples) result.samples = scored.samples;
    result.seconds = (performance.now() - t0) / 1000;
    log.debug(`${task.name}: ${docs.length} documents in ${result.seconds.toFixed(1)}s`);
    results.push(result);
  }
  return {
    config: {
      limit: opts.limit ?? null,
      batchSize,
      addBosToken: enc.addSpecialTokens,
      maxLength,
      bootstrapIters,
      dataDir,
      device: be.device,
    },
    results,
  };
}

const needsTokenPerplexity = (t: TaskSpec) => t.metrics.some((m) => m.name === "token_perplexity");

/** Tokenize a task's requests, score them all, and process each document. */
async function scoreTask(
  lm: LoadedModel,
  tok: EvalTokenizer,
  task: TaskSpec,
  docs: TaskDoc[],
  enc: EncodeSettings,
  score: { maxLength: number; batchSize: number; onProgress: (done: number, total: number) => void },
): Promise<{ items: DocItems[]; samples: SampleLog[] }> {
  // Flatten every document's requests (rolling texts into their windows), remembering the owner.
  const flat: TokenRequest[] = [];
  const perDoc: {
    text: { context: string; continuation: string };
    tokens: TokenRequest;
    windows: [number, number];
  }[][] = [];
  for (const doc of docs) {
    const reqs = taskRequests(task, doc).map((r) => {
      if (r.type === "pair") {
        const tokens = encodeRequest(tok, r.context, r.continuation, enc);
        flat.push(tokens);
        return {
          text: { context: r.context, continuation: r.continuation },
          tokens,
          windows: [flat.length - 1, flat.length] as [number, number],
        };
      }
      const ids = tokEncode(tok, r.text, enc);
      const windows = rollingWindows(ids, prefixTokenId(tok), score.maxLength);
      const start = flat.length;
      flat.push(...windows);
      return {
        text: { context: "", continuation: r.text },
        tokens: { context: [prefixTokenId(tok)], continuation: ids },
        windows: [start, flat.length] as [number, number],
      };
    });
    perDoc.push(reqs);
  }
  const answers = await scoreRequests(lm, flat, score);
  const items: DocItems[] = [];
  const samples: SampleLog[] = [];
  docs.forEach((doc, i) => {
    // A rolling request's answer is the sum over its windows (greedy is not used for those).
    const docAnswers = perDoc[i].map(({ windows: [a, b] }) => {
      let logprob = 0, isGreedy = true;
      for (let w = a; w < b; w++) {
        logprob += answers[w].logprob;
        isGreedy &&= answers[w].isGreedy;
      }
      return { logprob, isGreedy };
    });
    const it = processDoc(task, doc, docAnswers);
    items.push(it);
    samples.push({
      docId: i,
      requests: perDoc[i].map((r) => ({ ...r.text, tokens: r.tokens })),
      answers: docAnswers,
      items: it,
    });
  });
  return { items, samples };
}

/** lm-eval's aggregation of each metric over the documents, with its stderr rule. */
function aggregate(task: TaskSpec, items: DocItems[], bootstrapIters: number): MetricResult[] {
  const out: MetricResult[] = [];
  for (const m of task.metrics) {
    if (m.name === "token_perplexity") continue;
    const vals = items.map((it) => it[m.name]);
    let value: number, stderr: number | null = null, method: MetricResult["stderrMethod"] = "none";
    if (m.name === "perplexity") {
      const lls = vals as number[];
      value = perplexity(lls);
      stderr = bootstrapPerplexityStderr(lls, bootstrapIters);
      method = stderr === null ? "none" : "bootstrap";
    } else if (m.name === "word_perplexity" || m.name === "byte_perplexity" || m.name === "bits_per_byte") {
      const pairs = vals as [number, number][];
      const lls = pairs.map((p) => p[0]), weights = pairs.map((p) => p[1]);
      value = m.name === "bits_per_byte" ? bitsPerByte(lls, weights) : weightedPerplexity(lls, weights);
    } else {
      const xs = vals as number[];
      value = mean(xs);
      stderr = bootstrapIters > 0 ? meanStderr(xs) : null;
      method = stderr === null ? "none" : "mean";
    }
    out.push({ name: m.name, value, stderr, stderrMethod: method, higherIsBetter: m.higherIsBetter });
  }
  return out;
}

/**
 * GPTQ / AutoRound wikitext2 perplexity: the Hugging Face rows joined with "\n\n", tokenized once
 * with the tokenizer's defaults (BOS for Llama), non-overlapping windows of `seqlen`, tail dropped.
 * `limit` caps the number of windows.
 */
async function tokenPerplexity(
  lm: LoadedModel,
  tok: EvalTokenizer,
  raw: string,
  seqlen: number,
  limit: number | undefined,
  batchSize: number,
  onProgress: (done: number, total: number) => void,
) {
  const ids = tok.encode(wikitextRows(raw).join("\n\n"), { addSpecialTokens: true });
  let windows = Math.floor(ids.length / seqlen);
  if (limit !== undefined) {
    windows = Math.min(windows, limit < 1 ? Math.ceil(windows * limit) : Math.floor(limit));
  }
  if (windows < 1) {
    throw new UsageError(`wikitext2 has ${ids.length} tokens, fewer than one window of ${seqlen}`);
  }
  const stream = Int32Array.from(ids.slice(0, windows * seqlen));
  return await windowedPerplexity(lm, stream, {
    seqlen,
    batch: Math.max(1, Math.min(batchSize, Math.floor(8192 / seqlen))),
    onProgress,
  });
}
