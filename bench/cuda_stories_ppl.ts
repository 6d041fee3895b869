/**
 * stories260K perplexity after quantization through the CLI, one process per command, exactly as a
 * user runs it: `main.ts quantize ... --device D` then `main.ts eval --model OUT --text eval.txt
 * --seqlen 256 --json --device D`. Configs: W2G32 sym, W4G32 sym, W4G32 asym × RTN (opt-RTN for
 * sym, plain for asym: AutoRound's --iters 0 default) / light / default, calibrated on
 * tests/fixtures/tinystories-calib.jsonl with --seqlen 256 --nsamples 128.
 *
 *   deno run -A bench/cuda_stories_ppl.ts [--device cuda] [--out DIR] [--json FILE] [--only W4G32-sym]
 *     [--methods rtn,light,default]
 *
 * Prints a markdown table (ppl and quantize seconds); the quantized folders stay in --out (default
 * a temp dir) so they can be evaluated again on another device (`--eval_only DIR --device cpu`).
 */
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";

const FLAGS: FlagSpec = {
  device: { type: "string" },
  out: { type: "string" },
  json: { type: "string" },
  only: { type: "string" },
  eval_only: { type: "string" },
  methods: { type: "string" },
};
const f = parseFlags(Deno.args, FLAGS).values;
const device = String(f.device ?? "cuda");
const root = new URL("../", import.meta.url).pathname;
const model = root + "tests/fixtures/stories260K";
const text = model + "/eval.txt";
const calib = root + "tests/fixtures/tinystories-calib.jsonl";

const SCHEMES = [
  { label: "W2G32 sym", key: "W2G32-sym", args: ["--bits", "2", "--group_size", "32"] },
  { label: "W4G32 sym", key: "W4G32-sym", args: ["--bits", "4", "--group_size", "32"] },
  { label: "W4G32 asym", key: "W4G32-asym", args: ["--bits", "4", "--group_size", "32", "--asym"] },
];
const METHODS = [
  { label: "RTN", key: "rtn", args: ["--iters", "0"] },
  { label: "light", key: "light", args: ["--recipe", "light"] },
  { label: "default", key: "default", args: ["--recipe", "default"] },
].filter((m) => !f.methods || String(f.methods).split(",").includes(m.key));

async function cli(args: string[]): Promise<{ out: string; seconds: number }> {
  const t0 = performance.now();
  const r = await new Deno.Command(Deno.execPath(), { args: ["run", "-A", root + "main.ts", ...args] })
    .output();
  const out = new TextDecoder().decode(r.stdout), err = new TextDecoder().decode(r.stderr);
  if (!r.success) throw new Error(`main.ts ${args.join(" ")} failed:\n${err.slice(-2000)}`);
  return { out, seconds: (performance.now() - t0) / 1000 };
}

async function evalPpl(dir: string): Promise<number> {
  const { out } = await cli([
    "eval",
    "--model",
    dir,
    "--text",
    text,
    "--seqlen",
    "256",
    "--json",
    "--device",
    device,
  ]);
  const line = out.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  return JSON.parse(line!).ppl;
}

const outDir = String(f.out ?? f.eval_only ?? await Deno.makeTempDir({ prefix: "stories-ppl-" }));
const results: Record<string, { ppl: number; quantizeSeconds?: number }> = {};
results.fp = { ppl: await evalPpl(model) };
console.log(`fp32: ${results.fp.ppl.toFixed(4)} (${device})`);
for (const s of SCHEMES) {
  if (f.only && s.key !== f.only) continue;
  for (const m of METHODS) {
    const name = `${s.key}-${m.key}`;
    const dir = `${outDir}/${name}`;
    let seconds: number | undefined;
    if (!f.eval_only) {
      ({ seconds } = await cli([
        "quantize",
        "--model",
        model,
        ...s.args,
        ...m.args,
        "--dataset",
        calib,
        "--seqlen",
        "256",
        "--nsamples",
        "128",
        "--output_dir",
        dir,
        "--device",
        device,
        "--quiet",
      ]));
    }
    results[name] = { ppl: await evalPpl(dir), quantizeSeconds: seconds };
    console.log(
      `${name}: ppl ${results[name].ppl.toFixed(4)}${seconds ? `, quantize ${seconds.toFixed(1)} s` : ""}`,
    );
  }
}
if (f.json) await Deno.writeTextFile(String(f.json), JSON.stringify({ device, results }, null, 2) + "\n");
console.log(
  `\nstories260K ppl (eval.txt, seqlen 256), quantized and evaluated on ${device}; fp ${
    results.fp.ppl.toFixed(4)
  }`,
);
console.log(
  `| scheme | ${METHODS.map((m) => m.label).join(" | ")} |\n|---|${METHODS.map(() => "---:").join("|")}|`,
);
for (const s of SCHEMES) {
  if (f.only && s.key !== f.only) continue;
  const cells = METHODS.map((m) => {
    const r = results[`${s.key}-${m.key}`];
    return `${r.ppl.toFixed(4)}${r.quantizeSeconds ? ` (${r.quantizeSeconds.toFixed(0)} s)` : ""}`;
  });
  console.log(`| ${s.label} | ${cells.join(" | ")} |`);
}
