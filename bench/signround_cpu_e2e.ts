/**
 * End-to-end CPU SignRound: the default recipe (200 iterations, 128 samples × 256 tokens, W4G32) on
 * stories260K with the eval.txt perplexity before and after, as one `autoround quantize` process per
 * configuration, timed by `/usr/bin/time -v` (wall, user + system CPU, peak RSS).
 *
 *   deno run -A bench/signround_cpu_e2e.ts [--configs 1:none,1:auto,2:none,2:auto] [--repeat 2] [--iters 200]
 *
 * A config is `threads:blas` (`blas` = AUTOROUND_BLAS: auto, none or a library path). Runs are
 * interleaved (config order repeated) so that load from other processes spreads over all of them; the
 * table shows each config's fastest run, and the floor of a threaded config: the CPU time of the
 * one-thread run with the same BLAS setting divided by the thread count.
 */
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";

const FLAGS: FlagSpec = {
  configs: { type: "string" },
  repeat: { type: "string" },
  iters: { type: "string" },
};
const { values: f } = parseFlags(Deno.args, FLAGS);
const configs = String(f.configs ?? "1:none,1:auto,2:none,2:auto").split(",").map((c) => {
  const [threads, blas] = c.split(":");
  return { threads: Number(threads), blas: blas ?? "auto" };
});
const repeat = Number(f.repeat ?? 2), iters = Number(f.iters ?? 200);
const root = new URL("..", import.meta.url).pathname;

interface Run {
  wall: number;
  cpu: number;
  rssMiB: number;
  ppl: string;
}

async function runOnce(threads: number, blas: string): Promise<Run> {
  const out = await Deno.makeTempDir();
  const args = [
    "-v",
    Deno.execPath(),
    "run",
    "-A",
    `${root}main.ts`,
    "quantize",
    ...["--model", `${root}tests/fixtures/stories260K`, "--scheme", "W4A16", "--group_size", "32"],
    ...["--dataset", `${root}tests/fixtures/tinystories-calib.jsonl`, "--seqlen", "256", "--nsamples", "128"],
    ...[
      "--iters",
      String(iters),
      "--device",
      "cpu",
      "--threads",
      String(threads),
      "--output_dir",
      `${out}/q`,
    ],
    ...["--eval_text", `${root}tests/fixtures/stories260K/eval.txt`, "--eval_seqlen", "256", "--quiet"],
  ];
  try {
    const r = await new Deno.Command("/usr/bin/time", {
      args,
      env: { AUTOROUND_BLAS: blas },
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const err = new TextDecoder().decode(r.stderr), stdout = new TextDecoder().decode(r.stdout);
    if (!r.success) throw new Error(`quantize failed:\n${err}`);
    const num = (re: RegExp) => Number(re.exec(err)?.[1] ?? NaN);
    const [m, s] =
      (/Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+(?:\.\d+)?)/.exec(err) ?? [])
        .slice(1);
    return {
      wall: Number(m ?? 0) * 60 + Number(s),
      cpu: num(/User time \(seconds\): ([\d.]+)/) + num(/System time \(seconds\): ([\d.]+)/),
      rssMiB: num(/Maximum resident set size \(kbytes\): (\d+)/) / 1024,
      ppl: /→ quantized ([\d.]+)/.exec(stdout)?.[1] ?? "?",
    };
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

const best = new Map<string, Run>();
for (let r = 0; r < repeat; r++) {
  for (const c of configs) {
    const key = `${c.threads}:${c.blas}`;
    const run = await runOnce(c.threads, c.blas);
    console.error(
      `${key} run ${r + 1}: ${run.wall.toFixed(1)} s wall, ${run.cpu.toFixed(1)} s CPU, ${
        run.rssMiB.toFixed(0)
      } MiB, ppl ${run.ppl}`,
    );
    const b = best.get(key);
    if (!b || run.wall < b.wall) best.set(key, run);
  }
}
console.log(
  `stories260K SignRound, default recipe (${iters} iterations), W4G32, 128 × 256; min of ${repeat} runs`,
);
console.log(
  "| threads | BLAS | wall s | CPU s | floor s (1-thread CPU / threads) | peak RSS MiB | ppl after |",
);
console.log("| --- | --- | --- | --- | --- | --- | --- |");
for (const c of configs) {
  const r = best.get(`${c.threads}:${c.blas}`)!;
  const single = best.get(`1:${c.blas}`)?.cpu;
  const floor = single && c.threads > 1 ? (single / c.threads).toFixed(1) : "–";
  console.log(
    `| ${c.threads} | ${c.blas} | ${r.wall.toFixed(1)} | ${r.cpu.toFixed(1)} | ${floor} | ${
      r.rssMiB.toFixed(0)
    } | ${r.ppl} |`,
  );
}
