/**
 * What a fuzz target is — a builder that writes one mutated case to a folder and a runner that drives
 * the parser as the CLI does — and the helpers targets share: writing a case folder (mutated files
 * written, the rest linked to the seeds) and running a CLI command in-process with its output muted.
 */
import { evalCommand } from "../../src/cli/eval.ts";
import { generateCommand } from "../../src/cli/generate.ts";
import { inspectCommand } from "../../src/cli/inspect.ts";
import { quantizeCommand } from "../../src/cli/quantize.ts";
import { silentLog } from "../../src/log.ts";
import type { Rng } from "./rng.ts";
import type { Seeds } from "./seeds.ts";

/** One built case: what to open and how it was made. */
export interface FuzzCase {
  /** The file or folder handed to the parser. */
  path: string;
  /** Which way the runner drives it (e.g. "eval", "inspect", "generate"). */
  mode: string;
  /** The mutations, for the report. */
  steps: string[];
  /** The case folder (quantize writes its output under it). */
  dir: string;
}

/** What runners share within one worker. */
export interface FuzzContext {
  seeds: Seeds;
  /** A small text for `eval --text` (a few stories). */
  evalText: string;
}

/** A parser under fuzz. */
export interface FuzzTarget {
  name: string;
  /** Write case files into `dir` (empty) from the seeds; `index` is the case's number. */
  build(rng: Rng, ctx: FuzzContext, dir: string, index?: number): Promise<FuzzCase>;
  /** Drive the parser as the CLI does; succeeding or throwing an AutoRoundError is a pass. */
  run(c: FuzzCase, ctx: FuzzContext): Promise<void>;
  /** The CLI arguments that drive this case through `main.ts` (the subprocess sample). */
  cli(c: FuzzCase, ctx: FuzzContext): string[];
}

/**
 * Make a case folder: `files` written (relative path → bytes), and every other file of the seed folder
 * `linkFrom` (a path under the seed root) linked in, so that unchanged multi-megabyte files cost nothing.
 */
export async function writeCase(
  ctx: FuzzContext,
  dir: string,
  files: Record<string, Uint8Array>,
  linkFrom?: string,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [rel, bytes] of Object.entries(files)) {
    const at = rel.lastIndexOf("/");
    if (at > 0) await Deno.mkdir(`${dir}/${rel.slice(0, at)}`, { recursive: true });
    await Deno.writeFile(`${dir}/${rel}`, bytes);
  }
  if (linkFrom === undefined) return;
  const src = `${ctx.seeds.root}/${linkFrom}`;
  for await (const e of Deno.readDir(src)) {
    if (e.isFile && !(e.name in files)) await Deno.symlink(`${src}/${e.name}`, `${dir}/${e.name}`);
  }
}

/** Bytes of a string (UTF-8). */
export const utf8 = (s: string) => new TextEncoder().encode(s);

/** Common CLI flags of the in-process and subprocess runs: CPU, one thread, no progress lines. */
export const CPU_FLAGS = ["--device", "cpu", "--threads", "1", "--quiet"];

/** `eval --text` of a model folder or GGUF file with 16-token windows. */
export function evalArgs(path: string, ctx: FuzzContext): string[] {
  return ["eval", "--model", path, "--text", ctx.evalText, "--seqlen", "16", ...CPU_FLAGS];
}

/** `generate` of four tokens, optionally through the chat template. */
export function generateArgs(path: string, chat = false): string[] {
  return [
    "generate",
    "--model",
    path,
    "--prompt",
    "Once upon a time",
    "--max_new_tokens",
    "4",
    ...(chat ? ["--chat", "--system", "Be brief."] : []),
    ...CPU_FLAGS,
  ];
}

/** `quantize` (RTN, auto_round) into `<dir>/out`, with `extra` flags. */
export function quantizeArgs(model: string, dir: string, extra: string[] = []): string[] {
  return [
    "quantize",
    "--model",
    model,
    "--scheme",
    "W4A16",
    "--group_size",
    "32",
    "--iters",
    "0",
    "--disable_opt_rtn",
    "--nsamples",
    "2",
    "--seqlen",
    "16",
    "--output_dir",
    `${dir}/out`,
    ...extra,
    ...CPU_FLAGS,
  ];
}

const COMMANDS: Record<string, (argv: string[]) => Promise<void>> = {
  eval: (a) => evalCommand(a, silentLog),
  generate: (a) => generateCommand(a, silentLog),
  inspect: (a) => inspectCommand(a, silentLog),
  quantize: (a) => quantizeCommand(a, silentLog),
};

/**
 * Run a CLI command in this process (its stdout is muted by the worker). After a quantize, its
 * `--output_dir` must exist exactly when it succeeded, and no `<out>.partial-*` may be left.
 */
export async function runCommand(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  let ok = false, error: unknown;
  try {
    await COMMANDS[cmd](rest);
    ok = true;
  } catch (e) {
    error = e;
  }
  if (cmd === "quantize") {
    const out = argv[argv.indexOf("--output_dir") + 1];
    const bad = (await leftovers(out)).filter((n) => !(ok && n === out.slice(out.lastIndexOf("/") + 1)));
    if (bad.length) {
      throw new LeftoverOutput(`quantize ${ok ? "succeeded" : "failed"} and left ${bad.join(", ")}`);
    }
  }
  if (!ok) throw error;
}

/** A quantize left an output folder behind where it must not (a finding). */
export class LeftoverOutput extends Error {
  override name = "LeftoverOutput";
}

/** Entries next to output folder `out` named like it (`out`, `out.partial-*`, `out.old-*`). */
export async function leftovers(out: string): Promise<string[]> {
  const parent = out.slice(0, out.lastIndexOf("/")), base = out.slice(out.lastIndexOf("/") + 1);
  const found: string[] = [];
  for await (const e of Deno.readDir(parent)) {
    if (e.name === base || e.name.startsWith(`${base}.`)) found.push(e.name);
  }
  return found;
}
