/**
 * "The same command twice": `autoround quantize` run as its own process (fresh allocator, threads,
 * libraries and device state each time), its output folder read back byte for byte, and its
 * `--log_json` block records kept without their timings (`seconds`, `elapsed_s`, `eta_s`). The
 * records carry each block's SignRound losses as full-precision numbers, so they see a last-bit
 * difference in the tuning that the written codes can absorb; comparing both is the oracle of the
 * determinism tests.
 */
import { join } from "../src/std/path.ts";
import { fixture } from "./assert.ts";

const ROOT = new URL("..", import.meta.url).pathname;

/** What one run left: every file of its output folder by relative path, and its block records. */
export interface RunOutput {
  files: Map<string, Uint8Array>;
  /** `--log_json` block records without their timings, re-serialized. */
  records: string[];
}

/** Arguments every determinism run shares: stories260K on 16 × 64 TinyStories tokens. */
export function storiesArgs(...rest: string[]): string[] {
  return [
    "--model",
    fixture("stories260K"),
    "--dataset",
    fixture("tinystories-calib.jsonl"),
    "--nsamples",
    "16",
    "--seqlen",
    "64",
    "--batch_size",
    "8",
    ...rest,
  ];
}

/** Run `autoround quantize ARGS` (output folder and --log_json added) and read what it wrote. */
export async function quantizeCli(args: string[], env: Record<string, string> = {}): Promise<RunOutput> {
  const tmp = await Deno.makeTempDir({ prefix: "autoround-det-" });
  try {
    const out = join(tmp, "out"), log = join(tmp, "blocks.jsonl");
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "main.ts", "quantize", ...args, "--output_dir", out, "--log_json", log, "--quiet"],
      cwd: ROOT,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (r.code !== 0) {
      throw new Error(
        `quantize ${args.join(" ")} failed (${r.code}):\n${new TextDecoder().decode(r.stderr)}`,
      );
    }
    // Block records without their timings (seconds, elapsed_s, eta_s); the phase records and the
    // run's summary record (time, memory) are left out.
    const records = (await Deno.readTextFile(log)).split("\n").filter(Boolean).map((line) => JSON.parse(line))
      .filter((r) => "block" in r).map(({ seconds: _s, elapsed_s: _e, eta_s: _t, ...rest }) =>
        JSON.stringify(rest)
      );
    return { files: await readTree(out), records };
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

/** Every file under `dir`, by path relative to it. */
async function readTree(dir: string, prefix = ""): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const entries = [];
  for await (const e of Deno.readDir(join(dir, prefix))) entries.push(e);
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = prefix ? `${prefix}/${e.name}` : e.name;
    if (e.isDirectory) { for (const [k, v] of await readTree(dir, rel)) files.set(k, v); }
    else files.set(rel, await Deno.readFile(join(dir, rel)));
  }
  return files;
}

/** Every way two runs differ, one line each (empty: byte-identical files and equal records). */
export function runDifferences(a: RunOutput, b: RunOutput, ignore: readonly string[] = []): string[] {
  const out: string[] = [];
  const names = [...new Set([...a.files.keys(), ...b.files.keys()])].filter((n) => !ignore.includes(n));
  for (const name of names.sort()) {
    const x = a.files.get(name), y = b.files.get(name);
    if (!x || !y) {
      out.push(`${name}: only in the ${x ? "first" : "second"} run`);
      continue;
    }
    const n = Math.min(x.length, y.length);
    let i = 0;
    while (i < n && x[i] === y[i]) i++;
    if (i < n) {
      const diff = x.reduce((c, v, j) => c + (j < n && v !== y[j] ? 1 : 0), 0);
      out.push(`${name}: ${diff} bytes differ, the first at offset ${i} (${x[i]} vs ${y[i]})`);
    } else if (x.length !== y.length) out.push(`${name}: ${x.length} vs ${y.length} bytes`);
  }
  const blocks = Math.max(a.records.length, b.records.length);
  for (let i = 0; i < blocks; i++) {
    if (a.records[i] !== b.records[i]) out.push(`block record ${i}: ${a.records[i]} vs ${b.records[i]}`);
  }
  return out;
}

/** Throw, listing the differences, unless two runs of one command are identical. */
export function assertSameRun(
  what: string,
  a: RunOutput,
  b: RunOutput,
  ignore: readonly string[] = [],
): void {
  const d = runDifferences(a, b, ignore);
  console.log(`  ${what}: ${a.files.size} files, ${a.records.length} block records, ${d.length} differences`);
  if (d.length) throw new Error(`${what}: the two runs differ:\n  ${d.join("\n  ")}`);
}

/** Run the same command twice at once (so each run's timing disturbs the other's) and compare. */
export async function twice(
  what: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<RunOutput> {
  const [a, b] = await Promise.all([quantizeCli(args, env), quantizeCli(args, env)]);
  assertSameRun(what, a, b);
  return a;
}
