/**
 * W5A16 and W6A16 (auto-round schemes.py: int, sym, group 128): resolved by name; quantized on the CPU
 * (RTN and SignRound) their fake-quantized weights take at most 2^bits levels per group and land
 * between W4's and W8's error on stories260K; the integer packing formats refuse them with one
 * usage line (auto-round exports them only as fake or MLX), `fake` writes them.
 */
import { assert, assertEquals, fixture } from "./assert.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";
import { assertOneErrorLine, cli } from "./cli_helpers.ts";

Deno.test("W5A16 and W6A16 resolve to auto-round's presets", () => {
  assertEquals(resolveScheme("W5A16"), { bits: 5, groupSize: 128, sym: true, dataType: "int" });
  assertEquals(resolveScheme("w6a16"), { bits: 6, groupSize: 128, sym: true, dataType: "int" });
});

/** Mean squared error of each run's fake weights against the checkpoint's, over all quantized Linears. */
async function errorOf(fake: Map<string, Float32Array>): Promise<number> {
  using ckpt = await openCheckpoint(fixture("stories260K"));
  let se = 0, n = 0;
  for (const [name, q] of fake) {
    const w = await ckpt.weights.readF32(name);
    for (let i = 0; i < w.length; i++) se += (q[i] - w[i]) ** 2;
    n += w.length;
  }
  return se / n;
}

/** Most distinct values in one group of 32 along a row, over every fake weight. */
function levelsPerGroup(fake: Map<string, Float32Array>, g: number): number {
  let most = 0;
  for (const v of fake.values()) {
    for (let i = 0; i < v.length; i += g) most = Math.max(most, new Set(v.subarray(i, i + g)).size);
  }
  return most;
}

Deno.test("W5/W6: at most 2^bits levels per group, error between W4's and W8's (RTN and SignRound)", async () => {
  using be = new CpuBackend();
  for (const iters of [0, 4]) {
    const err: Record<number, number> = {};
    for (const bits of [4, 5, 6, 8]) {
      const scheme = resolveScheme(`W${bits}A16`, { groupSize: 32 });
      const r = await quantizeStoriesReports(be, { scheme, iters, formats: ["fake"] });
      assert(r.fake.size > 0, "no quantized Linear");
      const levels = levelsPerGroup(r.fake, 32);
      assert(levels <= 2 ** bits, `W${bits} iters ${iters}: ${levels} levels in a group`);
      if (bits >= 5) assert(levels > 16, `W${bits} iters ${iters}: only ${levels} levels: not ${bits}-bit`);
      err[bits] = await errorOf(r.fake);
    }
    console.log(`  iters ${iters}: weight MSE ${JSON.stringify(err)}`);
    assert(err[4] > err[5] && err[5] > err[6] && err[6] > err[8], `iters ${iters}: ${JSON.stringify(err)}`);
    // Each extra bit halves the step: the error drops by about 4× (measured: 3.6-4.1×).
    assert(err[4] / err[5] > 2.5 && err[5] / err[6] > 2.5, `iters ${iters}: ${JSON.stringify(err)}`);
  }
});

Deno.test("W5A16 through the CLI: packing formats refuse it with one usage line, fake writes it", async () => {
  const out = await Deno.makeTempDir({ prefix: "autoround-w5-" });
  try {
    const args = [
      "quantize",
      "--model",
      fixture("stories260K"),
      "--scheme",
      "W5A16",
      "--group_size",
      "32",
      "--iters",
      "0",
      "--dataset",
      fixture("tinystories-calib.jsonl"),
      "--nsamples",
      "8",
      "--seqlen",
      "64",
    ];
    for (const fmt of ["auto_round", "auto_gptq", "llm_compressor"]) {
      const r = await cli([...args, "--format", fmt, "--output_dir", `${out}/${fmt}`]);
      assertEquals(r.code, 2, r.stderr);
      assertOneErrorLine(
        r.stderr,
        `--format ${fmt} packs 2, 3, 4, 8-bit integers`,
        "5 bits",
        "--format fake",
      );
    }
    const ok = await cli([...args, "--format", "fake", "--output_dir", `${out}/fake`]);
    assertEquals(ok.code, 0, ok.stderr);
    // fake stores the dequantized weights (no quantization_config, as auto-round's fake format).
    using q = await openCheckpoint(`${out}/fake`);
    const w = await q.weights.readF32("model.layers.0.mlp.down_proj.weight");
    const levels = levelsPerGroup(new Map([["down", w]]), 32);
    assert(levels <= 32 && levels > 16, `${levels} levels in a group of the written 5-bit weight`);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
