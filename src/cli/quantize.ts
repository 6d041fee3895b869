/**
 * `autoround quantize`: flags with auto-round's names and defaults, then the pipeline.
 */
import { createBackend, parseDevice } from "../backend/select.ts";
import { UsageError } from "../errors.ts";
import { DEFAULT_DATASET } from "../io/calib.ts";
import { openCheckpoint } from "../io/checkpoint.ts";
import { parseSize } from "../io/safetensors/writer.ts";
import { Tokenizer } from "../io/tokenizer.ts";
import type { Log } from "../log.ts";
import { parseLayerConfigArg } from "../quant/layer_config.ts";
import { quantize } from "../quant/quantize.ts";
import { getRecipe } from "../quant/recipes.ts";
import { resolveScheme, schemeNames } from "../quant/scheme.ts";
import { type FlagSpec, type ParsedFlags, parseFlags } from "../std/cli.ts";
import { formatDirName, formatNames, parseFormats } from "../export/registry.ts";
import { evalTextPerplexity } from "./eval.ts";
import {
  AUTO_SCHEME_FLAGS,
  AUTO_SCHEME_HELP,
  autoSchemeFromFlags,
  gatherNargs,
} from "./auto_scheme_flags.ts";
import { flagBackendOptions, flagInt, flagNum, flagStr } from "./flags.ts";
import { loadJobConfig, selectJobs } from "./job_config.ts";
import { RunLog } from "./run_log.ts";
import { formatResultsTable } from "../eval/report.ts";
import { resolveDataDir, runEvalTasks } from "../eval/run.ts";
import { findTaskFile, parseTaskList } from "../eval/tasks.ts";

/** Flags of `quantize` (auto-round names and aliases). */
export const QUANTIZE_FLAGS: FlagSpec = {
  model: { type: "string" },
  model_name: { type: "string" },
  model_name_or_path: { type: "string" },
  scheme: { type: "string" },
  bits: { type: "string" },
  group_size: { type: "string" },
  asym: { type: "boolean" },
  sym: { type: "boolean" },
  data_type: { type: "string" },
  dtype: { type: "string" },
  act_bits: { type: "string" },
  act_group_size: { type: "string" },
  act_data_type: { type: "string" },
  act_dtype: { type: "string" },
  disable_act_dynamic: { type: "boolean" },
  recipe: { type: "string" },
  iters: { type: "string" },
  iter: { type: "string" },
  lr: { type: "string" },
  minmax_lr: { type: "string" },
  nsamples: { type: "string" },
  nsample: { type: "string" },
  seqlen: { type: "string" },
  seq_len: { type: "string" },
  batch_size: { type: "string" },
  bs: { type: "string" },
  train_bs: { type: "string" },
  gradient_accumulate_steps: { type: "string" },
  dataset: { type: "string" },
  format: { type: "string" },
  formats: { type: "string" },
  output_dir: { type: "string" },
  layer_config: { type: "string" },
  ignore_layers: { type: "string" },
  fp_layers: { type: "string" },
  device: { type: "string" },
  device_map: { type: "string" },
  threads: { type: "string" },
  deterministic: { type: "boolean" },
  seed: { type: "string" },
  disable_opt_rtn: { type: "boolean" },
  enable_minmax_tuning: { type: "boolean" },
  disable_minmax_tuning: { type: "boolean" },
  "no-enable_minmax_tuning": { type: "boolean" },
  enable_quanted_input: { type: "boolean" },
  disable_quanted_input: { type: "boolean" },
  "no-enable_quanted_input": { type: "boolean" },
  not_use_best_mse: { type: "boolean" },
  enable_alg_ext: { type: "boolean" },
  dynamic_max_gap: { type: "string" },
  low_gpu_mem_usage: { type: "boolean" },
  log_json: { type: "string" },
  eval: { type: "string" },
  tasks: { type: "string" },
  data_dir: { type: "string" },
  limit: { type: "string" },
  eval_bs: { type: "string" },
  enable_opt_rtn: { type: "boolean" },
  max_shard_size: { type: "string" },
  eval_text: { type: "string" },
  eval_seqlen: { type: "string" },
  resume: { type: "boolean" },
  skip_existing: { type: "boolean" },
  config: { type: "string" },
  job: { type: "string" },
  quiet: { type: "boolean" },
  debug: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  ...AUTO_SCHEME_FLAGS,
};

