/**
 * Ctrl-C and `kill`: SIGINT and SIGTERM end a run cleanly. The temporary folder of every open
 * output folder is removed (with everything written into it so far) — or, for a `--resume` run,
 * kept with its journal so that the same command continues it — one line
 * `error: interrupted (SIGINT)` goes to stderr, and the process exits with 128 + the signal number
 * (130, 143), the code a shell gives a process the signal killed.
 *
 * The listener runs on the main thread, between two turns of its event loop: long computations
 * give it a turn every ~100 ms (std/event_loop.ts). It does all its work synchronously and ends the
 * process itself, so no other JavaScript runs in between (file operations already on Deno's I/O
 * threads may still finish: OutputFolder.abortAllOpen renames the folder away before removing it),
 * and the CPU backend's worker threads end with the process. A second signal during that cleanup
 * waits for the first listener, which never returns. SIGKILL cannot be caught: it leaves the
 * temporary folder for `--resume`.
 *
 * @example
 * ```ts
 * using _ = exitOnSignals();
 * await longRun(); // Ctrl-C here: output folder removed, exit 130
 * ```
 */
import { OutputFolder } from "../io/output_folder.ts";

/** Exit code per handled signal: 128 + its number (SIGINT 2, SIGTERM 15). */
export const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 } as const;

type HandledSignal = keyof typeof SIGNAL_EXIT_CODES;

/** Until disposed, SIGINT and SIGTERM remove open output folders, print one line and exit. */
export function exitOnSignals(): Disposable {
  const installed: [HandledSignal, () => void][] = [];
  for (const sig of Object.keys(SIGNAL_EXIT_CODES) as HandledSignal[]) {
    const listener = () => exitInterrupted(sig);
    try {
      Deno.addSignalListener(sig, listener);
      installed.push([sig, listener]);
    } catch {
      // Windows has no SIGTERM listener; there the signal keeps its default action.
    }
  }
  return {
    [Symbol.dispose]: () => {
      for (const [sig, listener] of installed) Deno.removeSignalListener(sig, listener);
    },
  };
}

/** Remove the open output folders, say so in one line and exit with the signal's code. */
function exitInterrupted(sig: HandledSignal): never {
  const dropped = OutputFolder.abortAllOpen();
  const done = dropped.filter((d) => !d.error && !d.kept).map((d) => d.finalDir);
  const kept = dropped.filter((d) => d.kept).map((d) => d.finalDir);
  const failed = dropped.filter((d) => d.error).map((d) => `${d.finalDir}: ${d.error!.message}`);
  const parts = [`error: interrupted (${sig})`];
  if (done.length) parts.push(`unfinished output for ${done.join(", ")} removed`);
  if (kept.length) {
    parts.push(`unfinished output for ${kept.join(", ")} kept: run again with --resume to continue`);
  }
  if (failed.length) parts.push(`could not remove the unfinished output for ${failed.join(", ")}`);
  console.error(parts.join("; "));
  Deno.exit(SIGNAL_EXIT_CODES[sig]);
}
