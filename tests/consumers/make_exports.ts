/**
 * Writes stories260K in every safetensors format, for tests/consumers/transformers_load.py (run on
 * the GPU machine by run_gpu.sh), plus our own last-position logits for three prompts, read back from
 * each folder through our loader (`ours.json`).
 *
 *   deno run -A tests/consumers/make_exports.ts OUT_DIR
 *
 * Two runs (RTN with the importance matrix, 32 × 64 calibration tokens of eval.txt):
 *   sym  — W4 group 32 symmetric: auto_round (auto_round:auto_gptq packing), auto_gptq, auto_awq
 *          (zero_point false), llm_compressor, fake
 *   asym — W4 group 32 asymmetric: auto_round ("auto_round" packing), auto_gptq, auto_awq, llm_compressor, fake
 */
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { Tokenizer } from "../../src/io/tokenizer.ts";
import { exportModel, lastLogits, STORIES } from "./helpers.ts";
import { join } from "./path.ts";

const out = Deno.args[0] ?? "tests/consumers/out/exports";
const PROMPTS = [
  "Once upon a time",
  "Lily and Ben are friends. They like to play in the park.",
  "The little dog was very happy because",
];
const FORMATS = ["auto_round", "auto_gptq", "auto_awq", "llm_compressor", "fake"];

await Deno.mkdir(out, { recursive: true });
const tok = await Tokenizer.fromDir(STORIES);
const ids = PROMPTS.map((p) => tok.encode(p));
const ours: Record<string, { prompts: string[]; ids: number[][]; logits: number[][] }> = {};
for (const sym of [true, false]) {
  const name = sym ? "sym" : "asym";
  const dir = join(out, name);
  await exportModel({
    model: STORIES,
    formats: FORMATS.join(","),
    out: dir,
    scheme: { bits: 4, groupSize: 32, sym, dataType: "int" },
    nsamples: 32,
    seqlen: 64,
  });
  for (const f of FORMATS) {
    using ck = await openCheckpoint(join(dir, f));
    const logits: number[][] = [];
    for (const seq of ids) logits.push([...await lastLogits(ck.spec, ck.weights, seq)]);
    ours[`${name}/${f}`] = { prompts: PROMPTS, ids, logits };
  }
}
{
  using fp = await openCheckpoint(STORIES);
  const logits: number[][] = [];
  for (const seq of ids) logits.push([...await lastLogits(fp.spec, fp.weights, seq)]);
  ours["fp"] = { prompts: PROMPTS, ids, logits };
}
await Deno.writeTextFile(join(out, "ours.json"), JSON.stringify(ours));
console.log(`wrote ${Object.keys(ours).length - 1} folders and ours.json to ${out}`);
