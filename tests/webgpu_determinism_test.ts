/**
 * Determinism on WebGPU (any adapter, llvmpipe included; skipped with the reason printed where there
 * is none): the same `autoround quantize --device webgpu` command run twice as two processes writes
 * byte-identical files and the same block losses. The WGSL kernels have no atomics (WGSL has no float
 * atomics) and reduce in a fixed order, so `--deterministic` changes nothing here; it is accepted.
 */
import { gpuTest, openGpu } from "./webgpu_helpers.ts";
import { storiesArgs, twice } from "./determinism_helpers.ts";

// Only to learn whether an adapter exists: the runs below are their own processes.
const probe = await openGpu();
probe?.[Symbol.dispose]();

gpuTest("webgpu determinism: the same SignRound quantize twice gives the same bytes", probe, async () => {
  const args = storiesArgs("--device", "webgpu", "--scheme", "W2A16", "--group_size", "32", "--iters", "4");
  await twice("SignRound W2A16 g32 on WebGPU", [...args, "--format", "auto_round,fake", "--deterministic"]);
});
