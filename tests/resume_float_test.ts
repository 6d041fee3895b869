/**
 * `--resume` with float and activation-quantized schemes: a run killed outright after its first
 * journaled block continues to the uninterrupted run's bytes. The journal keeps each float Linear's
 * elements, scales and fake-quantized weight, so the quantized stream (activations quantized too)
 * is rebuilt exactly and tuning continues from the same state (NVFP4: static global scales, fused).
 */
import { assert, assertEquals, fixture } from "./assert.ts";
import { assertSameTree, killAfterFirstBlock, readTree, runQuantize } from "./resume_kill.ts";
import { join } from "../src/std/path.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function args(out: string, scheme: string, format: string): string[] {
  return [
    "run",
    "-A",
    MAIN,
    "quantize",
    "--model",
    fixture("stories260K"),
    "--scheme",
    scheme,
    "--iters",
    "20",
    "--dataset",
    fixture("tinystories-calib.jsonl"),
    "--seqlen",
    "128",
    "--nsamples",
    "16",
    "--batch_size",
    "4",
    "--format",
    format,
    "--device",
    "cpu",
    "--output_dir",
    out,
  ];
}

for (const [scheme, format] of [["NVFP4", "llm_compressor,fake"], ["FP8_STATIC", "auto_round"]]) {
  Deno.test(`resume: ${scheme} killed after its first block resumes to the uninterrupted run's bytes`, async () => {
    const root = await Deno.makeTempDir({ prefix: "autoround-resume-float-" });
    try {
      const ref = await runQuantize(args(join(root, "ref"), scheme, format));
      assertEquals(ref.code, 0, ref.stderr);
      const out = join(root, "out"), a = args(out, scheme, format);
      assert(
        await killAfterFirstBlock(a, `${out}.partial/.journal`),
        "the run ended before it could be killed",
      );
      const resumed = await runQuantize([...a, "--resume"]);
      assertEquals(resumed.code, 0, resumed.stderr);
      assert(/resuming: blocks? 1/.test(resumed.stderr), resumed.stderr);
      assertSameTree(await readTree(out), await readTree(join(root, "ref")), scheme);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}
