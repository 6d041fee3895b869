/**
 * Whole-model GGUF Q4_K_M (issue 12, part 4): our exporter against llama.cpp's llama-quantize on the
 * same random Llama checkpoint and the same cores, wall time and peak RSS of each.
 *
 *   deno run -A bench/make_random_llama.ts --out /tmp/llama1b --hidden 2048 --intermediate 5632 \
 *     --layers 22 --heads 32 --kv_heads 4 --vocab 32000 --dtype bf16 --tokenizer tests/fixtures/stories260K
 *   deno run -A bench/gguf_whole_model.ts [--model /tmp/llama1b] [--out /tmp/gguf-whole] [--threads 2]
 *
 * Runs, each under /usr/bin/time -v: (1) ours, `quantize --iters 0 --disable_opt_rtn --format
 * gguf:q4_k_m --device cpu` (--threads: no calibration, AutoRound's K-quant searches without an
 * importance matrix); (2) ours, `--format gguf:f16` (the conversion); (3) llama-quantize of that F16
 * file to Q4_K_M with --threads (ggml's quantizers, no imatrix; /tmp/ggml from
 * ../shared/tools/ggml/build.sh). Floor: llama-quantize's time; the goal is ours within 2× of it.
 */
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";

const FLAGS: FlagSpec = { model: { type: "string" }, out: { type: "string" }, threads: { type: "string" } };
const { values: f } = parseFlags(Deno.args, FLAGS);
const model = String(f.model ?? "/tmp/llama1b"), out = String(f.out ?? "/tmp/gguf-whole");
const threads = String(f.threads ?? "2");
const LLAMA_QUANTIZE = "/tmp/ggml/llama.cpp/build/bin/llama-quantize";
const main = new URL("../main.ts", import.meta.url).pathname;

/** Run a command under /usr/bin/time -v: wall seconds and peak RSS bytes. */
async function timed(cmd: string[]): Promise<{ wall: number; rss: number }> {
  const r = await new Deno.Command("/usr/bin/time", {
    args: ["-v", ...cmd],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const err = new TextDecoder().decode(r.stderr);
  if (!r.success) throw new Error(`${cmd.join(" ")} failed:\n${err.slice(-3000)}`);
  const wall = /Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)/.exec(err)!;
  const rss = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(err)![1]) * 1024;
  return { wall: Number(wall[1] ?? 0) * 3600 + Number(wall[2]) * 60 + Number(wall[3]), rss };
}

const ours = (format: string, dir: string) => [
  Deno.execPath(),
  "run",
  "-A",
  main,
  "quantize",
  "--model",
  model,
  "--iters",
  "0",
  "--disable_opt_rtn",
  "--format",
  format,
  "--device",
  "cpu",
  "--threads",
  threads,
  "--output_dir",
  dir,
];

await Deno.remove(out, { recursive: true }).catch(() => {});
const q4 = await timed(ours("gguf:q4_k_m", `${out}/q4_k_m`));
const f16 = await timed(ours("gguf:f16", `${out}/f16`));
const f16File = [...Deno.readDirSync(`${out}/f16`)].find((e) => e.name.endsWith(".gguf"))!.name;
let lq: { wall: number; rss: number } | undefined;
try {
  await Deno.stat(LLAMA_QUANTIZE);
  lq = await timed([LLAMA_QUANTIZE, `${out}/f16/${f16File}`, `${out}/llama-q4_k_m.gguf`, "Q4_K_M", threads]);
} catch (e) {
  console.log(`llama-quantize not run: ${(e as Error).message.split("\n")[0]}`);
}
const size = (d: string) =>
  [...Deno.readDirSync(d)].filter((e) => e.name.endsWith(".gguf"))
    .reduce((a, e) => a + Deno.statSync(`${d}/${e.name}`).size, 0);
const gb = (x: number) => (x / 1e9).toFixed(2) + " GB";
console.log(`\n| run | wall | peak RSS | output |\n|---|---|---|---|`);
console.log(
  `| ours gguf:q4_k_m (${threads} threads) | ${q4.wall.toFixed(1)} s | ${gb(q4.rss)} | ${
    gb(size(`${out}/q4_k_m`))
  } |`,
);
console.log(
  `| ours gguf:f16 (conversion, ${threads} threads) | ${f16.wall.toFixed(1)} s | ${gb(f16.rss)} | ${
    gb(size(`${out}/f16`))
  } |`,
);
if (lq) {
  const lqSize = Deno.statSync(`${out}/llama-q4_k_m.gguf`).size;
  console.log(
    `| llama-quantize F16 → Q4_K_M (${threads} threads) | ${lq.wall.toFixed(1)} s | ${gb(lq.rss)} | ${
      gb(lqSize)
    } |`,
  );
  console.log(`| ours / llama-quantize | ${(q4.wall / lq.wall).toFixed(1)}× | | |`);
  console.log(
    `| ours / (gguf:f16 + llama-quantize) | ${(q4.wall / (f16.wall + lq.wall)).toFixed(1)}× | | |`,
  );
}
