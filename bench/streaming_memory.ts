/**
 * Streaming memory: quantizing must hold about one block in host memory, not the model.
 *
 *   deno run -A bench/streaming_memory.ts [--dir /tmp/ar-bench] [--layers 22] [--keep]
 *
 * Writes a random-initialised Llama checkpoint of ≥ 2 GB (bf16, sharded) with our own writer, then
 * runs `autoround quantize` (plain RTN W4A16, CPU) on it in a subprocess while sampling the child's
 * peak RSS (VmHWM in /proc/<pid>/status), and prints peak RSS against checkpoint and block size.
 * The floor it aims at: one block's weights in f32 on the CPU backend plus the output buffers.
 */
import { makeRandomLlama } from "./make_random_llama.ts";
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";

const FLAGS: FlagSpec = { dir: { type: "string" }, layers: { type: "string" }, keep: { type: "boolean" } };
const { values: f } = parseFlags(Deno.args, FLAGS);
const dir = String(f.dir ?? "/tmp/ar-bench");
const shape = {
  hidden: 2048,
  intermediate: 5632,
  layers: Number(f.layers ?? 22),
  heads: 32,
  kvHeads: 4,
  vocab: 32000,
};

async function peakOf(pid: number): Promise<number> {
  try {
    const s = await Deno.readTextFile(`/proc/${pid}/status`);
    const m = /VmHWM:\s+(\d+) kB/.exec(s);
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function dirBytes(d: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(d)) if (e.isFile) n += (await Deno.stat(`${d}/${e.name}`)).size;
  return n;
}

await Deno.remove(dir, { recursive: true }).catch(() => {});
const t0 = performance.now();
const made = await makeRandomLlama({ out: `${dir}/model`, ...shape, maxShardSize: 5e8 });
const genSec = (performance.now() - t0) / 1000;

const main = new URL("../main.ts", import.meta.url).pathname;
const child = new Deno.Command(Deno.execPath(), {
  args: [
    "run",
    "-A",
    main,
    "quantize",
    "--model",
    `${dir}/model`,
    "--scheme",
    "W4A16",
    "--iters",
    "0",
    "--disable_opt_rtn",
    "--output_dir",
    `${dir}/out`,
    "--device",
    "cpu",
    "--max_shard_size",
    "1GB",
  ],
  stdout: "inherit",
  stderr: "piped",
}).spawn();
let peak = 0;
const t1 = performance.now();
const poll = setInterval(async () => (peak = Math.max(peak, await peakOf(child.pid))), 50);
const status = await child.status;
clearInterval(poll);
const qSec = (performance.now() - t1) / 1000;
const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
if (!status.success) {
  console.error(stderr);
  Deno.exit(1);
}
const H = shape.hidden, I = shape.intermediate, D = H / shape.heads;
const blockParams = H * shape.heads * D * 2 + 2 * H * shape.kvHeads * D + 3 * H * I + 2 * H;
const outBytes = await dirBytes(`${dir}/out`);
const gb = (x: number) => (x / 1e9).toFixed(2) + " GB";
console.log(`\n| what | value |\n|---|---|`);
console.log(
  `| checkpoint (bf16, ${shape.layers} blocks, ${(made.params / 1e9).toFixed(2)}B params) | ${
    gb(made.bytes)
  } |`,
);
console.log(
  `| one block: bf16 on disk / f32 on the CPU backend | ${gb(blockParams * 2)} / ${gb(blockParams * 4)} |`,
);
console.log(`| embeddings + lm_head (bf16, copied through) | ${gb(2 * shape.vocab * H * 2)} |`);
console.log(`| **peak RSS of autoround quantize** | **${gb(peak)}** |`);
console.log(`| peak RSS / checkpoint size | ${(peak / made.bytes).toFixed(2)} |`);
console.log(`| quantize wall time (plain RTN W4A16, CPU) | ${qSec.toFixed(1)} s |`);
console.log(`| output size (auto_round) | ${gb(outBytes)} |`);
console.log(`| checkpoint generation time | ${genSec.toFixed(1)} s |`);
if (!f.keep) await Deno.remove(dir, { recursive: true });
