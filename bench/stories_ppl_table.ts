/**
 * Perplexity table of stories260K (eval.txt, its reference protocol, windows of 256) for
 * W4G32 / W3G32 / W2G32, sym and asym, under each method given.
 *
 *   deno run -A bench/stories_ppl_table.ts [--methods rtn,rtn_plain,light,default] [--device cpu]
 *     [--dataset FILE] [--only sym|asym] [--json FILE]
 *
 * Methods: rtn (auto-round's default for --iters 0: optimized RTN for sym, plain for asym),
 * rtn_plain (--disable_opt_rtn), light, default (SignRound recipes; when the build has them).
 * Calibration: --dataset (default tests/fixtures/tinystories-calib.jsonl), 128 samples × 256 tokens,
 * seed 42. The table uses ../shared/data/calib/c4-en-1000.jsonl.
 * Prints one markdown table; --json writes the numbers.
 */
import { createBackend, parseDevice } from "../src/backend/select.ts";
import { documentStream, windowedPerplexity } from "../src/eval/perplexity.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { silentLog, stderrLog } from "../src/log.ts";
import { LoadedModel } from "../src/model/transformer.ts";
import { quantize } from "../src/quant/quantize.ts";
import { getRecipe } from "../src/quant/recipes.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";

const FLAGS: FlagSpec = {
  methods: { type: "string" },
  device: { type: "string" },
  json: { type: "string" },
  dataset: { type: "string" },
  only: { type: "string" },
};
const { values: f } = parseFlags(Deno.args, FLAGS);
const methods = String(f.methods ?? "rtn,rtn_plain").split(",");
const root = new URL("../tests/fixtures/", import.meta.url).pathname;
const model = root + "stories260K";
const log = stderrLog();
using be = await createBackend(parseDevice(String(f.device ?? "cpu")), log);
const tok = await Tokenizer.fromDir(model);
const ids = documentStream(await Deno.readTextFile(root + "stories260K/eval.txt"), (l) => tok.encode(l));

async function ppl(dir: string): Promise<number> {
  using ck = await openCheckpoint(dir);
  using m = await LoadedModel.load(be, ck.spec, ck.weights, { positions: 256 });
  return (await windowedPerplexity(m, ids, { seqlen: 256, batch: 16 })).ppl;
}

const fp = await ppl(model);
log.info(`fp32: ${fp.toFixed(4)}`);
const rows: Record<string, Record<string, number>> = {};
const schemes = [["W4A16", 4], ["W3A16", 3], ["W2A16", 2]] as const;
for (const [scheme, bits] of schemes) {
  for (const sym of f.only === "sym" ? [true] : f.only === "asym" ? [false] : [true, false]) {
    const label = `W${bits}G32 ${sym ? "sym" : "asym"}`;
    rows[label] = {};
    for (const method of methods) {
      const recipe = method.startsWith("rtn") ? getRecipe("rtn") : getRecipe(method);
      const out = await Deno.makeTempDir();
      const t0 = performance.now();
      try {
        await quantize({
          model,
          outputDir: `${out}/q`,
          formats: ["auto_round"],
          scheme: resolveScheme(scheme, { groupSize: 32, sym }),
          iters: method.startsWith("rtn") ? 0 : recipe.iters,
          nsamples: 128,
          seqlen: 256,
          batchSize: 8,
          dataset: String(f.dataset ?? root + "tinystories-calib.jsonl"),
          lr: method.startsWith("rtn") ? undefined : recipe.lr ?? undefined,
          disableOptRtn: method === "rtn_plain" ? true : undefined,
          maxShardSize: 5e9,
          backend: be,
        }, silentLog);
        rows[label][method] = await ppl(`${out}/q`);
        log.info(
          `${label} ${method}: ${rows[label][method].toFixed(4)} (${
            ((performance.now() - t0) / 1000).toFixed(1)
          }s)`,
        );
      } finally {
        await Deno.remove(out, { recursive: true });
      }
    }
  }
}
console.log(
  `\ncalibration: ${f.dataset ?? "tinystories-calib.jsonl"}; stories260K, eval.txt ppl (fp32 ${
    fp.toFixed(4)
  }); kept in 16-bit: model.layers.[0-4].mlp.{gate,up,down}_proj (shapes not divisible by 32), lm_head, embeddings\n`,
);
console.log(`| scheme | ${methods.join(" | ")} |`);
console.log(`|---|${methods.map(() => "---").join("|")}|`);
for (const [label, r] of Object.entries(rows)) {
  console.log(`| ${label} | ${methods.map((m) => r[m]?.toFixed(4) ?? "—").join(" | ")} |`);
}
if (f.json) await Deno.writeTextFile(String(f.json), JSON.stringify({ fp, rows }, null, 2));
