/**
 * `autoround eval`: lm-eval-style tasks (`--tasks`: wikitext, lambada_openai, ARC, PIQA, HellaSwag,
 * WinoGrande) with lm-eval's table and JSON, or the perplexity of a text file (`--text`: one
 * document per line, each `[BOS] + tokens`, concatenated, non-overlapping windows — the stories260K
 * reference protocol), for an fp checkpoint or any quantized folder we write.
 */
import type { Backend } from "../backend/backend.ts";
import { createBackend, parseDevice } from "../backend/select.ts";
import { InputError, UsageError } from "../errors.ts";
import { openEvalModel } from "../eval/model_source.ts";
import { documentStream, windowedPerplexity } from "../eval/perplexity.ts";
import { formatResultsTable, reportToJson } from "../eval/report.ts";
import { resolveDataDir, runEvalTasks } from "../eval/run.ts";
import { parseTaskList, TASKS, type TaskSpec } from "../eval/tasks.ts";
import type { ModelSpec } from "../model/config.ts";
import type { Log } from "../log.ts";
import { LoadedModel, type WeightSource } from "../model/transformer.ts";
import { type FlagSpec, type ParsedFlags, parseFlags } from "../std/cli.ts";
import { flagBackendOptions, flagInt, flagNum, flagStr } from "./flags.ts";
import { formatDuration, Progress } from "../log.ts";

export const EVAL_FLAGS: FlagSpec = {
  model: { type: "string" },
  tasks: { type: "string" },
  data_dir: { type: "string" },
  limit: { type: "string" },
  add_bos_token: { type: "boolean" },
  max_length: { type: "string" },
  bootstrap_iters: { type: "string" },
  log_samples: { type: "boolean" },
  text: { type: "string" },
  seqlen: { type: "string" },
  batch_size: { type: "string" },
  device: { type: "string" },
  threads: { type: "string" },
  deterministic: { type: "boolean" },
  json: { type: "string" },
  quiet: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
};

export const EVAL_HELP = `autoround eval — evaluate a model (fp checkpoint or a folder autoround wrote)

Usage: autoround eval --model DIR --tasks LIST [options]
       autoround eval --model DIR --text FILE [--seqlen N]

Tasks, scored the way lm-eval-harness 0.4 scores them (zero-shot, log-likelihoods, no chat template)
  --tasks LIST       comma-separated: ${Object.keys(TASKS).join(", ")}, or all
                     (wikitext = lm-eval's rolling word/byte perplexity; wikitext2 adds the
                     GPTQ/AutoRound token perplexity over windows of --seqlen)
  --data_dir DIR     folder with eval/<task>.jsonl and wikitext-2-raw/wiki.test.raw
                     (default: $AUTOROUND_DATA)
  --limit N          first N documents of each task (a fraction when < 1); wikitext2's token
                     perplexity: first N windows
  --batch_size N     requests per forward pass (default 8)
  --add_bos_token    encode with the tokenizer's special tokens (BOS), as lm-eval's
                     add_bos_token=True; default: none, as lm-eval <= 0.4.8 (0.4.9+ defaults to the
                     tokenizer's behaviour, i.e. BOS for Llama)
  --max_length N     longest input (default: the model's max_position_embeddings, as lm-eval)
  --bootstrap_iters N  resamples for lambada perplexity's stderr (default 100000; 0: no stderrs)
  --log_samples      keep each document's requests and answers in the --json output

Text perplexity (one document per line, each [BOS] + tokens, concatenated, non-overlapping windows)
  --text FILE        text to score instead of --tasks
  --seqlen N         window length (default 2048, capped by the model's context)

Common
  --model DIR        model folder (fp safetensors or a quantized output), or a repo id in the HF cache
  --device NAME      auto, cpu, cuda, webgpu
  --threads N        CPU threads (default: every core; 1 = single-threaded)
  --deterministic    CUDA: no split-K products, algorithms by shape alone (README § Determinism)
  --json [FILE]      write the results as JSON to FILE (lm-eval's layout for --tasks); alone: print
                     JSON on stdout instead of the table

Examples
  autoround eval --model tests/fixtures/stories260K --tasks arc_easy,piqa --data_dir ../shared/data --limit 100
  autoround eval --model out --tasks all --json results.json
  autoround eval --model tests/fixtures/stories260K --text tests/fixtures/stories260K/eval.txt --seqlen 256
`;

