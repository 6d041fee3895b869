/**
 * A fuzz worker: runs the cases the runner (runner.ts) sends, one at a time, and answers with each
 * verdict. The allocation guard is installed before any case runs and stdout is muted (the commands
 * print results). Two more things make a passing case a finding, as each would be an extra stderr
 * line in the CLI: console output from a library, and a promise rejection nobody handled (the CLI
 * would end with a stack trace).
 */
import { installAllocationGuard } from "./alloc_guard.ts";
installAllocationGuard();

import { ALL_TARGETS, makeContext, runCase } from "./case.ts";
import type { FuzzContext } from "./target.ts";

/** Messages the runner sends. */
export type ToWorker =
  | { type: "init"; seedRoot: string }
  | { type: "case"; target: string; seed: number; index: number; dir: string };

let printed: string[] = [];
let rejected: string[] = [];
console.log = () => {};
for (const k of ["warn", "error", "info", "debug"] as const) {
  console[k] = (...args: unknown[]) => printed.push(args.map(String).join(" ").slice(0, 200));
}
Object.defineProperty(Deno.stdout, "isTerminal", { value: () => false });
globalThis.addEventListener("unhandledrejection", (e) => {
  e.preventDefault();
  const r = e.reason as Error;
  rejected.push(`${r?.name ?? "rejection"}: ${r?.message ?? r}`.slice(0, 300));
});

let ctx: FuzzContext | undefined;
const scope = globalThis as unknown as {
  onmessage: ((e: MessageEvent<ToWorker>) => void) | null;
  postMessage(m: unknown): void;
};

scope.onmessage = async (ev) => {
  const m = ev.data;
  if (m.type === "init") {
    ctx = await makeContext(m.seedRoot);
    scope.postMessage({ type: "ready" });
    return;
  }
  const target = ALL_TARGETS.find((t) => t.name === m.target)!;
  try {
    printed = [];
    rejected = [];
    const r = await runCase(target, ctx!, m.seed, m.index, m.dir);
    delete r.thrown;
    await new Promise((resolve) => setTimeout(resolve, 0)); // let unhandled rejections surface
    if (r.outcome !== "finding" && rejected.length) {
      Object.assign(r, { outcome: "finding", kind: "crash", error: `unhandled rejection: ${rejected[0]}` });
    } else if (r.outcome !== "finding" && printed.length) {
      Object.assign(r, {
        outcome: "finding",
        kind: "message",
        error: `printed on the console: ${printed[0]}`,
      });
    }
    scope.postMessage({ type: "result", result: r });
  } catch (e) { // building the case failed: a bug of the harness, reported as such
    const error = `fuzz harness error: ${(e as Error).stack ?? e}`;
    scope.postMessage({
      type: "result",
      result: { ...m, outcome: "finding", kind: "crash", error, steps: [], ms: 0 },
    });
  }
};
