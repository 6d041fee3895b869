/**
 * The SignRound loop (src/quant/signround.ts, written once against Backend) through the whole
 * quantize pipeline on the CUDA backend, with the real stories260K model at CI size (16 samples × 64
 * tokens, W2G32): the captured iteration (one CUDA graph replayed per iteration, device-side sample
 * indices and learning rates) gives bit for bit what eager execution of the same loop gives, and so
 * do activations kept in host memory (--low_gpu_mem_usage); in f32
 * compute the first block's starting loss equals the CPU reference's to f32 rounding and the tuning
 * ends near the CPU's; in bf16 (the default, autocast-like) every block's loss drops; gradient
 * accumulation, batches of unequal token counts and host-spilled activations (eager paths) run.
 */
import type { Backend } from "../src/backend/backend.ts";
import type { CudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import type { QuantizeOptions } from "../src/quant/quantize.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";
import { cpu, cuda, cudaTest, expectClose, expectEqual } from "./cuda_helpers.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;

/** Packed samples: every batch has the same number of counted tokens, so tuneBlock captures. */
function run(be: Backend, opts: Partial<QuantizeOptions> = {}) {
  return quantizeStoriesReports(be, { dataset: FIX + "tinystories-calib.jsonl:concat=true", ...opts });
}

/** The same backend without capture(): tuneBlock then runs every iteration eagerly. */
function eagerView(be: CudaBackend): Backend {
  const view = Object.create(be) as CudaBackend;
  Object.defineProperty(view, "capture", { value: undefined });
  return view;
}

cudaTest(
  "SignRound: the captured iteration equals eager execution of the same loop bit for bit",
  async () => {
    const be = cuda("bf16");
    let captures = 0;
    const counting = Object.create(be) as CudaBackend;
    Object.defineProperty(counting, "capture", {
      value: (fn: () => void) => (captures++, be.capture(fn)),
    });
    const graphed = await run(counting);
    const eager = await run(eagerView(be));
    if (captures !== 5) throw new Error(`expected one capture per block (5), got ${captures}`);
    const summary = (r: typeof graphed) =>
      r.blocks.map((b) => [b.lossStart!, b.lossBest!, b.bestIter!]).flat();
    expectEqual("block losses and best iterations", summary(graphed), summary(eager));
    for (const [name, v] of graphed.fake) expectEqual(`tuned ${name}`, v, eager.fake.get(name)!);
    // Activations in host memory (bf16 bytes, each sample written into its batch rows): the same
    // values reach the same kernels, so the same bits come out.
    const spilled = await run(be, { lowGpuMemUsage: true });
    expectEqual("block losses, host-spilled activations", summary(spilled), summary(graphed));
    for (const [name, v] of graphed.fake) expectEqual(`spilled ${name}`, spilled.fake.get(name)!, v);
  },
);

cudaTest("SignRound in f32 compute follows the CPU reference; in bf16 every block's loss drops", async () => {
  const g32 = await run(cuda("f32")), c = await run(cpu);
  // Block 0 sees identical inputs and identical initial weights: the first loss is one f32 forward.
  expectClose("block 0 loss at iteration 0, CUDA f32 vs CPU", [g32.blocks[0].lossStart!], [
    c.blocks[0].lossStart!,
  ], 1e-5);
  for (const [i, b] of g32.blocks.entries()) {
    const ref = c.blocks[i];
    console.log(
      `  block ${i}: CUDA f32 ${b.lossStart} → ${b.lossBest}, CPU ${ref.lossStart} → ${ref.lossBest}`,
    );
    // Sign-SGD amplifies rounding differences (a gradient sign flips near zero): a few % by the end.
    expectClose(`block ${i} best loss, CUDA f32 vs CPU`, [b.lossBest!], [ref.lossBest!], 0.05);
  }
  const g16 = await run(cuda("bf16"));
  for (const [i, b] of g16.blocks.entries()) {
    console.log(`  block ${i} bf16: ${b.lossStart} → ${b.lossBest} (iter ${b.bestIter})`);
    if (!(b.lossBest! < b.lossStart!)) throw new Error(`block ${i}: bf16 tuning did not lower the loss`);
  }
});

cudaTest(
  "SignRound with gradient accumulation, unequal batches and host-spilled activations on CUDA",
  async () => {
    const be = cuda("bf16");
    const variants: Partial<QuantizeOptions>[] = [
      { gradientAccumulateSteps: 2, batchSize: 4 }, // captured; micro-batches gather through index views
      { dataset: FIX + "tinystories-calib.jsonl" }, // padded samples: batches differ, eager iterations
      { lowGpuMemUsage: true }, // activations in host memory: eager, uploads per batch
    ];
    for (const opts of variants) {
      const r = await run(be, { iters: 4, nsamples: 8, ...opts });
      for (const b of r.blocks) {
        if (!(Number.isFinite(b.lossBest!) && b.lossBest! <= b.lossStart!)) {
          throw new Error(`${JSON.stringify(opts)} block ${b.block}: ${b.lossStart} → ${b.lossBest}`);
        }
      }
      console.log(
        `  ${JSON.stringify(opts)}: ${r.blocks.map((b) => b.lossBest!.toExponential(3)).join(", ")}`,
      );
    }
  },
);
