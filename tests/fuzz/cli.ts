/**
 * Fuzz cases through the real CLI (`deno run -A main.ts ...` as a subprocess): a case passes when the
 * command succeeds, or when it exits with a code other than 0 and 70 (70 is "internal error"), prints
 * exactly one `error: ...` line on stderr (warnings aside) and no stack trace, and — for quantize —
 * leaves neither the output folder nor its `<out>.partial` folder behind.
 */
import { buildCase, type CaseResult } from "./case.ts";
import { type FuzzContext, type FuzzTarget, leftovers } from "./target.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What a CLI case came to, with the command's exit code and stderr. */
export interface CliResult extends CaseResult {
  code: number;
  stderr: string;
  argv: string[];
}

/** The problems of a finished command's exit code and stderr (empty: it passed). */
export function cliProblems(code: number, stderr: string): string[] {
  if (code === 0) return [];
  const problems: string[] = [];
  if (code === 70) problems.push("exit code 70 (internal error)");
  const lines = stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("warning: "));
  if (lines.length !== 1) problems.push(`stderr has ${lines.length} lines besides warnings`);
  if (!lines[0]?.startsWith("error: ")) problems.push(`stderr does not start with "error: "`);
  if (/^\s+at /m.test(stderr)) problems.push("stderr holds a stack trace");
  return problems;
}

/** Build case `index` of `target` and run it through main.ts with a time limit. */
export async function runCliCase(
  target: FuzzTarget,
  ctx: FuzzContext,
  seed: number,
  index: number,
  dir: string,
  timeoutMs = 60_000,
): Promise<CliResult> {
  const c = await buildCase(target, ctx, seed, index, dir);
  const argv = target.cli(c, ctx);
  const t0 = performance.now();
  const base = { target: target.name, index, mode: c.mode, steps: c.steps, argv };
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, ...argv],
      stdout: "null",
      stderr: "piped",
      signal: AbortSignal.timeout(timeoutMs),
    }).output();
    const ms = performance.now() - t0;
    const stderr = new TextDecoder().decode(out.stderr);
    if (out.signal === "SIGTERM" || out.signal === "SIGKILL") {
      return {
        ...base,
        outcome: "finding",
        kind: "hang",
        error: `killed after ${timeoutMs} ms`,
        ms,
        code: -1,
        stderr,
      };
    }
    const problems = cliProblems(out.code, stderr);
    if (argv[0] === "quantize") {
      const outDir = argv[argv.indexOf("--output_dir") + 1];
      const name = outDir.slice(outDir.lastIndexOf("/") + 1);
      const bad = (await leftovers(outDir)).filter((n) => !(out.code === 0 && n === name));
      if (bad.length) problems.push(`left ${bad.join(", ")} behind`);
    }
    const outcome = problems.length ? "finding" : out.code === 0 ? "accepted" : "clean";
    const kind = !problems.length
      ? undefined
      : out.code === 70
      ? "crash"
      : problems.some((p) => p.startsWith("left"))
      ? "leftover"
      : "message";
    const error = problems.length
      ? `${problems.join("; ")}: ${stderr.trim().slice(0, 400)}`
      : stderr.trim().split("\n").pop();
    return { ...base, outcome, kind, error, ms, code: out.code, stderr };
  } catch (e) { // the command could not be started: a bug of the harness, reported as such
    const error = `fuzz harness error: ${(e as Error).message}`;
    return { ...base, outcome: "finding", kind: "crash", error, ms: 0, code: -1, stderr: "" };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
