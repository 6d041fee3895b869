/**
 * Evaluation and generation speed on stories260K, next to the arithmetic floor: the model's
 * FLOPs per token (2 × matmul parameters, plus attention) divided by the backend's own matmul
 * rate, measured here on a square f32 matmul.
 *
 *   deno run -A bench/eval_throughput.ts [--device cpu]
 */
import { createBackend, parseDevice } from "../src/backend/select.ts";
import { generate } from "../src/eval/generate.ts";
import { scoreRequests, type TokenRequest } from "../src/eval/loglikelihood.ts";
import { openEvalModel } from "../src/eval/model_source.ts";
import { stderrLog } from "../src/log.ts";
import { LoadedModel } from "../src/model/transformer.ts";

const device = parseDevice(Deno.args[Deno.args.indexOf("--device") + 1] ?? "auto");
using be = await createBackend(device, stderrLog());
using src = await openEvalModel(new URL("../tests/fixtures/stories260K", import.meta.url).pathname);
using lm = await LoadedModel.load(be, src.spec, src.weights);
const s = src.spec;

// Attainable matmul rate of this backend.
const n = 512;
using a = be.upload(new Float32Array(n * n).fill(0.5), [n, n]);
let t0 = performance.now();
for (let i = 0; i < 3; i++) {
  using c = be.matmul(a, a, { transB: true });
  await be.read(c);
}
const gflops = (3 * 2 * n ** 3) / ((performance.now() - t0) / 1000) / 1e9;

const linearParams = s.nLayers *
    (s.hidden * (s.nHeads + 2 * s.nKvHeads) * s.headDim + s.nHeads * s.headDim * s.hidden +
      3 * s.hidden * s.intermediate) + s.vocab * s.hidden;
const flopsPerToken = (ctx: number) => 2 * linearParams + s.nLayers * 4 * ctx * s.nHeads * s.headDim;

// Scoring: 64 requests of 100 context + 20 continuation tokens, batch 8.
const reqs: TokenRequest[] = Array.from({ length: 64 }, (_, i) => ({
  context: Array.from({ length: 100 }, (_, j) => 3 + ((i * 31 + j * 7) % 500)),
  continuation: Array.from({ length: 20 }, (_, j) => 3 + ((i + j * 13) % 500)),
}));
t0 = performance.now();
await scoreRequests(lm, reqs, { maxLength: 512, batchSize: 8 });
const scoreSec = (performance.now() - t0) / 1000;
const scoreTokens = 64 * 119;

// Generation: 256 greedy tokens after BOS.
t0 = performance.now();
const g = await generate(lm, [1], { maxNewTokens: 256, temperature: 0, topP: 1, seed: 0, stopIds: [] });
const genSec = (performance.now() - t0) / 1000;

const rows = [
  [
    "scoring (batch 8, 119 tokens)",
    scoreTokens / scoreSec,
    (flopsPerToken(60) * scoreTokens) / (gflops * 1e9),
  ],
  [
    "generate (KV cache, 256 tokens)",
    g.ids.length / genSec,
    (flopsPerToken(128) * g.ids.length) / (gflops * 1e9),
  ],
];
console.log(`backend ${be.device}; matmul ${gflops.toFixed(2)} GFLOP/s (${n}³ f32)`);
console.log("| workload | tokens/s | seconds | floor s (FLOPs / matmul rate) |");
console.log("|---|---:|---:|---:|");
console.log(
  `| ${rows[0][0]} | ${(rows[0][1] as number).toFixed(0)} | ${scoreSec.toFixed(2)} | ${
    (rows[0][2] as number).toFixed(3)
  } |`,
);
console.log(
  `| ${rows[1][0]} | ${(rows[1][1] as number).toFixed(0)} | ${genSec.toFixed(2)} | ${
    (rows[1][2] as number).toFixed(3)
  } |`,
);