/** What text perplexity needs of a model: its architecture, weights and a tokenizer. */
type TextModel = { spec: ModelSpec; weights: WeightSource };
type Encoder = { encode(text: string): number[] };

/** Perplexity of `textFile` under a model (used by eval and by quantize --eval_text). */
export async function evalTextPerplexity(
  be: Backend,
  ckpt: TextModel,
  tok: Encoder,
  textFile: string,
  seqlen: number,
  log: Log,
  batch?: number,
): Promise<number> {
  return (await textPerplexity(be, ckpt, tok, textFile, seqlen, log, batch)).ppl;
}

async function textPerplexity(
  be: Backend,
  ckpt: TextModel,
  tok: Encoder,
  textFile: string,
  seqlen: number,
  log: Log,
  batch?: number,
) {
  let text: string;
  try {
    text = await Deno.readTextFile(textFile);
  } catch (e) {
    throw new InputError(`cannot read text file: ${(e as Error).message}`, textFile);
  }
  if (seqlen > ckpt.spec.maxPositions) {
    throw new UsageError(
      `--seqlen ${seqlen} exceeds the model's context of ${ckpt.spec.maxPositions} tokens`,
    );
  }
  const ids = documentStream(text, (line) => tok.encode(line));
  if (ids.length < seqlen) {
    throw new UsageError(`${textFile} has ${ids.length} tokens, fewer than one window of ${seqlen}`);
  }
  using model = await LoadedModel.load(be, ckpt.spec, ckpt.weights, { positions: seqlen });
  const windows = Math.floor(ids.length / seqlen);
  const progress = new Progress("eval windows", windows, (s) => log.debug(s));
  return await windowedPerplexity(model, ids, { seqlen, batch, onProgress: (d) => progress.step(d) });
}

/**
 * `--json` alone (the old boolean form) means "JSON on stdout"; `--json FILE` writes FILE.
 * parseArgs cannot mix the two, so a bare `--json` becomes `--json=-` first.
 */
export function normalizeJsonFlag(argv: string[]): string[] {
  return argv.map((
    a,
    i,
  ) => (a === "--json" && (i + 1 >= argv.length || argv[i + 1].startsWith("-")) ? "--json=-" : a));
}

/**
 * A one-line progress bar with ETA on stderr: redrawn in place on a terminal (at most 10 times a
 * second), one line per 10% otherwise (logs, CI).
 */
export function progressBar(label: string, quiet = false): (done: number, total: number) => void {
  if (quiet) return () => {};
  const tty = Deno.stderr.isTerminal();
  const enc = new TextEncoder();
  const t0 = performance.now();
  let lastDraw = 0, lastDecile = -1;
  return (done, total) => {
    const now = performance.now();
    const finished = done >= total;
    const decile = Math.floor((10 * done) / Math.max(1, total));
    if (tty ? !finished && now - lastDraw < 100 : decile === lastDecile && !finished) return;
    lastDraw = now;
    lastDecile = decile;
    const elapsed = (now - t0) / 1000;
    const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
    const width = 24, fill = Math.round((width * done) / Math.max(1, total));
    const bar = "#".repeat(fill) + ".".repeat(width - fill);
    const text = `${label} [${bar}] ${done}/${total} | ${formatDuration(elapsed)} elapsed | ETA ${
      finished ? "0.0s" : formatDuration(eta)
    }`;
    Deno.stderr.writeSync(enc.encode(tty ? `\r\x1b[2K${text}${finished ? "\n" : ""}` : text + "\n"));
  };
}