export const QUANTIZE_HELP = `autoround quantize — quantize a Hugging Face checkpoint with SignRound or RTN

Usage: autoround quantize --model DIR|ORG/NAME [options]

Model and output
  --model DIR            model folder, or a repo id found in the local HF cache (never downloads)
  --output_dir DIR       where to write (default ./tmp_autoround); written atomically on success
  --format LIST          comma-separated: ${formatNames()}
                         (default auto_round; several write into OUT/<format>)
  --max_shard_size S     shard size of the written safetensors (default 5GB)
  --resume               continue a run that was killed (its OUT.partial folder and journal), from
                         its last finished block, with the same flags; the output is the same bytes
  --skip_existing        do nothing when OUT is already there (each format's folder, for several)

Batch (README § Batch runs and exit codes)
  --config FILE          every flag in a .json/.yaml file: top-level keys are defaults, an optional
                         jobs: [...] list gives several jobs; command-line flags override the file;
                         implies --skip_existing and --resume for each job
  --job N                run only job N (0-based) of the file, e.g. --job $SLURM_ARRAY_TASK_ID

Scheme
  --scheme NAME          ${schemeNames()} (default W4A16 = 4 bits, group 128, sym)
  --bits N               2-6 or 8 (int); 4, 6, 8 (mx_fp); 8 (fp), overriding the scheme
  --data_type T          int, mx_fp, mx_int, nv_fp, fp (with bits: mx_fp8); default: the scheme's
  --group_size N         -1 (per channel), 32, 64, 128, ...
  --asym | --sym         asymmetric / symmetric weights
  --act_bits N           activation bits (16: weights only); --act_group_size N, --act_data_type T
                         (mx_fp, mx_fp_rceil, mx_int, nv_fp, fp, int), --disable_act_dynamic
  --layer_config JSON    per-layer overrides: '{"mlp.down_proj": {"bits": 8}}' or a JSON file
  --ignore_layers LIST   comma-separated layer names kept in 16-bit (alias --fp_layers)

${AUTO_SCHEME_HELP}
Tuning (recipe values unless given)
  --recipe NAME          default (200 iters), best (1000), light (50, lr 5e-3), rtn, opt_rtn;
                         also as commands: autoround best|light|rtn ... (auto-round-best, ...)
  --iters N              0 = RTN (optimized RTN for symmetric schemes below 8 bits)
  --lr X, --minmax_lr X  learning rates (default 1/iters)
  --nsamples N           calibration samples (default 128)
  --seqlen N             tokens per sample (default 2048)
  --batch_size N         samples per step (default 8)
  --gradient_accumulate_steps N
  --dataset SPEC         .jsonl/.json/.txt/.parquet/.safetensors file or folder, with :num=N,
                         :concat=true options (default ${DEFAULT_DATASET} from the local HF cache)
  --seed N               (default 42)
  --disable_opt_rtn | --enable_opt_rtn
  --disable_minmax_tuning, --disable_quanted_input, --not_use_best_mse, --dynamic_max_gap N
  --enable_alg_ext       SignRoundV2 (searched initial scales tuned in [0, 2], outlier-suppressed loss
                         below 4 bits): symmetric int schemes, CPU backend
  --low_gpu_mem_usage    keep calibration activations in host memory
  --log_json FILE        JSON lines: each phase's start, per-block records (loss at start, best loss
                         and its iteration, seconds), each with phase, elapsed_s and eta_s; a summary

Runtime
  --device NAME          auto (default), cpu, cuda, webgpu
  --threads N            CPU threads (default: every core; 1 = single-threaded)
  --deterministic        CUDA: products without split-K, their algorithm chosen by shape and dtype
                         alone (the same command always gives the same bytes anyway; README
                         § Determinism says what each device guarantees)
  --eval_text FILE       print the perplexity of FILE before and after (one document per line)
  --eval_seqlen N        window length for --eval_text (default: --seqlen)
  --eval TASKS           evaluate the output right after quantizing (alias --tasks; see autoround eval)
  --data_dir DIR         task data folder for --eval (default $AUTOROUND_DATA)
  --limit N, --eval_bs N documents per task and evaluation batch size
  --quiet, --debug

Examples
  autoround quantize --model tests/fixtures/stories260K --scheme W4A16 --group_size 32 --iters 0 \\
      --dataset tests/fixtures/stories260K/eval.txt --seqlen 64 --nsamples 32 --output_dir out
  autoround quantize --model Qwen/Qwen3-8B --scheme W4A16 --dataset c4.jsonl --device cuda
`;

