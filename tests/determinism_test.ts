/**
 * Determinism on the CPU: the same `autoround quantize` command, run twice as two processes at once,
 * writes byte-identical files and the same block losses — SignRound and optimized RTN, every export
 * format, the default thread count. The worker pool's kernels also give the same bits on any number
 * of threads (each unit's arithmetic is independent of the cut, src/parallel/pool.ts); a BLAS
 * library's own threads may not (README § Determinism). The comparison itself is shown to catch a
 * single changed byte and a last-bit change of a loss.
 */
import { Cblas } from "../ffi/blas/cblas.ts";
import { assert, assertEquals } from "./assert.ts";
import { quantizeCli, runDifferences, type RunOutput, storiesArgs, twice } from "./determinism_helpers.ts";

const signRound = storiesArgs("--device", "cpu", "--scheme", "W2A16", "--group_size", "32", "--iters", "8");

/** Whether a CBLAS library loads here (the products then go through it). */
function hasBlas(): boolean {
  try {
    Cblas.open()[Symbol.dispose]();
    return true;
  } catch {
    return false;
  }
}

let reference: RunOutput | undefined;

Deno.test("determinism: SignRound twice gives the same bytes in auto_round, auto_gptq, llm_compressor, fake", async () => {
  reference = await twice("SignRound W2A16 g32", [
    ...signRound,
    "--format",
    "auto_round,auto_gptq,llm_compressor,fake",
  ]);
  assertEquals(reference.records.length, 5); // stories260K has 5 blocks
  assert(reference.records.every((r) => JSON.parse(r).lossBest > 0), "every block records its loss");
});

Deno.test("determinism: optimized RTN twice gives the same bytes in auto_round, auto_awq, fake", async () => {
  await twice("opt-RTN W4A16 g32", [
    ...storiesArgs("--device", "cpu", "--scheme", "W4A16", "--group_size", "32", "--iters", "0"),
    "--format",
    "auto_round,auto_awq,fake",
  ]);
});

Deno.test("determinism: GGUF q4_k_m after SignRound and q4_0 after RTN twice give the same bytes", async () => {
  const k = await twice(
    "gguf:q4_k_m, 4 iters",
    storiesArgs("--device", "cpu", "--iters", "4", "--format", "gguf:q4_k_m"),
  );
  assertEquals([...k.files.keys()].filter((f) => f.endsWith(".gguf")).length, 1);
  await twice("gguf:q4_0, RTN", storiesArgs("--device", "cpu", "--iters", "0", "--format", "gguf:q4_0"));
});

Deno.test("determinism: the TypeScript kernels give the same bits on 1 and 2 threads", async () => {
  const env = { AUTOROUND_BLAS: "none" };
  const [one, two] = await Promise.all([
    quantizeCli([...signRound, "--threads", "1"], env),
    quantizeCli([...signRound, "--threads", "2"], env),
  ]);
  assertEquals(runDifferences(one, two), []);
  if (!hasBlas()) {
    console.log("  (no BLAS library here: the BLAS comparison below is skipped)");
    return;
  }
  // The control: OpenBLAS sums the products in another order. The written codes may well absorb
  // that, the losses cannot — so a comparison of files alone would not have seen it.
  const blas = await quantizeCli([...signRound, "--threads", "1"]);
  const d = runDifferences(one, blas);
  console.log(`  TypeScript vs BLAS products: ${d.length} differences, e.g. ${d[0]}`);
  assert(d.some((x) => x.startsWith("block record")), "the block losses show the BLAS library's other order");
});

Deno.test("determinism: the comparison catches one changed byte, a missing file and a last-bit loss change", () => {
  assert(reference, "runs after the SignRound test");
  const r = reference;
  assertEquals(runDifferences(r, r), []);
  const name = "auto_round/model.safetensors";
  const bytes = r.files.get(name)!.slice();
  const at = bytes.length - 5;
  bytes[at] ^= 1;
  const flipped = { files: new Map(r.files).set(name, bytes), records: r.records };
  assertEquals(runDifferences(r, flipped), [
    `${name}: 1 bytes differ, the first at offset ${at} (${r.files.get(name)![at]} vs ${bytes[at]})`,
  ]);
  const fewer = new Map(r.files);
  fewer.delete("fake/config.json");
  assertEquals(runDifferences(r, { files: fewer, records: r.records }), [
    "fake/config.json: only in the first run",
  ]);
  // One ulp of block 0's best loss (a float32 value held as a double).
  const rec = JSON.parse(r.records[0]);
  const f = new Float32Array([rec.lossBest]), u = new Uint32Array(f.buffer);
  u[0] += 1;
  const changed = [JSON.stringify({ ...rec, lossBest: f[0] }), ...r.records.slice(1)];
  const d = runDifferences(r, { files: r.files, records: changed });
  assertEquals(d.length, 1);
  assert(d[0].startsWith("block record 0:"), d[0]);
});