/** Run `eval` with argv (after the subcommand). */
export async function evalCommand(argv: string[], log: Log): Promise<void> {
  const { values: f, positionals } = parseFlags(normalizeJsonFlag(argv), EVAL_FLAGS);
  if (f.help) {
    console.log(EVAL_HELP);
    return;
  }
  const model = flagStr(f, "model") ?? positionals[0];
  if (!model) throw new UsageError(`--model is required`);
  const tasks = flagStr(f, "tasks");
  const textFile = flagStr(f, "text");
  if (tasks && textFile) throw new UsageError(`give --tasks or --text, not both`);
  if (!tasks && !textFile) {
    throw new UsageError(`--tasks LIST or --text FILE is required (see autoround eval --help)`);
  }
  const json = flagStr(f, "json");
  if (tasks) {
    await evalTasksCommand(model, parseTaskList(tasks), f, json, log);
    return;
  }
  const requested = flagInt(f, "seqlen") ?? 2048;
  if (requested < 2) throw new UsageError(`--seqlen must be >= 2`);
  using ckpt = await openEvalModel(model);
  const seqlen = Math.min(requested, ckpt.spec.maxPositions);
  if (seqlen < 2) throw new UsageError(`the model's context of ${seqlen} token is too short for perplexity`);
  if (seqlen < requested) log.warn(`--seqlen ${requested} capped to the model's context of ${seqlen}`);
  using be = await createBackend(parseDevice(flagStr(f, "device") ?? "auto"), log, flagBackendOptions(f));
  const t0 = performance.now();
  const r = await textPerplexity(be, ckpt, ckpt.tokenizer, textFile!, seqlen, log, flagInt(f, "batch_size"));
  const seconds = (performance.now() - t0) / 1000;
  const out = {
    model: ckpt.label,
    text: textFile,
    seqlen,
    ppl: r.ppl,
    mean_nll: r.meanNll,
    targets: r.targets,
    windows: r.windows,
    quant_method: ckpt.quantMethod ?? null,
    device: be.device,
    seconds,
  };
  if (json && json !== "-") await writeJson(json, out);
  if (json === "-") {
    console.log(JSON.stringify(out));
  } else {
    console.log(
      `ppl ${r.ppl.toFixed(6)} (mean NLL ${
        r.meanNll.toFixed(6)
      } over ${r.targets} targets, ${r.windows} windows of ${seqlen})`,
    );
  }
}

async function evalTasksCommand(
  modelPath: string,
  tasks: TaskSpec[],
  f: ParsedFlags["values"],
  json: string | undefined,
  log: Log,
): Promise<void> {
  const limit = flagNum(f, "limit");
  const bootstrapIters = flagInt(f, "bootstrap_iters");
  const maxLength = flagInt(f, "max_length");
  const dataDir = resolveDataDir(flagStr(f, "data_dir")).dir;
  using model = await openEvalModel(modelPath);
  using be = await createBackend(parseDevice(flagStr(f, "device") ?? "auto"), log, flagBackendOptions(f));
  const bars = new Map<string, (d: number, t: number) => void>();
  const t0 = performance.now();
  const report = await runEvalTasks(be, model, model.tokenizer, {
    tasks,
    dataDir,
    limit,
    batchSize: flagInt(f, "batch_size"),
    addBosToken: Boolean(f.add_bos_token),
    maxLength,
    seqlen: flagInt(f, "seqlen"),
    bootstrapIters,
    logSamples: Boolean(f.log_samples),
    log,
    onProgress: (task, done, total) => {
      if (!bars.has(task)) bars.set(task, progressBar(task, Boolean(f.quiet)));
      bars.get(task)!(done, total);
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const meta = { model: model.label, quant_method: model.quantMethod ?? null, seconds };
  if (json && json !== "-") await writeJson(json, reportToJson(report, meta));
  if (json === "-") {
    console.log(JSON.stringify(reportToJson(report, meta)));
    return;
  }
  const limitNote = limit === undefined ? "" : `, limit: ${limit}`;
  console.log(
    `autoround (${model.label}${model.quantMethod ? `, ${model.quantMethod}` : ""}), ` +
      `num_fewshot: 0, batch_size: ${report.config.batchSize}${limitNote}, add_bos_token: ${report.config.addBosToken}, ` +
      `max_length: ${report.config.maxLength}, device: ${be.device}, ${seconds.toFixed(1)}s`,
  );
  console.log(formatResultsTable(report));
}

async function writeJson(file: string, value: unknown): Promise<void> {
  try {
    await Deno.writeTextFile(file, JSON.stringify(value, null, 2) + "\n");
  } catch (e) {
    throw new InputError(`cannot write: ${(e as Error).message}`, file);
  }
}
