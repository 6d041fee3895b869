/**
 * Perplexity of the demo model in every GGUF type, as llama.cpp computes it (node-llama-cpp's logits
 * over the eval.txt windows) next to our own evaluation of the same file (our reader + f32 forward),
 * and the float model. Prints markdown tables.
 *
 *   deno run -A bench/gguf_ppl.ts [--windows N] [--wide-windows N]
 *
 * Floor: the float model (stories260K reference.json: ppl 4.165394 over 128 windows of 256). Needs
 * tests/consumers/install.sh (node-llama-cpp).
 */
import { GGUF_FORMAT_NAMES } from "../src/formats/gguf/presets.ts";
import type { GgufExporter } from "../src/export/gguf.ts";
import { inspectGguf } from "../src/formats/gguf/summary.ts";
import { openGgufModel } from "../src/io/gguf_model.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import {
  exportModel,
  llamaCppUnavailable,
  perplexityOf,
  runLlamaCpp,
  STORIES,
  storiesEvalIds,
} from "../tests/consumers/helpers.ts";
import { widenStories } from "../tests/consumers/models.ts";
import { join } from "../tests/consumers/path.ts";

const arg = (name: string, dflt: number) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
};
const windows = arg("--windows", 128), wideWindows = arg("--wide-windows", 32);
const why = await llamaCppUnavailable();
if (why) {
  console.log(`llama.cpp unavailable: ${why}`);
  Deno.exit(0);
}
const W4G32 = { bits: 4, groupSize: 32, sym: true, dataType: "int" as const };
const tmp = await Deno.makeTempDir({ prefix: "gguf_ppl_" });

async function table(title: string, model: string, formats: string[], nWin: number, forceF32 = false) {
  const ids = (await storiesEvalIds()).subarray(0, nWin * 256);
  const t0 = performance.now();
  const run = await exportModel({
    model,
    formats: formats.map((f) => `gguf:${f}`).join(","),
    out: join(tmp, title),
    scheme: W4G32,
  });
  const exportS = (performance.now() - t0) / 1000;
  const files = run.exporters.map((e) => (e as GgufExporter).path);
  if (forceF32) {
    const f32 = await exportModel({
      model,
      formats: "gguf:q8_0",
      out: join(tmp, title + "-f32"),
      scheme: W4G32,
      forceType: "F32",
    });
    files.push((f32.exporters[0] as GgufExporter).path);
  }
  const t1 = performance.now();
  const llama = await runLlamaCpp(
    files.map((m) => ({ model: m, perplexity: { ids: [...ids], seqlen: 256 } })),
  );
  const llamaS = (performance.now() - t1) / 1000;
  using fp = await openCheckpoint(model);
  const fpPpl = await perplexityOf(fp.spec, fp.weights, ids);
  console.log(`\n### ${title}: ${nWin} windows × 256 tokens of eval.txt (${ids.length} tokens)`);
  console.log(
    `float model (our forward): ppl ${fpPpl.toFixed(4)}; export of ${formats.length} files ${
      exportS.toFixed(1)
    } s; llama.cpp ${llamaS.toFixed(1)} s`,
  );
  console.log(
    "| file | tensor types | bits/weight | ppl llama.cpp | ppl ours (same file) | Δ |\n|---|---|---|---|---|---|",
  );
  for (const [i, f] of files.entries()) {
    using m = await openGgufModel(f);
    const ours = await perplexityOf(m.spec, m.weights, ids);
    const s = await inspectGguf(f);
    const theirs = llama[i].perplexity!.ppl;
    console.log(
      `| ${f.split("/").pop()} | ${Object.keys(s.byType).join("/")} | ${s.bitsPerWeight.toFixed(2)} | ${
        theirs.toFixed(4)
      } | ${ours.toFixed(4)} | ${((100 * (theirs - ours)) / ours).toFixed(2)}% |`,
    );
  }
}

try {
  await table("stories260K", STORIES, GGUF_FORMAT_NAMES.filter((n) => n !== "q6_k_s"), windows, true);
  const wide = await widenStories(join(tmp, "wide"));
  await table("stories260K-wide", wide, [
    "q2_k_s",
    "q3_k_s",
    "q3_k_m",
    "q3_k_l",
    "q4_k_s",
    "q4_k_m",
    "q5_k_s",
    "q5_k_m",
    "q6_k",
  ], wideWindows);
} finally {
  await Deno.remove(tmp, { recursive: true });
}
