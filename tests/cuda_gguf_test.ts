/**
 * The CUDA GGUF quantizer (ffi/cuda/gguf.cu) against the host reference (src/qmath/gguf/, through the
 * CPU backend): every type and mode on random weights with awkward groups (f32 and bf16 storage), on
 * stories260K's weights, and on a larger random tensor where the bound of tests/gguf_device_cases.ts
 * (at most 1 in 10⁴ blocks differ, each within 1e-6 of the reference's weighted error) is not
 * trivially "no difference". Runs on a CUDA machine (`AUTOROUND_REQUIRE_GPU=1 deno test -A
 * tests/cuda_gguf_test.ts`); skips with the reason elsewhere. Mismatch counts are printed.
 */
import { cuda, cudaTest, freshSeed } from "./cuda_helpers.ts";
import {
  type BlockDiff,
  deviceVsHost,
  expectBlocks,
  GGUF_TYPES,
  MODES,
  randomImatrix,
  randomWeights,
  storiesWeights,
} from "./gguf_device_cases.ts";

function report(label: string, d: BlockDiff): void {
  console.log(`  ${label}: ${d.differ} of ${d.blocks} blocks differ (worst ${d.worstRel.toExponential(2)})`);
  expectBlocks(label, d);
}

cudaTest("GGUF: every type and mode equals the host on random weights (f32 and bf16 storage)", async () => {
  const be = cuda(), seed = freshSeed();
  const n = 8, k = 512, w = randomWeights(n, k, seed), im = randomImatrix(k, seed + 1);
  for (const dtype of ["f32", "bf16"] as const) {
    for (const t of GGUF_TYPES) {
      for (const m of MODES) {
        const d = await deviceVsHost(be, t, w, n, k, m.opts, m.imatrix ? im : undefined, dtype);
        report(`random ${dtype} ${t} ${m.name} (seed ${seed})`, d);
      }
    }
  }
});

cudaTest("GGUF: every type equals the host on stories260K's weights, with and without imatrix", async () => {
  const be = cuda(), { w, n, k } = await storiesWeights(), im = randomImatrix(k, 5);
  for (const t of GGUF_TYPES) {
    for (const m of MODES.slice(0, 2)) {
      report(
        `stories260K ${t} ${m.name}`,
        await deviceVsHost(be, t, w, n, k, m.opts, m.imatrix ? im : undefined),
      );
    }
  }
});

cudaTest("GGUF: a [256, 4096] random weight with an imatrix, every type", async () => {
  const be = cuda(), seed = freshSeed();
  const n = 256, k = 4096, w = randomWeights(n, k, seed), im = randomImatrix(k, seed + 1);
  for (const t of GGUF_TYPES) {
    report(
      `[256, 4096] ${t} opt-RTN + imatrix (seed ${seed})`,
      await deviceVsHost(be, t, w, n, k, { optRtn: true }, im),
    );
  }
});