/** How one quantize run treats existing output and where its --log_json records go. */
interface RunMode {
  /** Do nothing when the output is already there. */
  skipExisting: boolean;
  /** Continue an unfinished `<out>.partial` when there is one (config jobs). */
  resumeIfPartial?: boolean;
  /** The config job's index (recorded in --log_json records, which it appends). */
  job?: number;
}

/** Run `quantize` with argv (after the subcommand); `recipe` is set by the recipe commands. */
export async function quantizeCommand(argv: string[], log: Log, recipeName?: string): Promise<void> {
  const { values: f, positionals } = parseFlags(gatherNargs(argv), QUANTIZE_FLAGS);
  if (f.help) {
    console.log(QUANTIZE_HELP);
    return;
  }
  const configFile = flagStr(f, "config");
  if (configFile === undefined) {
    if (f.job !== undefined) throw new UsageError(`--job needs --config FILE`);
    return await quantizeRun(f, positionals, log, recipeName, { skipExisting: f.skip_existing === true });
  }
  if (positionals.length) {
    throw new UsageError(`with --config, give the model in the file or as --model (not "${positionals[0]}")`);
  }
  const { config: _config, job, ...cli } = f;
  const config = await loadJobConfig(configFile, QUANTIZE_FLAGS, cli);
  const jobs = selectJobs(config, typeof job === "string" ? job : undefined);
  for (const j of jobs) {
    const jobLog = j.values.quiet === true ? { ...log, info: () => {} } : log;
    jobLog.info(`job ${j.index} of ${configFile} (jobs 0-${config.jobs.length - 1})`);
    try {
      await quantizeRun(j.values, [], jobLog, recipeName, {
        skipExisting: !j.off.has("skip_existing"),
        resumeIfPartial: !j.off.has("resume"),
        job: j.index,
      });
    } catch (e) {
      // A value the file gave may be what is wrong: say which job of which file.
      if (e instanceof UsageError) {
        throw new UsageError(`${configFile}, job ${j.index}: ${e.message}`, e.file);
      }
      throw e;
    }
  }
}

/**
 * Whether `dir` holds a finished run's output for `formats`: files in it (one format), or files in
 * each format's folder (several). Output folders appear only complete (io/output_folder.ts), so
 * this tells a finished run from none; the files' contents are not checked.
 */
async function finishedOutput(dir: string, formats: string[], bits: number): Promise<boolean> {
  const hasFiles = async (p: string) => {
    try {
      for await (const e of Deno.readDir(p)) if (e.isFile) return true;
    } catch { /* not there, or not a folder */ }
    return false;
  };
  const specs = parseFormats(formats.join(","), bits);
  if (specs.length === 1) return await hasFiles(dir);
  for (const spec of specs) if (!(await hasFiles(`${dir}/${formatDirName(spec.name)}`))) return false;
  return true;
}

