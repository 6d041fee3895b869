/**
 * `autoround quantize --config FILE`: every flag in a JSON or YAML file, one job or several.
 *
 * Keys are the command's long flag names without the dashes (`model`, `scheme`, `format`,
 * `output_dir`, `iters`, ...). Top-level keys are the defaults; an optional `jobs:` list gives
 * several jobs, each job's keys overriding the defaults; flags on the command line override both.
 * A flag with aliases (`iters`/`iter`, `format`/`formats`, ...) counts as one key: a value given
 * under any of its names replaces the value under the others, and so do the two sides of a switch
 * (`asym`/`sym`). String flags take strings or numbers; list flags (`format`, `ignore_layers`,
 * `tasks`) also a list; `layer_config` also a mapping; switches `true` or `false`.
 *
 * ```yaml
 * scheme: W4A16
 * iters: 0
 * jobs:
 *   - { model: Qwen/Qwen3-8B, output_dir: out/qwen3-8b, format: [auto_round, "gguf:q4_k_m"] }
 *   - { model: meta-llama/Llama-3.1-8B, output_dir: out/llama-8b }
 * ```
 *
 * Everything wrong with the file's content is a UsageError (exit 2) naming the file and the key.
 */
import { InputError, UsageError } from "../errors.ts";
import type { FlagSpec, ParsedFlags } from "../std/cli.ts";
import { parseYaml, YamlError, type YamlValue } from "../std/yaml.ts";

/** Flag values, as parseFlags gives them. */
export type FlagValues = ParsedFlags["values"];

/** One job of a config file: its index and its flag values (defaults, the job's, the command line's). */
export interface ConfigJob {
  index: number;
  values: FlagValues;
  /** Switches the file set to `false` (a way to turn off what config mode implies). */
  off: Set<string>;
}

/** What a config file holds. */
export interface JobConfig {
  file: string;
  jobs: ConfigJob[];
}

/** Flags whose names mean one setting (the first is the name the help uses). */
export const FLAG_GROUPS: readonly (readonly string[])[] = [
  ["model", "model_name", "model_name_or_path"],
  ["iters", "iter"],
  ["nsamples", "nsample"],
  ["seqlen", "seq_len"],
  ["batch_size", "bs", "train_bs"],
  ["format", "formats"],
  ["data_type", "dtype"],
  ["device", "device_map"],
  ["ignore_layers", "fp_layers"],
  ["eval", "tasks"],
  ["asym", "sym"],
  ["disable_opt_rtn", "enable_opt_rtn"],
  ["enable_minmax_tuning", "disable_minmax_tuning", "no-enable_minmax_tuning"],
  ["enable_quanted_input", "disable_quanted_input", "no-enable_quanted_input"],
];

/** Flags that take comma-separated lists: in a file, a list of strings too. */
const LIST_FLAGS = new Set(["format", "formats", "ignore_layers", "fp_layers", "eval", "tasks"]);

/** Flags whose value is an integer, and those whose value is a number. */
const INT_FLAGS = new Set([
  "bits",
  "group_size",
  "iters",
  "iter",
  "nsamples",
  "nsample",
  "seqlen",
  "seq_len",
  "batch_size",
  "bs",
  "train_bs",
  "gradient_accumulate_steps",
  "threads",
  "seed",
  "dynamic_max_gap",
  "act_bits",
  "act_group_size",
  "eval_bs",
  "eval_seqlen",
]);
const NUMBER_FLAGS = new Set(["lr", "minmax_lr", "limit"]);

/** Flags that belong on the command line only. */
const COMMAND_LINE_ONLY = new Set(["config", "job", "help", "debug"]);

function groupOf(key: string): readonly string[] {
  return FLAG_GROUPS.find((g) => g.includes(key)) ?? [key];
}

/** `base` with `top`'s keys laid over it; a key replaces every name of its group. */
export function overlayFlags(base: FlagValues, top: FlagValues): FlagValues {
  const out: FlagValues = { ...base };
  for (const [k, v] of Object.entries(top)) {
    if (v === undefined) continue;
    for (const alias of groupOf(k)) delete out[alias];
    out[k] = v;
  }
  return out;
}

/** Read and check a config file against the command's flags; `cli`: the command line's values. */
export async function loadJobConfig(file: string, spec: FlagSpec, cli: FlagValues): Promise<JobConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new InputError("config file not found", file);
    throw new InputError(`cannot read the config file: ${(e as Error).message}`, file);
  }
  return parseJobConfig(text, file, spec, cli);
}

