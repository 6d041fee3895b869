/**
 * Host GGUF quantization speed per core (issue 12): each type ± importance matrix on one tensor, our
 * search + W̃ + packing (quantizeTensor + packBlocks, what the exporter runs per tensor) next to
 * ggml's own quantizers on the same shape and data (/tmp/ggml/qbench, built by
 * ../shared/tools/ggml/build.sh; the columns stay empty without it).
 *
 *   deno run -A bench/gguf_search.ts [--rows 2048] [--cols 4096] [--reps 2] [--types Q4_K,Q6_K]
 *     [--reference]   (also time, once, the frozen pre-issue-12 implementation, tests/gguf_reference/)
 *
 * Data as qbench makes it: an LCG's uniforms in ±0.02, imatrix 1 + (column mod 7). Floor: ggml's
 * per-core Mparam/s; the goal is ≥ 50% of it. Timings, ours and qbench's, are the min over --reps (the
 * machine is shared).
 */
import { type QuantGgmlType, quantizeTensor } from "../src/qmath/gguf/quantize.ts";
import { packBlocks } from "../src/qmath/gguf/blocks.ts";
import { quantizeTensor as referenceQuantize } from "../tests/gguf_reference/quantize.ts";

const arg = (name: string, dflt: string) => {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Deno.args[i + 1] : dflt;
};
const rows = Number(arg("--rows", "2048")), cols = Number(arg("--cols", "4096"));
const reps = Number(arg("--reps", "2"));
const withReference = Deno.args.includes("--reference");
const ALL: QuantGgmlType[] = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"];
const types = arg("--types", ALL.join(",")).split(",") as QuantGgmlType[];

/** qbench.c's tensor: s = s·1664525 + 1013904223, w = ((s >> 8)/2^24 − 0.5)·0.04 in float32. */
function qbenchData(n: number): Float32Array {
  const w = new Float32Array(n);
  let s = 1;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    w[i] = Math.fround(Math.fround((s >>> 8) / 16777216 - 0.5) * Math.fround(0.04));
  }
  return w;
}

/** qbench's lines: "Q4_K  imatrix=1  2048 x 4096  1.650 s  (5.1 Mparam/s, …)" → seconds by "Q4_K/1". */
async function ggmlFigures(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    for (let r = 0; r < reps; r++) {
      const res = await new Deno.Command("/tmp/ggml/qbench", { args: [String(rows), String(cols)] }).output();
      const text = new TextDecoder().decode(res.stdout);
      for (const m of text.matchAll(/^(\S+)\s+imatrix=(\d)\s+\S+ x \S+\s+([\d.]+) s/gm)) {
        const key = `${m[1]}/${m[2]}`;
        out.set(key, Math.min(out.get(key) ?? Infinity, Number(m[3])));
      }
    }
  } catch {
    console.log("(no /tmp/ggml/qbench: ggml columns empty; build it with ../shared/tools/ggml/build.sh)");
  }
  return out;
}

function timeMin(fn: () => void, times = reps): number {
  let best = Infinity;
  for (let r = 0; r < times; r++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  return best;
}

const w = qbenchData(rows * cols);
const imatrix = Float64Array.from({ length: cols }, (_, i) => 1 + (i % 7));
const ggml = await ggmlFigures();
const mp = (s: number) => (rows * cols / s / 1e6).toFixed(1);
console.log(`GGUF host quantization, ${rows}×${cols}, one thread, min of ${reps}`);
console.log(
  `| type | imatrix | ours s | ours Mparam/s |${
    withReference ? " before s |" : ""
  } ggml s | ggml Mparam/s | ours/ggml |`,
);
console.log(
  `| ---- | ------- | ------ | ------------- |${
    withReference ? " -------- |" : ""
  } ------ | ------------- | --------- |`,
);
for (const t of types) {
  for (const im of [false, true]) {
    const opts = { optRtn: t !== "Q8_0", imatrix: im ? imatrix : undefined };
    const ours = timeMin(() => packBlocks(quantizeTensor(t, w, rows, cols, opts)));
    const before = withReference
      ? timeMin(() => packBlocks(referenceQuantize(t, w, rows, cols, opts)), 1)
      : 0;
    const g = ggml.get(`${t.replace("Q", "q")}/${im ? 1 : 0}`); // ggml_type_name: "q4_K"
    console.log(
      `| ${t} | ${im ? "yes" : "no"} | ${ours.toFixed(3)} | ${mp(ours)} |` +
        (withReference ? ` ${before.toFixed(3)} |` : "") +
        ` ${g?.toFixed(3) ?? "–"} | ${g ? mp(g) : "–"} | ${g ? (g / ours * 100).toFixed(0) + "%" : "–"} |`,
    );
  }
}