/** One quantize run from flag values (the command line's, or a config job's). */
async function quantizeRun(
  f: ParsedFlags["values"],
  positionals: string[],
  log: Log,
  recipeName: string | undefined,
  mode: RunMode,
): Promise<void> {
  const model = flagStr(f, "model", "model_name", "model_name_or_path") ?? positionals[0];
  if (!model) throw new UsageError(`--model is required (a model folder or a repo id in the local HF cache)`);
  if (f.asym && f.sym) throw new UsageError(`--asym and --sym contradict each other`);
  if (f.disable_opt_rtn && f.enable_opt_rtn) {
    throw new UsageError(`--disable_opt_rtn and --enable_opt_rtn contradict`);
  }

  if (recipeName && f.recipe) throw new UsageError(`--recipe given to the ${recipeName} command`);
  const recipe = getRecipe(recipeName ?? flagStr(f, "recipe") ?? "default");
  const lr = flagNum(f, "lr") ?? recipe.lr ?? undefined;
  const minmaxLr = flagNum(f, "minmax_lr") ?? recipe.minmax_lr ?? undefined;
  const dynamicMaxGap = flagInt(f, "dynamic_max_gap");
  const logJson = flagStr(f, "log_json");
  if (f.enable_minmax_tuning && (f.disable_minmax_tuning || f["no-enable_minmax_tuning"])) {
    throw new UsageError(`--enable_minmax_tuning and --disable_minmax_tuning contradict`);
  }
  const iters = flagInt(f, "iters", "iter") ?? recipe.iters;
  const nsamples = flagInt(f, "nsamples", "nsample") ?? recipe.nsamples;
  const seqlen = flagInt(f, "seqlen", "seq_len") ?? recipe.seqlen;
  const batchSize = flagInt(f, "batch_size", "bs", "train_bs") ?? recipe.batch_size;
  const gas = flagInt(f, "gradient_accumulate_steps") ?? 1;
  const seed = flagInt(f, "seed") ?? 42;
  const disableOptRtn = f.disable_opt_rtn ? true : f.enable_opt_rtn ? false : recipe.disable_opt_rtn;
  for (
    const [name, v, min] of [["iters", iters, 0], ["nsamples", nsamples, 1], ["seqlen", seqlen, 2], [
      "batch_size",
      batchSize,
      1,
    ], ["gradient_accumulate_steps", gas, 1]] as const
  ) {
    if (v < min) throw new UsageError(`--${name} must be >= ${min} (got ${v})`);
  }

  const overrides = {
    bits: flagInt(f, "bits"),
    groupSize: flagInt(f, "group_size"),
    sym: f.asym ? false : f.sym ? true : undefined,
    dataType: flagStr(f, "data_type", "dtype"),
    actBits: flagInt(f, "act_bits"),
    actGroupSize: flagInt(f, "act_group_size"),
    actDataType: flagStr(f, "act_data_type", "act_dtype"),
    actDynamic: f.disable_act_dynamic ? false : undefined,
  };
  const scheme = resolveScheme(flagStr(f, "scheme") ?? "W4A16", overrides);
  const autoScheme = autoSchemeFromFlags(f, overrides);
  const formats = (flagStr(f, "format", "formats") ?? "auto_round").toLowerCase().replaceAll(" ", "").split(
    ",",
  );
  const userLayers = f.layer_config ? await parseLayerConfigArg(String(f.layer_config)) : {};
  const ignore = (flagStr(f, "ignore_layers", "fp_layers") ?? "").replaceAll(" ", "").split(",").filter(
    Boolean,
  );
  const maxShardSize = parseSize(flagStr(f, "max_shard_size") ?? "5GB");
  const device = parseDevice(flagStr(f, "device", "device_map") ?? "auto");
  const backendOptions = flagBackendOptions(f);
  const evalText = flagStr(f, "eval_text");
  const evalSeqlen = flagInt(f, "eval_seqlen") ?? seqlen;
  const datasetSpec = flagStr(f, "dataset") ?? DEFAULT_DATASET;
  const outputDir = flagStr(f, "output_dir") ?? "./tmp_autoround";
  const runLog = await RunLog.open(logJson, mode.job);
  if (mode.skipExisting && await finishedOutput(outputDir, formats, scheme.bits)) {
    log.info(`skipped: ${outputDir} exists`);
    runLog.record("done", 0, { skipped: true, output_dir: outputDir });
    return;
  }
  const resume = f.resume === true ||
    (mode.resumeIfPartial === true &&
      await Deno.stat(`${outputDir.replace(/\/+$/, "")}.partial`).then(() => true, () => false));
  if (resume && f.resume !== true) log.info(`resuming the unfinished run in ${outputDir}.partial`);

  // Evaluation tasks are checked before quantizing, so a typo fails in a second, not after the run.
  const evalTasks = flagStr(f, "eval", "tasks");
  const evalSpecs = evalTasks ? parseTaskList(evalTasks) : undefined;
  const evalData = evalSpecs ? resolveDataDir(flagStr(f, "data_dir")) : undefined;
  for (const t of evalSpecs ?? []) await findTaskFile(t, evalData!.dir, evalData!.origin);
  let fpPpl: number | undefined;
  const result = await quantize({
    model,
    outputDir,
    formats,
    scheme,
    schemeGiven: ["scheme", "bits", "group_size", "asym", "sym", "data_type", "dtype", "act_bits"].some((k) =>
      f[k] !== undefined
    ),
    layerConfig: userLayers,
    ignoreLayers: ignore,
    autoScheme,
    iters,
    nsamples,
    seqlen,
    batchSize,
    gradientAccumulateSteps: gas,
    seed,
    dataset: datasetSpec,
    disableOptRtn,
    lr,
    minmaxLr,
    enableMinmaxTuning: !(f.disable_minmax_tuning || f["no-enable_minmax_tuning"]),
    enableQuantedInput: !(f.disable_quanted_input || f["no-enable_quanted_input"]),
    notUseBestMse: f.not_use_best_mse === true,
    enableAlgExt: f.enable_alg_ext === true,
    dynamicMaxGap,
    lowGpuMemUsage: f.low_gpu_mem_usage === true,
    resume,
    maxShardSize,
    device,
    ...backendOptions,
    onPhase: (phase) => runLog.record(phase),
    onBlock: (r, p) => runLog.record("quantize", p.etaSeconds, { ...r, blocks: p.total }),
    beforeRun: evalText
      ? async ({ be, ckpt, tok }) => {
        runLog.record("eval");
        fpPpl = await evalTextPerplexity(be, ckpt, tok, evalText, evalSeqlen, log);
      }
      : undefined,
  }, log);
  if (evalText || evalSpecs) runLog.record("eval");
  if (evalText) {
    using q = await openCheckpoint(result.outputDir);
    using be = await createBackend(device, log, backendOptions);
    const tok = await Tokenizer.fromDir(q.dir);
    const qPpl = await evalTextPerplexity(be, q, tok, evalText, evalSeqlen, log);
    console.log(
      `perplexity of ${evalText} (seqlen ${evalSeqlen}): fp ${fpPpl!.toFixed(4)} → quantized ${
        qPpl.toFixed(4)
      }`,
    );
  }
  if (evalSpecs) {
    using q = await openCheckpoint(result.outputDir);
    using be = await createBackend(device, log, backendOptions);
    const tok = await Tokenizer.fromDir(q.dir);
    const report = await runEvalTasks(be, q, tok, {
      tasks: evalSpecs,
      dataDir: evalData!.dir,
      limit: flagNum(f, "limit"),
      batchSize: flagInt(f, "eval_bs"),
      log,
      onProgress: (task, done, total) => done === total && log.info(`eval ${task}: ${total} requests done`),
    });
    console.log(formatResultsTable(report));
  }
  runLog.record("done", 0, { summary: result.summary });
}
