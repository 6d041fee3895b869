/**
 * Determinism on CUDA (skipped, with the reason printed, where no CUDA device opens). The same
 * `autoround quantize --device cuda` command run twice as two processes at once writes byte-identical
 * files and the same block losses — SignRound, optimized RTN and the device GGUF quantizer, with and
 * without `--deterministic`. Under `--deterministic` every cuBLASLt plan has no split-K and an
 * alignment hint of at most 16 bytes, and keeping the activations on the host (`--low_gpu_mem_usage`,
 * also chosen on its own when free device memory — other processes' business — runs short) changes
 * no bit. Figures the lead records: whether the default and the deterministic runs differ, and which
 * products the heuristic splits by default.
 */
import { createCudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import type { GemmPlan } from "../ffi/cuda/cublaslt.ts";
import { assert, assertEquals } from "./assert.ts";
import { cudaTest } from "./cuda_helpers.ts";
import { assertSameRun, quantizeCli, runDifferences, storiesArgs, twice } from "./determinism_helpers.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";

const signRound = storiesArgs(
  "--device",
  "cuda",
  "--scheme",
  "W2A16",
  "--group_size",
  "32",
  "--iters",
  "12",
  "--format",
  "auto_round,auto_gptq,llm_compressor,fake",
);

cudaTest(
  "the same SignRound quantize twice gives the same bytes, with and without --deterministic",
  async () => {
    const plain = await twice("SignRound, default", signRound);
    const det = await twice("SignRound, --deterministic", [...signRound, "--deterministic"]);
    const d = runDifferences(plain, det);
    // Not asserted: the deterministic products may take other algorithms, so other (equally valid) bits.
    console.log(`  default vs --deterministic: ${d.length} differences${d.length ? `, e.g. ${d[0]}` : ""}`);
  },
);

cudaTest("optimized RTN and the device GGUF quantizer twice give the same bytes", async () => {
  const rtn = storiesArgs("--device", "cuda", "--scheme", "W4A16", "--group_size", "32", "--iters", "0");
  await twice("opt-RTN W4A16 g32", [...rtn, "--format", "auto_round,auto_awq,fake"]);
  for (const extra of [[], ["--deterministic"]]) {
    const gguf = storiesArgs("--device", "cuda", "--iters", "0", "--format", "gguf:q4_k_m", ...extra);
    await twice(`gguf:q4_k_m (opt-RTN on the device) ${extra.join(" ")}`, gguf);
  }
});

cudaTest("--deterministic: activations kept on the host change no bit", async () => {
  const args = [...signRound, "--deterministic"];
  const [device, host] = await Promise.all([
    quantizeCli(args),
    quantizeCli([...args, "--low_gpu_mem_usage"]),
  ]);
  // The configs record the flag itself (low_gpu_mem_usage: true); the tensors and losses must not move.
  const configs = ["config.json", "quantization_config.json", "quantize_config.json"];
  const ignore = [...device.files.keys()].filter((f) => configs.includes(f.split("/").pop()!));
  assertSameRun("device vs host activation stores", device, host, ignore);
  // Without the pin, print what happens (an algorithm may follow where a batch starts in its store).
  const [d0, h0] = await Promise.all([
    quantizeCli(signRound),
    quantizeCli([...signRound, "--low_gpu_mem_usage"]),
  ]);
  const d = runDifferences(d0, h0, ignore);
  console.log(`  default: device vs host stores: ${d.length} differences${d.length ? `, e.g. ${d[0]}` : ""}`);
});

/** One line per plan: the product's shape and what the heuristic chose. */
function describePlan(p: GemmPlan): string {
  const s = p.shape, c = p.config;
  return `m ${s.m} n ${s.n} k ${s.k} ${s.ab}→${s.cd} align ${s.alignA}/${s.alignB}/${s.alignC}: algo ${c.algoId} ` +
    `tile ${c.tileId} stages ${c.stagesId} split-K ${c.splitK} (${c.reductionScheme})`;
}

cudaTest(
  "--deterministic: no cuBLASLt plan splits K, and every alignment hint is at most 16 bytes",
  async () => {
    for (const deterministic of [false, true]) {
      using be = createCudaBackend({ deterministic });
      await quantizeStoriesReports(be);
      const plans = be.rt.blas.planList();
      assert(plans.length > 0, "the run multiplied through cuBLASLt");
      const split = plans.filter((p) => p.config.splitK !== 1 || p.config.reductionScheme !== "none");
      console.log(
        `  ${deterministic ? "--deterministic" : "default"}: ${plans.length} plans, ${split.length} split K`,
      );
      for (const p of (deterministic ? plans : split)) console.log(`    ${describePlan(p)}`);
      if (!deterministic) continue;
      assertEquals(split.map(describePlan), []);
      const wide = plans.filter((p) => Math.max(p.shape.alignA, p.shape.alignB, p.shape.alignC) > 16);
      assertEquals(wide.map(describePlan), []);
      assert(plans.every((p) => p.shape.noSplitK), "every plan was asked for no split-K");
    }
  },
);
