/**
 * Perplexity table of stories260K (eval.txt, windows of 256) for auto-round's float and
 * activation-quantized schemes (issue 17): each scheme quantized (RTN and SignRound recipes), exported
 * to a format that stores it, loaded back and evaluated as a serving engine computes it (dequantized
 * weights, activations quantized by the checkpoint's quantizer).
 *
 *   deno run -A bench/schemes_table.ts [--schemes MXFP4,NVFP4,...] [--methods rtn,light,default]
 *     [--alg_ext] [--dataset FILE] [--nsamples 128] [--seqlen 256] [--json FILE]
 *
 * rtn: --iters 0 (as auto-round: plain RTN for MX/FP8/INT8; NVFP4 too here, see BENCHMARKS.md);
 * light / default: the SignRound recipes (50 / 200 iterations). --alg_ext adds SignRoundV2 columns
 * (symmetric int only in this build). CPU backend (the float kernels are CPU-only so far).
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
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
  schemes: { type: "string" },
  methods: { type: "string" },
  alg_ext: { type: "boolean" },
  dataset: { type: "string" },
  nsamples: { type: "string" },
  seqlen: { type: "string" },
  json: { type: "string" },
};
const { values: f } = parseFlags(Deno.args, FLAGS);
const schemes = String(f.schemes ?? "MXFP4,MXFP4_RCEIL,MXFP8,MXINT4,NVFP4,FPW8A16,FP8_STATIC,INT8_W8A8")
  .split(",");
const methods = String(f.methods ?? "rtn,light").split(",");
const root = new URL("../tests/fixtures/", import.meta.url).pathname;
const model = root + "stories260K";
const log = stderrLog();
using be = await CpuBackend.create();
const tok = await Tokenizer.fromDir(model);
const ids = documentStream(await Deno.readTextFile(root + "stories260K/eval.txt"), (l) => tok.encode(l));

/** The format that stores a scheme with its activation quantizer (spec/SCHEMES.md § 10.1). */
function formatFor(scheme: string): string {
  // compressed-tensors has no MXINT4 and cannot say RCEIL (it would be read back as the floor rule).
  return scheme === "MXINT4" || scheme.endsWith("_RCEIL") ? "auto_round" : "llm_compressor";
}

async function ppl(dir: string): Promise<number> {
  using ck = await openCheckpoint(dir);
  using m = await LoadedModel.load(be, ck.spec, ck.weights, { positions: 256 });
  return (await windowedPerplexity(m, ids, { seqlen: 256, batch: 16 })).ppl;
}

const fp = await ppl(model);
log.info(`fp32: ${fp.toFixed(4)}`);
const cols = [
  ...methods,
  ...(f.alg_ext ? methods.filter((m) => m !== "rtn").map((m) => `${m}+alg_ext`) : []),
];
const rows: Record<string, Record<string, number | string>> = {};
for (const scheme of schemes) {
  rows[scheme] = {};
  for (const col of cols) {
    const method = col.replace("+alg_ext", "");
    const recipe = method === "rtn" ? getRecipe("rtn") : getRecipe(method);
    const out = await Deno.makeTempDir();
    const t0 = performance.now();
    try {
      await quantize({
        model,
        outputDir: `${out}/q`,
        formats: [formatFor(scheme)],
        scheme: resolveScheme(scheme),
        iters: method === "rtn" ? 0 : recipe.iters,
        nsamples: Number(f.nsamples ?? 128),
        seqlen: Number(f.seqlen ?? 256),
        batchSize: 8,
        dataset: String(f.dataset ?? root + "tinystories-calib.jsonl"),
        lr: method === "rtn" ? undefined : recipe.lr ?? undefined,
        enableAlgExt: col.endsWith("+alg_ext"),
        maxShardSize: 5e9,
        backend: be,
      }, silentLog);
      rows[scheme][col] = await ppl(`${out}/q`);
      log.info(
        `${scheme} ${col}: ${(rows[scheme][col] as number).toFixed(4)} (${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s)`,
      );
    } catch (e) {
      rows[scheme][col] = `refused: ${(e as Error).message.split("\n")[0]}`;
      log.info(`${scheme} ${col}: ${rows[scheme][col]}`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  }
}
console.log(
  `\nstories260K eval.txt perplexity (fp32 ${fp.toFixed(4)}); calibration ${
    f.dataset ?? "tinystories-calib.jsonl"
  }, ${f.nsamples ?? 128} × ${f.seqlen ?? 256}\n`,
);
console.log(`| scheme | format | ${cols.join(" | ")} |`);
console.log(`|---|---|${cols.map(() => "---").join("|")}|`);
for (const [s, r] of Object.entries(rows)) {
  const cell = (v: number | string | undefined) => typeof v === "number" ? v.toFixed(4) : v ?? "—";
  console.log(`| ${s} | ${formatFor(s)} | ${cols.map((c) => cell(r[c])).join(" | ")} |`);
}
if (f.json) await Deno.writeTextFile(String(f.json), JSON.stringify({ fp, rows }, null, 2));
