/**
 * Seconds per SignRound block-iteration on the CPU backend for stories260K.
 *
 *   deno run -A bench/signround_cpu.ts [--iters 20] [--seqlen 256] [--batch 8] [--threads N] [--blas auto|none|PATH]
 *
 * Runs the quantize pipeline twice on the same calibration set (128 samples): with `--iters N` and
 * with 0 (RTN), and takes the per-block difference / N, so the per-block fp and quantized forward
 * passes are not counted. Prints the FLOP count of one block-iteration (forward + weight-gradient
 * and input-gradient GEMMs of the 7 Linears, attention forward and backward) and the rate reached.
 * `--threads` (default: every core) and `--blas` set up the CPU backend as `--threads` and
 * `AUTOROUND_BLAS` do for the CLI.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { silentLog } from "../src/log.ts";
import type { BlockReport } from "../src/quant/pipeline.ts";
import { quantize } from "../src/quant/quantize.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";

const FLAGS: FlagSpec = {
  iters: { type: "string" },
  seqlen: { type: "string" },
  batch: { type: "string" },
  threads: { type: "string" },
  blas: { type: "string" },
};
const { values: f } = parseFlags(Deno.args, FLAGS);
const iters = Number(f.iters ?? 20), T = Number(f.seqlen ?? 256), B = Number(f.batch ?? 8);
using be = await CpuBackend.create({
  threads: f.threads ? Number(f.threads) : undefined,
  blas: f.blas ? String(f.blas) : undefined,
});
const model = new URL("../tests/fixtures/stories260K", import.meta.url).pathname;
const dataset = new URL("../tests/fixtures/tinystories-calib.jsonl", import.meta.url).pathname;

async function blocks(n: number): Promise<BlockReport[]> {
  const out = await Deno.makeTempDir();
  const rs: BlockReport[] = [];
  try {
    await quantize({
      model,
      outputDir: `${out}/q`,
      formats: ["auto_round"],
      scheme: resolveScheme("W4A16", { groupSize: 32 }),
      iters: n,
      nsamples: 128,
      seqlen: T,
      batchSize: B,
      dataset,
      disableOptRtn: true,
      maxShardSize: 5e9,
      backend: be,
      onBlock: (r) => rs.push(r),
    }, silentLog);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
  return rs;
}

const tuned = await blocks(iters), base = await blocks(0);
const perIter = tuned.map((r, i) => (r.seconds - base[i].seconds) / iters);
// FLOPs: stories260K block, 4 quantized attention Linears + 3 MLP Linears (16-bit, still in the
// forward and the backward's input-gradient path; their weight gradients are skipped).
const H = 64, I = 172, D = 8, nH = 8, nKv = 4, M = B * T;
const attnW = H * nH * D * 2 + 2 * H * nKv * D, mlpW = 3 * H * I;
const fwd = 2 * M * (attnW + mlpW);
const wgrad = 2 * M * attnW; // dW only for the quantized Linears
const igrad = 2 * M * (mlpW + H * nH * D); // dX through down/gate/up and o_proj (none for q/k/v)
const attn = 2 * 2 * B * nH * T * T * D; // causal: half of S=QKᵀ and P·V, forward
const flops = fwd + wgrad + igrad + attn * 3.5; // backward ≈ 2.5× forward for attention
const mean = perIter.reduce((a, b) => a + b, 0) / perIter.length;
console.log(`stories260K SignRound on ${be.device}: batch ${B} × ${T} tokens, ${iters} iterations per block`);
console.log(`| block | s/iteration |\n|---|---|`);
perIter.forEach((s, i) => console.log(`| ${i} | ${s.toFixed(3)} |`));
console.log(`| mean | ${mean.toFixed(3)} |`);
console.log(
  `≈${(flops / 1e9).toFixed(2)} GFLOP per block-iteration → ${
    (flops / mean / 1e9).toFixed(2)
  } GFLOP/s (${be.threads} thread${be.threads > 1 ? "s" : ""})`,
);
