/**
 * Runs fuzz cases in Workers so that a case that never finishes can be stopped: each worker gets one
 * case at a time with a time limit; past it the worker is terminated, the case recorded as a "hang"
 * and a fresh worker started. Results are tallied per target: cases, accepted, clean errors,
 * findings and the slowest case.
 */
import { ALL_TARGETS, buildCase, type CaseResult, makeContext, TARGETS } from "./case.ts";
import type { ToWorker } from "./worker.ts";

/** Options of {@link fuzz}. */
export interface FuzzOptions {
  /** Target names (default: all). */
  targets?: string[];
  cases: number;
  seed: number;
  /** Parallel workers. */
  jobs?: number;
  /** A case running longer than this is a hang. */
  timeoutMs?: number;
  /** Prepared seeds (seeds.ts prepareSeeds). */
  seedRoot: string;
  /** Scratch folder for case folders. */
  workRoot: string;
  /** Cases a worker runs before it is replaced (bounds leaks across cases). */
  recycleEvery?: number;
  onResult?: (r: CaseResult) => void;
}

/** Per-target tally. */
export interface TargetSummary {
  target: string;
  cases: number;
  accepted: number;
  clean: number;
  findings: CaseResult[];
  slowestMs: number;
  slowestIndex: number;
  totalMs: number;
  /** Cases that ran out of time once and finished when run again with three times the limit. */
  retried: number;
  /** Clean error messages by count (first 80 characters), to show what the parser refuses most. */
  errors: Map<string, number>;
}

const WORKER_URL = new URL("./worker.ts", import.meta.url);

class Slot {
  worker!: Worker;
  served = 0;
  #pending?: (r: CaseResult) => void;

  constructor(private readonly seedRoot: string) {}

  async start(): Promise<void> {
    this.worker = new Worker(WORKER_URL, { type: "module" });
    this.served = 0;
    const ready = new Promise<void>((resolve, reject) => {
      this.worker.onmessage = (ev) => {
        if (ev.data.type === "ready") resolve();
        else if (ev.data.type === "result") this.#settle(ev.data.result);
      };
      this.worker.onerror = (e) => {
        e.preventDefault();
        if (!this.#pending) reject(new Error(`fuzz worker failed to start: ${e.message}`));
        const error = `worker died: ${e.message}`;
        this.#settle({ target: "?", index: -1, outcome: "finding", kind: "crash", error, steps: [], ms: 0 });
      };
    });
    this.worker.postMessage({ type: "init", seedRoot: this.seedRoot } satisfies ToWorker);
    await ready;
  }

  #settle(r: CaseResult): void {
    const p = this.#pending;
    this.#pending = undefined;
    p?.(r);
  }

  /** Run one case; resolves with its result, or undefined when it did not finish in time. */
  run(msg: ToWorker & { type: "case" }, timeoutMs: number): Promise<CaseResult | undefined> {
    this.served++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#pending = undefined;
        resolve(undefined);
      }, timeoutMs);
      this.#pending = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
      this.worker.postMessage(msg);
    });
  }

  stop(): void {
    this.worker.terminate();
  }
}

function emptySummary(target: string): TargetSummary {
  return {
    target,
    cases: 0,
    accepted: 0,
    clean: 0,
    findings: [],
    slowestMs: 0,
    slowestIndex: -1,
    totalMs: 0,
    errors: new Map(),
    retried: 0,
  };
}

/** Run `cases` cases of each target; returns the tallies in target order. */
export async function fuzz(o: FuzzOptions): Promise<TargetSummary[]> {
  const targets = o.targets ? ALL_TARGETS.filter((t) => o.targets!.includes(t.name)) : TARGETS;
  const timeoutMs = o.timeoutMs ?? 10_000;
  const recycle = o.recycleEvery ?? 1000;
  const queue = targets.flatMap((t) =>
    Array.from({ length: o.cases }, (_, i) => ({ target: t.name, index: i }))
  );
  const summaries = new Map(targets.map((t) => [t.name, emptySummary(t.name)]));
  let hangContext: Awaited<ReturnType<typeof makeContext>> | undefined;

  const record = (r: CaseResult) => {
    const s = summaries.get(r.target)!;
    s.cases++;
    s.totalMs += r.ms;
    if (r.ms > s.slowestMs) [s.slowestMs, s.slowestIndex] = [r.ms, r.index];
    if (r.outcome === "accepted") s.accepted++;
    else if (r.outcome === "clean") {
      s.clean++;
      const key = (r.error ?? "").replace(/\/[^\s:]*\//g, ".../").replace(/\d+/g, "N").slice(0, 80);
      s.errors.set(key, (s.errors.get(key) ?? 0) + 1);
    } else s.findings.push(r);
    o.onResult?.(r);
  };

  const lane = async () => {
    const slot = new Slot(o.seedRoot);
    await slot.start();
    try {
      for (let job = queue.shift(); job; job = queue.shift()) {
        if (slot.served >= recycle) {
          slot.stop();
          await slot.start();
        }
        const dir = `${o.workRoot}/${job.target}-${job.index}`;
        const msg = { type: "case" as const, ...job, seed: o.seed, dir };
        let r = await slot.run(msg, timeoutMs);
        if (!r) {
          // Out of time: on a loaded machine a slow case can look like a hang, so it runs once more
          // in a fresh worker with three times the limit before it counts as one.
          slot.stop();
          await Deno.remove(dir, { recursive: true }).catch(() => {});
          await slot.start();
          r = await slot.run(msg, 3 * timeoutMs);
          if (r) summaries.get(job.target)!.retried++;
        }
        if (r) {
          record(r.index < 0 ? { ...r, target: job.target, index: job.index } : r);
          continue;
        }
        // A hang: stop the worker, rebuild the case here to report what it was, start a new worker.
        slot.stop();
        hangContext ??= await makeContext(o.seedRoot);
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        const target = targets.find((t) => t.name === job.target)!;
        const c = await buildCase(target, hangContext, o.seed, job.index, dir);
        await Deno.remove(dir, { recursive: true }).catch(() => {});
        const error = `no result after ${timeoutMs} ms, nor after ${3 * timeoutMs} ms in a fresh worker`;
        record({
          ...job,
          outcome: "finding",
          kind: "hang",
          error,
          mode: c.mode,
          steps: c.steps,
          ms: timeoutMs,
        });
        await slot.start();
      }
    } finally {
      slot.stop();
    }
  };
  await Promise.all(Array.from({ length: o.jobs ?? 1 }, lane));
  return [...summaries.values()];
}

/** The tally as a Markdown table. */
export function summaryTable(rows: TargetSummary[]): string {
  const head =
    "| parser | cases | accepted | clean errors | findings (crash/hang/oom/other) | slowest case ms | mean ms |";
  const lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"];
  for (const s of rows) {
    const by = (k: string) => s.findings.filter((f) => f.kind === k).length;
    const other = s.findings.length - by("crash") - by("hang") - by("oom");
    lines.push(
      `| ${s.target} | ${s.cases} | ${s.accepted} | ${s.clean} | ${s.findings.length} (${by("crash")}/${
        by("hang")
      }/${by("oom")}/${other}) | ${s.slowestMs.toFixed(0)} (#${s.slowestIndex}) | ${
        (s.totalMs / Math.max(1, s.cases)).toFixed(1)
      } |`,
    );
  }
  const retried = rows.filter((s) => s.retried).map((s) => `${s.target} ${s.retried}`);
  if (retried.length) {
    lines.push("", `cases that timed out once and finished on a second run: ${retried.join(", ")}`);
  }
  return lines.join("\n");
}
