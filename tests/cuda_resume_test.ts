/**
 * `quantize --resume` on CUDA (skipped, with the reason printed, where no CUDA device opens): runs
 * on the GPU killed with SIGKILL at random moments and resumed end with the uninterrupted run's
 * bytes — which also shows that the replayed quantized stream (journaled codes, dequantized on the
 * host, rounded to bf16) equals the fake-quantized weights the CUDA kernels gave the original run.
 */
import { assert } from "./assert.ts";
import { cudaTest } from "./cuda_helpers.ts";
import { killResumeCases } from "./resume_kill.ts";

cudaTest("resume: 20 runs killed at random moments resume to the uninterrupted run's bytes", async () => {
  const root = await Deno.makeTempDir({ prefix: "autoround-cuda-resume-" });
  try {
    // 400 iterations: on the GPU tuning must outlast the program's start for kills to land in it.
    const r = await killResumeCases(root, "cuda", 20, 15, ["--iters", "400"]);
    console.log(
      `reference run ${r.reference.toFixed(1)} s; kills by phase: ${
        [...r.phases].map(([k, v]) => `${k} ×${v}`).join(", ")
      }; ${r.replayed} resumes replayed finished blocks`,
    );
    assert(r.replayed >= 5, `only ${r.replayed} resumes replayed journaled blocks`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
