/**
 * One fuzz case from start to verdict: build it from (target, seed, index), run it, and classify
 * what happened. A pass is a success or an AutoRoundError whose one-line form is one short line; a
 * finding is anything else: another exception ("crash"), an allocation the guard refused ("oom"),
 * an error message that is not one short line ("message"), a quantize that left output behind, or —
 * decided by the runner, which can stop a worker — a case that does not finish ("hang").
 */
import { AutoRoundError } from "../../src/errors.ts";
import { HugeAllocation } from "./alloc_guard.ts";
import { caseRng } from "./rng.ts";
import { selfCheckTarget } from "./selfcheck.ts";
import { loadSeeds } from "./seeds.ts";
import { type FuzzCase, type FuzzContext, type FuzzTarget, LeftoverOutput } from "./target.ts";
import { calibTarget, chatTemplateTarget, layerConfigTarget, tokenizerTarget } from "./targets_text.ts";
import { configTarget, ggufTarget, quantizedTarget, safetensorsTarget } from "./targets_model.ts";

/** Every parser under fuzz, in table order. */
export const TARGETS: readonly FuzzTarget[] = [
  safetensorsTarget,
  configTarget,
  tokenizerTarget,
  chatTemplateTarget,
  ggufTarget,
  calibTarget,
  layerConfigTarget,
  quantizedTarget,
];

/** The parsers and the harness's own self-check target (selfcheck.ts), which only runs when named. */
export const ALL_TARGETS: readonly FuzzTarget[] = [...TARGETS, selfCheckTarget];

/** What a case came to. */
export type Outcome = "accepted" | "clean" | "finding";
/** The kinds of finding. */
export type FindingKind = "crash" | "hang" | "oom" | "message" | "leftover";

/** The verdict on one case. */
export interface CaseResult {
  target: string;
  index: number;
  outcome: Outcome;
  kind?: FindingKind;
  /** The error's name and message (findings), or the clean error's one line. */
  error?: string;
  /** First stack frame in the program or a library: where a crash happened. */
  where?: string;
  mode?: string;
  steps: string[];
  /** Milliseconds the parser ran (building the case not included). */
  ms: number;
}

/** Longest one-line error message that still reads as one line on a terminal. */
export const MAX_MESSAGE = 1000;

/** The first stack frame outside the harness (src/, main.ts or a dependency), shortened. */
export function whereOf(e: unknown): string | undefined {
  const stack = (e as Error)?.stack ?? "";
  for (const line of stack.split("\n").slice(1)) {
    if (line.includes("/tests/fuzz/") || !line.includes("at ")) continue;
    const m = /((?:src|node_modules|ffi)\/[^\s)]*|main\.ts:\d+:\d+)/.exec(line);
    if (m) return m[1].replace(/^node_modules\/\.deno\/[^/]+\/node_modules\//, "");
  }
  return undefined;
}

/** Classify a thrown value. */
export function classify(e: unknown): Pick<CaseResult, "outcome" | "kind" | "error" | "where"> {
  if (e instanceof AutoRoundError) {
    const line = e.oneLine();
    if (line.includes("\n") || line.trim() === "" || line.length > MAX_MESSAGE) {
      const shown = line.length > 200 ? `${line.slice(0, 200)}… (${line.length} chars)` : line;
      return {
        outcome: "finding",
        kind: "message",
        error: `${e.name}: ${JSON.stringify(shown)}`,
        where: whereOf(e),
      };
    }
    return { outcome: "clean", error: `${e.name}: ${line}` };
  }
  const err = e as Error;
  const text = `${err?.name ?? typeof e}: ${String(err?.message ?? e).slice(0, 300)}`;
  if (e instanceof HugeAllocation) return { outcome: "finding", kind: "oom", error: text, where: whereOf(e) };
  if (e instanceof LeftoverOutput) return { outcome: "finding", kind: "leftover", error: text };
  return { outcome: "finding", kind: "crash", error: text, where: whereOf(e) };
}

/** The context a worker builds once: seeds in memory and the eval text. */
export async function makeContext(seedRoot: string): Promise<FuzzContext> {
  return { seeds: await loadSeeds(seedRoot), evalText: `${seedRoot}/eval.txt` };
}

/** Build case `index` of `target` under `seed` into `dir` (created). */
export async function buildCase(
  target: FuzzTarget,
  ctx: FuzzContext,
  seed: number,
  index: number,
  dir: string,
): Promise<FuzzCase> {
  await Deno.mkdir(dir, { recursive: true });
  return await target.build(caseRng(seed, target.name, index), ctx, dir, index);
}

/** Build, run and classify one case; the case folder is removed afterwards unless `keep`. */
export async function runCase(
  target: FuzzTarget,
  ctx: FuzzContext,
  seed: number,
  index: number,
  dir: string,
  keep = false,
): Promise<CaseResult & { thrown?: unknown }> {
  let c: FuzzCase | undefined;
  try {
    c = await buildCase(target, ctx, seed, index, dir);
    const t0 = performance.now();
    let verdict: Pick<CaseResult, "outcome" | "kind" | "error" | "where">;
    let thrown: unknown;
    try {
      await target.run(c, ctx);
      verdict = { outcome: "accepted" };
    } catch (e) {
      thrown = e;
      verdict = classify(e);
    }
    const ms = performance.now() - t0;
    return { target: target.name, index, ...verdict, mode: c.mode, steps: c.steps, ms, thrown };
  } finally {
    if (!keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
