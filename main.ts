/**
 * autoround — SignRound / RTN weight quantization for LLMs, as one executable.
 *
 *   autoround quantize --model DIR --scheme W4A16 --output_dir OUT
 *   autoround eval     --model OUT --tasks arc_easy,piqa --data_dir DATA
 *   autoround generate --model OUT --prompt "Once upon a time"
 *   autoround inspect  OUT
 *
 * Errors a user can cause print one line (`error: ...`) and exit non-zero; `--debug` adds the stack.
 * Exit codes: 0 done, 1 error, 2 usage, 70 internal error (a bug), 130 / 143 interrupted (SIGINT /
 * SIGTERM).
 */
import { evalCommand } from "./src/cli/eval.ts";
import { generateCommand } from "./src/cli/generate.ts";
import { inspectCommand } from "./src/cli/inspect.ts";
import { exitOnSignals } from "./src/cli/interrupt.ts";
import { quantizeCommand } from "./src/cli/quantize.ts";
import { versionLine } from "./src/cli/version.ts";
import { AutoRoundError } from "./src/errors.ts";
import { CudaError } from "./ffi/cuda/errors.ts";
import { type Log, stderrLog } from "./src/log.ts";
import { inPoolWorker } from "./src/parallel/pool.ts";
import { VERSION } from "./src/version.ts";

const HELP = `autoround ${VERSION} — AutoRound (SignRound) weight quantization for LLMs

Usage: autoround <command> [options]

Commands
  quantize   quantize a Hugging Face checkpoint (SignRound or RTN) and export it
  best, light, rtn
             quantize with that recipe (auto-round-best, auto-round-light, auto-round-rtn too)
  eval       lm-eval-style tasks (wikitext, lambada, ARC, PIQA, HellaSwag, WinoGrande) or a text's perplexity
  generate   continue a prompt (greedy or sampled, optional chat template)
  inspect    summarise a checkpoint or output folder

Run \`autoround <command> --help\` for a command's options.

Examples
  autoround quantize --model tests/fixtures/stories260K --scheme W4A16 --group_size 32 --iters 0 \\
      --dataset tests/fixtures/stories260K/eval.txt --seqlen 64 --output_dir out
  autoround eval --model out --text tests/fixtures/stories260K/eval.txt --seqlen 256
  autoround inspect out
`;

const COMMANDS: Record<string, (argv: string[], log: Log) => Promise<void>> = {
  quantize: quantizeCommand,
  // Recipe commands, also under auto-round's console-script names.
  best: (a, l) => quantizeCommand(a, l, "best"),
  light: (a, l) => quantizeCommand(a, l, "light"),
  rtn: (a, l) => quantizeCommand(a, l, "rtn"),
  "auto-round": (a, l) => quantizeCommand(a, l, "default"),
  "auto-round-best": (a, l) => quantizeCommand(a, l, "best"),
  "auto-round-light": (a, l) => quantizeCommand(a, l, "light"),
  "auto-round-rtn": (a, l) => quantizeCommand(a, l, "rtn"),
  eval: evalCommand,
  generate: generateCommand,
  inspect: inspectCommand,
};

/** Run the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  const log = stderrLog({ debug, quiet: argv.includes("--quiet") });
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
    console.log(HELP);
    return 0;
  }
  if (cmd === "--version") {
    console.log(await versionLine());
    return 0;
  }
  const run = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!run) {
    console.error(
      `error: unknown command "${cmd}" (use quantize, eval, generate or inspect; see autoround --help)`,
    );
    return 2;
  }
  // Ctrl-C / kill: unfinished output removed, one line, exit 130 / 143 (src/cli/interrupt.ts).
  using _signals = exitOnSignals();
  try {
    await run(rest, log);
    return 0;
  } catch (e) {
    if (e instanceof AutoRoundError) {
      console.error(`error: ${e.oneLine()}`);
      if (debug) console.error(e.stack);
      return e.exitCode;
    }
    // A CUDA driver or cuBLASLt failure the backend did not translate: still one line, exit 1.
    if (e instanceof CudaError) {
      console.error(`error: CUDA: ${e.message}; try --low_gpu_mem_usage or a smaller --batch_size`);
      if (debug) console.error(e.stack);
      return 1;
    }
    // node:util parseArgs reports unknown or malformed flags as TypeErrors with ERR_PARSE_ARGS_* codes.
    const code = (e as { code?: string }).code;
    if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
      console.error(`error: ${(e as Error).message} (see autoround ${cmd} --help)`);
      return 2;
    }
    console.error(`internal error: ${(e as Error).message ?? e}`);
    if (debug) console.error((e as Error).stack);
    else console.error(`(run with --debug for the stack trace)`);
    return 70;
  }
}

// A worker thread of the CPU backend's pool loads this same file when it runs as one bundle
// (src/parallel/pool.ts); it serves tasks and must not start the CLI.
if (import.meta.main && !inPoolWorker()) Deno.exit(await main(Deno.args));