/** Parse a config file's text (JSON for `.json`, else the YAML subset of std/yaml.ts). */
export function parseJobConfig(text: string, file: string, spec: FlagSpec, cli: FlagValues): JobConfig {
  const lower = file.toLowerCase();
  let doc: unknown;
  if (lower.endsWith(".json")) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      throw new UsageError(`not valid JSON: ${(e as Error).message}`, file);
    }
  } else if (lower.endsWith(".yaml") || lower.endsWith(".yml")) {
    try {
      doc = parseYaml(text);
    } catch (e) {
      if (e instanceof YamlError) throw new UsageError(`YAML ${e.message}`, file);
      throw e;
    }
  } else throw new UsageError(`a config file must end in .json, .yaml or .yml`, file);
  if (!isMapping(doc)) throw new UsageError(`the config must be a mapping of flag names to values`, file);

  const { jobs: jobList, ...top } = doc;
  const off = new Set<string>();
  const defaults = convertEntry(top, spec, file, "", off);
  let entries: FlagValues[] = [defaults];
  const offs: Set<string>[] = [off];
  if (jobList !== undefined) {
    if (!Array.isArray(jobList) || jobList.length === 0) {
      throw new UsageError(`"jobs" must be a non-empty list of mappings`, file);
    }
    entries = [];
    offs.length = 0;
    jobList.forEach((j, i) => {
      if (!isMapping(j)) throw new UsageError(`jobs[${i}] must be a mapping of flag names to values`, file);
      if (Object.hasOwn(j, "jobs")) throw new UsageError(`jobs[${i}]: "jobs" cannot nest`, file);
      const jobOff = new Set(off);
      const own = convertEntry(j, spec, file, `jobs[${i}]: `, jobOff);
      entries.push(overlayFlags(defaults, own));
      offs.push(jobOff);
    });
  }
  const jobs = entries.map((values, index) => {
    const jobOff = offs[index];
    for (const k of Object.keys(cli)) if (cli[k] !== undefined) jobOff.delete(k);
    return { index, values: overlayFlags(values, cli), off: jobOff };
  });
  return { file, jobs };
}

/**
 * The jobs `--job` picks: all (none given) or the one at that 0-based index. Jobs that would write
 * one output folder are refused.
 */
export function selectJobs(config: JobConfig, job: string | undefined): ConfigJob[] {
  if (job === undefined) {
    checkOutputs(config.jobs, config.file);
    return config.jobs;
  }
  const n = Number(job);
  const count = config.jobs.length;
  if (!/^[0-9]+$/.test(job.trim()) || n >= count) {
    throw new UsageError(
      `--job must be a job index from 0 to ${count - 1} (got "${job}"; ${config.file} has ${count} job${
        count === 1 ? "" : "s"
      })`,
    );
  }
  return [config.jobs[n]];
}

/** Two jobs of `jobs` writing one output folder: a UsageError naming both. */
function checkOutputs(jobs: ConfigJob[], file: string): void {
  const seen = new Map<string, number>();
  for (const j of jobs) {
    const out = typeof j.values.output_dir === "string" ? j.values.output_dir : "./tmp_autoround";
    const key = out.replace(/\/+$/, "");
    if (seen.has(key)) {
      throw new UsageError(
        `jobs ${seen.get(key)} and ${j.index} both write ${out} (give each its output_dir)`,
        file,
      );
    }
    seen.set(key, j.index);
  }
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** One mapping of the file as flag values; `off` collects the switches it sets to false. */
function convertEntry(
  entry: Record<string, unknown>,
  spec: FlagSpec,
  file: string,
  where: string,
  off: Set<string>,
): FlagValues {
  const out: FlagValues = {};
  for (const [key, value] of Object.entries(entry)) {
    if (!Object.hasOwn(spec, key) || COMMAND_LINE_ONLY.has(key)) {
      const hint = Object.hasOwn(spec, key.replaceAll("-", "_"))
        ? ` (did you mean ${key.replaceAll("-", "_")}?)`
        : "";
      throw new UsageError(
        COMMAND_LINE_ONLY.has(key)
          ? `${where}"${key}" belongs on the command line, not in a config file`
          : `${where}unknown key "${key}"${hint}; the keys are the command's flag names without dashes`,
        file,
      );
    }
    const bad = (want: string) =>
      new UsageError(`${where}${key} must be ${want} (got ${describe(value as YamlValue)})`, file);
    if (spec[key].type === "boolean") {
      if (typeof value !== "boolean") throw bad("true or false");
      if (value) (out[key] = true, off.delete(key));
      else off.add(key);
      continue;
    }
    if (INT_FLAGS.has(key) || NUMBER_FLAGS.has(key)) {
      const x = typeof value === "number" ? value : typeof value === "string" ? Number(value) : NaN;
      const int = INT_FLAGS.has(key);
      if (
        (typeof value === "string" && value.trim() === "") ||
        !(int ? Number.isInteger(x) : Number.isFinite(x))
      ) {
        throw bad(int ? "an integer" : "a number");
      }
      out[key] = String(value);
    } else if (typeof value === "string") out[key] = value;
    else if (typeof value === "number" && Number.isFinite(value)) out[key] = String(value);
    else if (Array.isArray(value) && LIST_FLAGS.has(key)) {
      if (!value.every((x) => typeof x === "string" || typeof x === "number") || value.length === 0) {
        throw bad("a non-empty list of strings");
      }
      out[key] = value.join(",");
    } else if (isMapping(value) && key === "layer_config") out[key] = JSON.stringify(value);
    else {
      throw bad(
        LIST_FLAGS.has(key)
          ? "a string or a list of strings"
          : key === "layer_config"
          ? "a mapping or a string (JSON or a file)"
          : "a string or a number",
      );
    }
  }
  return out;
}

function describe(v: YamlValue): string {
  if (v === null) return "nothing";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (typeof v === "string") return `"${v}"`;
  return String(v);
}
