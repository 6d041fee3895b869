/**
 * Kill-and-resume harness shared by the CPU and CUDA resume tests: real `quantize` processes are
 * killed with SIGKILL at random moments, continued with `--resume`, and their output compared byte
 * for byte with an uninterrupted run's.
 */
import { PyRandom } from "../src/io/pyrandom.ts";
import { join } from "../src/std/path.ts";
import { assert, assertEquals, fixture } from "./assert.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** The quantize command under test (stories260K, SignRound, three formats). */
export function quantizeArgs(out: string, device: string, extra: string[] = []): string[] {
  return [
    "run",
    "-A",
    MAIN,
    "quantize",
    "--model",
    fixture("stories260K"),
    "--scheme",
    "W4A16",
    "--group_size",
    "32",
    "--iters",
    "30",
    "--dataset",
    fixture("tinystories-calib.jsonl"),
    "--seqlen",
    "128",
    "--nsamples",
    "16",
    "--batch_size",
    "4",
    "--format",
    "auto_round,auto_gptq,fake",
    "--device",
    device,
    "--output_dir",
    out,
    ...extra,
  ];
}

/**
 * Run to completion; returns exit code, stderr, the wall time and when the run's work began (the
 * "scheme:" line, printed once the model, calibration and device are ready).
 */
export async function runQuantize(
  args: string[],
): Promise<{ code: number; stderr: string; seconds: number; workStart: number }> {
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).spawn();
  let stderr = "", workStart = 0;
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    stderr += chunk;
    if (!workStart && stderr.includes("scheme:")) workStart = (performance.now() - t0) / 1000;
  }
  const { code } = await child.status;
  return { code, stderr, seconds: (performance.now() - t0) / 1000, workStart };
}

/** Start a run and SIGKILL it after `ms`; returns what it printed before dying. */
export async function killAfter(args: string[], ms: number): Promise<{ killed: boolean; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "piped" }).spawn();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, ms);
  const o = await child.output();
  clearTimeout(timer);
  return { killed: o.signal === "SIGKILL", stderr: new TextDecoder().decode(o.stderr) };
}

/** Every file under `dir` (relative path → bytes). */
export async function readTree(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  const walk = async (d: string, rel: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(join(d, e.name), rel + e.name + "/");
      else files.set(rel + e.name, await Deno.readFile(join(d, e.name)));
    }
  };
  await walk(dir, "");
  return files;
}

/** Assert two trees have the same file names and bytes; returns the number of files. */
export function assertSameTree(
  got: Map<string, Uint8Array>,
  want: Map<string, Uint8Array>,
  what: string,
): number {
  assertEquals([...got.keys()].sort(), [...want.keys()].sort(), `${what}: file names`);
  for (const [name, bytes] of want) {
    const g = got.get(name)!;
    let differ = g.length !== bytes.length ? -1 : 0;
    for (let i = 0; i < bytes.length && differ === 0; i++) if (g[i] !== bytes[i]) differ = i + 1;
    assert(differ === 0, `${what}: ${name} differs ${differ < 0 ? "in length" : `at byte ${differ - 1}`}`);
  }
  return want.size;
}

/** Where a killed run had got to, from its progress lines. */
export function phaseOf(stderr: string, nLayers: number): string {
  if (stderr.includes("wrote ")) return "finished";
  const blocks = [...stderr.matchAll(/block (\d+)\/(\d+)/g)].map((m) => Number(m[1]));
  const last = blocks.length ? Math.max(...blocks) : 0;
  if (last === 0) return "before block 1";
  if (last === nLayers) return "exporting";
  return `tuning block ${last + 1}`;
}

/**
 * `cases` kills at random moments over an uninterrupted run's duration, each continued with
 * --resume (a quarter of them killed a second time while resuming), each output compared with the
 * reference. Returns the phases the kills hit and how many resumes replayed finished blocks.
 */
export async function killResumeCases(
  root: string,
  device: string,
  cases: number,
  seed: number,
  extra: string[] = [],
): Promise<{ phases: Map<string, number>; replayed: number; reference: number }> {
  // Twice: the first run also fills caches (compiled code, kernel modules) the later ones find.
  await runQuantize(quantizeArgs(join(root, "warm"), device, extra));
  const ref = await runQuantize(quantizeArgs(join(root, "ref"), device, extra));
  assertEquals(ref.code, 0, ref.stderr);
  const want = await readTree(join(root, "ref"));
  const rng = new PyRandom(seed);
  const phases = new Map<string, number>();
  let replayed = 0;
  for (let i = 0; i < cases; i++) {
    const out = join(root, `case${i}`);
    const args = quantizeArgs(out, device, extra);
    // Uniform over the run's work (tuning, block boundaries, export), plus a little before it.
    const ms = 1000 * (0.8 * ref.workStart + rng.random() * (ref.seconds - 0.8 * ref.workStart));
    const first = await killAfter(args, ms);
    const phase = first.killed ? phaseOf(first.stderr, 5) : "finished";
    phases.set(phase, (phases.get(phase) ?? 0) + 1);
    if (i % 4 === 3 && first.killed) await killAfter([...args, "--resume"], 300 + rng.random() * 2000);
    const resumed = await runQuantize([...args, "--resume"]);
    assertEquals(
      resumed.code,
      0,
      `case ${i} (killed after ${ms.toFixed(0)} ms, ${phase}): ${resumed.stderr}`,
    );
    if (/resuming: blocks? 1(-\d+)? of/.test(resumed.stderr)) replayed++;
    assertSameTree(await readTree(out), want, `case ${i} (killed after ${ms.toFixed(0)} ms, ${phase})`);
    for await (const e of Deno.readDir(root)) assert(!e.name.endsWith(".partial"), `left behind: ${e.name}`);
    await Deno.remove(out, { recursive: true });
  }
  return { phases, replayed, reference: ref.seconds };
}

/** Start a run and SIGKILL it as soon as its journal holds a finished block. */
export async function killAfterFirstBlock(args: string[], journal: string): Promise<boolean> {
  const child = new Deno.Command(Deno.execPath(), { args, stdout: "null", stderr: "null" }).spawn();
  const hasBlock = async () => {
    try {
      for await (const e of Deno.readDir(journal)) if (/^block-\d+\.bin$/.test(e.name)) return true;
    } catch { /* not created yet */ }
    return false;
  };
  let exited = false;
  const status = child.status.then((s) => (exited = true, s));
  while (!exited && !(await hasBlock())) await new Promise((r) => setTimeout(r, 10));
  if (!exited) child.kill("SIGKILL");
  return (await status).signal === "SIGKILL";
}
