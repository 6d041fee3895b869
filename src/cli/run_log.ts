/**
 * `--log_json FILE`: one JSON record per line, each with the run's `phase` ("load", "calibrate",
 * "quantize", "export", "eval", "done"), `elapsed_s` (seconds since the run started) and `eta_s`
 * (seconds left, estimated from the average block time so far; null where there is no estimate
 * yet, 0 when done). Block records carry the block's report (loss, iterations, seconds) and `blocks`
 * (how many there are); the last record, phase "done", the run's summary, or `skipped: true` when
 * a batch job found its output already there. Jobs of a config file carry `job` (their index) and
 * append to the file instead of emptying it first.
 *
 *   {"phase":"load","elapsed_s":0,"eta_s":null}
 *   {"phase":"quantize","block":1,"blocks":5,...,"elapsed_s":0.41,"eta_s":1.2}
 *   {"phase":"done","elapsed_s":2.1,"eta_s":0,"summary":{...}}
 */

import { InputError } from "../errors.ts";

/** Appends records to a --log_json file (or does nothing without one). */
export class RunLog {
  readonly #t0 = performance.now();

  private constructor(readonly path: string | undefined, private readonly job: number | undefined) {}

  /**
   * The log for one run: the file is emptied first, unless `job` is given — config jobs append, so
   * that the jobs of one file (in turn, or at once as a scheduler's array tasks) and a job's resumed
   * attempts share one log, told apart by `job`.
   */
  static async open(path: string | undefined, job?: number): Promise<RunLog> {
    if (path === undefined) return new RunLog(path, job);
    try {
      const parent = path.slice(0, path.lastIndexOf("/"));
      if (parent) await Deno.mkdir(parent, { recursive: true });
      await Deno.writeTextFile(path, "", { append: job !== undefined });
    } catch (e) {
      throw new InputError(`cannot write the --log_json file: ${(e as Error).message}`, path);
    }
    return new RunLog(path, job);
  }

  /** Seconds since this log was opened (the run's start). */
  elapsed(): number {
    return (performance.now() - this.#t0) / 1000;
  }

  /** Append a record of `phase`; `eta` undefined or not finite is written as null. */
  record(phase: string, eta?: number, fields: Record<string, unknown> = {}): void {
    if (this.path === undefined) return;
    const rec: Record<string, unknown> = this.job === undefined ? { phase } : { job: this.job, phase };
    Object.assign(rec, fields, {
      elapsed_s: round3(this.elapsed()),
      eta_s: eta !== undefined && Number.isFinite(eta) ? round3(Math.max(0, eta)) : null,
    });
    Deno.writeTextFileSync(this.path, JSON.stringify(rec) + "\n", { append: true });
  }
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
