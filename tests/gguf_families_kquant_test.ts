/**
 * K-quant blocks in stacked experts, through llama.cpp: random MoE models 256 wide (tests/consumers
 * models.ts wideMoe; the family fixtures are 64 wide, where every K-quant falls back to Q5_0/Q8_0)
 * exported as gguf:q4_k_m and gguf:q6_k, loaded by llama.cpp, whose logits at every position of three
 * random 48-token sequences are compared with our forward over the same file read back (dequantized).
 * Bounds: llama.cpp quantizes activations to Q8_K for K-quant weights, our f32 forward does not:
 * median per-position max|Δ|/max|logit| ≤ 5% (measured ≤ 3.7%, the same floor as the 64-wide
 * fixtures in gguf_families_test.ts), mean KL ≤ 0.02 (measured ≤ 7.9e-3), same top-1 at ≥ 85%
 * (measured ≥ 89%). Looser than there on KL/top-1 because Mixtral's top-2 of 8 random routers has
 * more near-ties, which that rounding flips (a flipped position moves by O(1), max rel up to 0.56).
 */
import { assert, assertEquals } from "./assert.ts";
import type { GgufExporter } from "../src/export/gguf.ts";
import { GgufFile } from "../src/formats/gguf/file.ts";
import { exportModel, llamaCppUnavailable, runLlamaCpp } from "./consumers/helpers.ts";
import { compare, fmt, ourLogits } from "./consumers/family_logits.ts";
import { wideMoe } from "./consumers/models.ts";
import { join } from "./consumers/path.ts";

const UNAVAILABLE = await llamaCppUnavailable();
const T = 48;

for (const family of ["qwen2_moe", "mixtral"] as const) {
  Deno.test({
    name: `llama.cpp: ${family} 256 wide as Q4_K_M and Q6_K: K-quant experts stacked, logits agree`,
    async fn() {
      if (UNAVAILABLE) return console.log(`skipped: ${UNAVAILABLE}`);
      const tmp = await Deno.makeTempDir({ prefix: `gguf_kq_${family}_` });
      try {
        const model = await wideMoe(join(tmp, `wide-${family}`), family);
        const run = await exportModel({
          model,
          formats: "gguf:q4_k_m,gguf:q6_k",
          out: join(tmp, "out"),
          scheme: { bits: 4, groupSize: 32, sym: true, dataType: "int" },
          nsamples: 4,
          seqlen: 64,
        });
        const files = run.exporters.map((e) => (e as GgufExporter).path);
        // The expert tensors hold K-quant blocks; Mixtral's 8 experts put attn_k/attn_v in Q8_0.
        const want = [["Q4_K", "Q6_K"], ["Q6_K"]];
        for (const [i, file] of files.entries()) {
          using g = await GgufFile.open(file);
          for (
            const t of g.tensors.filter((t) => /_exps\.weight$/.test(t.name))
          ) {
            assert(want[i].includes(t.type), `${t.name} is ${t.type}`);
            assertEquals(t.ne.length, 3, t.name);
          }
          if (family === "mixtral" && i === 0) {
            assertEquals(g.tensor("blk.0.attn_k.weight").type, "Q8_0");
          }
        }
        let seed = 3;
        const ids = Int32Array.from(
          { length: 3 * T },
          () => (seed = (seed * 1103515245 + 12345) >>> 0) % 509 + 3,
        );
        const seqs = [0, 1, 2].map((
          s,
        ) => [...ids.subarray(s * T, (s + 1) * T)]);
        const res = await runLlamaCpp(
          files.map((m) => ({ model: m, sequences: seqs })),
        );
        console.log(
          `\n${family} 256 wide\n| file | median rel | max rel | mean KL | max KL | same top-1 |`,
        );
        for (const [i, file] of files.entries()) {
          const llama = res[i].logits!.map((rows) => Float32Array.from(rows.flat()));
          const c = compare(
            llama,
            await ourLogits(file, ids, T),
            run.spec.vocab,
          );
          console.log(`| ${file.split("-").pop()} | ${fmt(c)} |`);
          assert(
            c.median <= 0.05 && c.meanKl <= 0.02 && c.top1 >= 0.85,
            `${family} ${file}: ${fmt(c)}`,
          );
        }
      } finally {
        await Deno.remove(tmp, { recursive: true });
      }
    },
  });
}
