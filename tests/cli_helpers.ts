/**
 * The CLI run as a child process, as a user meets it, and the checks its failure tests share: one
 * `error:` line on stderr, nothing left where the output folder would be. A running child can be
 * signalled once its stderr shows a given line (tests/cli_signals_test.ts); `unshareFlags` finds the
 * Linux namespaces the environment tests run it in (a mount namespace for a full or read-only file
 * system, a network namespace without interfaces), or says why there are none.
 */
import { join } from "../src/std/path.ts";
import { assert, assertEquals, fixture } from "./assert.ts";

/** main.ts as a path. */
export const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** What a finished child left: exit code, the signal that killed it (null: it exited), output. */
export interface CliResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** `deno run -A main.ts ...args`, optionally prefixed by a command such as `unshare -rn`. */
export async function cli(
  args: string[],
  env: Record<string, string> = {},
  prefix: string[] = [],
): Promise<CliResult> {
  const [cmd, ...pre] = prefix.length ? prefix : [Deno.execPath()];
  const all = prefix.length
    ? [...pre, Deno.execPath(), "run", "-A", MAIN, ...args]
    : ["run", "-A", MAIN, ...args];
  return cliResult(
    await new Deno.Command(cmd, { args: all, env, stdout: "piped", stderr: "piped" }).output(),
  );
}

/** A finished Deno.Command's output as a CliResult (stdout and stderr decoded). */
export function cliResult(out: Deno.CommandOutput): CliResult {
  const dec = new TextDecoder();
  return {
    code: out.code,
    signal: out.signal,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}

/** A child CLI run in progress: wait for a line on its stderr, signal it, collect its result. */
export interface RunningCli {
  /** Resolves once stderr contains `text`; rejects when the child ends first. */
  stderrShows(text: string): Promise<void>;
  kill(signal: Deno.Signal): void;
  /** The result; a child still running after `limitMs` is killed with SIGKILL (then `signal` says so). */
  result(limitMs?: number): Promise<CliResult>;
}

/** Start `deno run -A main.ts ...args` without waiting for it. */
export function spawnCli(args: string[], env: Record<string, string> = {}): RunningCli {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  let ended = false;
  const waiters: { text: string; resolve: () => void; reject: (e: Error) => void }[] = [];
  const settle = () => {
    for (const w of [...waiters]) {
      if (stderr.includes(w.text)) w.resolve();
      else if (ended) w.reject(new Error(`the run ended before stderr showed "${w.text}":\n${stderr}`));
      else continue;
      waiters.splice(waiters.indexOf(w), 1);
    }
  };
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderr += chunk;
      settle();
    }
    ended = true;
    settle();
  })();
  const stdout = new Response(child.stdout).text();
  return {
    stderrShows: (text) =>
      new Promise<void>((resolve, reject) => {
        waiters.push({ text, resolve, reject });
        settle();
      }),
    kill: (signal) => child.kill(signal),
    async result(limitMs = 120_000) {
      const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
      try {
        const status = await child.status;
        await stderrDone;
        return { code: status.code, signal: status.signal, stdout: await stdout, stderr };
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Nothing named like the output folder exists in its parent (no final folder, no .partial). */
export async function assertNoOutput(dir: string): Promise<void> {
  const left = await outputEntries(dir);
  assertEquals(left, [], `left behind: ${left.join(", ")}`);
}

/** Names in `dir`'s parent that start with `dir`'s name (the folder, its .partial, .old). */
export async function outputEntries(dir: string): Promise<string[]> {
  const parent = dir.slice(0, dir.lastIndexOf("/"));
  const base = dir.slice(dir.lastIndexOf("/") + 1);
  const names: string[] = [];
  for await (const e of Deno.readDir(parent)) if (e.name.startsWith(base)) names.push(e.name);
  return names.sort();
}

/** Exactly one line on stderr starts with "error:" and it contains every `parts`; no other line
 * but warnings, unless `progress` allows the info lines a run prints before it fails. */
export function assertOneErrorLine(stderr: string, ...parts: string[]): void {
  assertErrorLine(stderr, { progress: false }, ...parts);
}

/** The same, allowing progress lines (a run interrupted half way); the error line must be last. */
export function assertLastErrorLine(stderr: string, ...parts: string[]): void {
  assertErrorLine(stderr, { progress: true }, ...parts);
}

function assertErrorLine(stderr: string, o: { progress: boolean }, ...parts: string[]): void {
  const lines = stderr.trim().split("\n").filter((l) => !l.startsWith("warning:"));
  const errors = lines.filter((l) => /^(error|internal error)\b/.test(l));
  assertEquals(errors.length, 1, `one error line expected, got:\n${stderr}`);
  if (!o.progress) assertEquals(lines.length, 1, `stderr should be one line, got:\n${stderr}`);
  const line = lines[lines.length - 1];
  assert(line.startsWith("error: "), `the last line should be the error, got:\n${stderr}`);
  for (const p of parts) assert(line.includes(p), `"${line}" lacks "${p}"`);
}

/** Copy the stories260K fixture into `to` (to alter one file). */
export async function copyModel(to: string): Promise<string> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(fixture("stories260K"))) {
    await Deno.copyFile(join(fixture("stories260K"), e.name), join(to, e.name));
  }
  return to;
}

/**
 * The `unshare` flags that give a new namespace of `kind` here: with a user namespace (`-r`,
 * unprivileged) or, as root, without one. A string instead says why neither works (not Linux, no
 * unshare, user namespaces disabled).
 */
export async function unshareFlags(kind: "mount" | "net"): Promise<string[] | string> {
  if (Deno.build.os !== "linux") return `namespaces need Linux (this is ${Deno.build.os})`;
  const ns = kind === "mount" ? "m" : "n";
  let why = "";
  for (const flags of [[`-r${ns}`], [`-${ns}`]]) {
    try {
      const probe = kind === "mount" ? ["sh", "-c", "mount -t tmpfs -o size=4k tmpfs /tmp"] : ["true"];
      const r = await new Deno.Command("unshare", { args: [...flags, ...probe], stderr: "piped" }).output();
      if (r.success) return flags;
      why ||= new TextDecoder().decode(r.stderr).trim();
    } catch (e) {
      return `unshare cannot run: ${(e as Error).message}`;
    }
  }
  return `unshare cannot create a ${kind} namespace: ${why}`;
}

/** Print why a test is skipped and return the Deno.test `ignore` value. */
export function skipUnless(flags: string[] | string, what: string): boolean {
  if (typeof flags === "string") console.log(`${what} skipped: ${flags}`);
  return typeof flags === "string";
}
