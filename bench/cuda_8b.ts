/**
 * SignRound speed at Llama-3-8B shape on the CUDA backend, against NUMBERS.md's arithmetic floor
 * (≈22.4 TFLOP per block-iteration over 8 × 2048 tokens; 200 iterations × 32 blocks at the
 * ≈800 TFLOP/s the H100 reaches on large bf16 GEMMs ≈ 3.0 min).
 *
 *   python3 bench/make_random_llama.py --out /tmp/l8b --layers 4 --tokenizer TOKDIR
 *   deno run -A bench/cuda_8b.ts --part iteration --model /tmp/l8b [--json F]
 *   deno run -A bench/cuda_8b.ts --part pipeline --recipe default|light|rtn --model /tmp/l8b \
 *       --dataset c4-qwen3-128x2048.safetensors [--json F]
 *   deno run -A bench/cuda_8b.ts --part optrtn-host --model /tmp/l8b [--iters ROWS]
 *   deno run -A bench/cuda_8b.ts --summary F     # the table of every record in F
 *
 * `iteration`: block 0 of the checkpoint, random inputs in [-1, 1) and their fp block outputs as
 * targets, 128 samples × 2048 tokens, W4G128 sym. tuneBlock (the library's loop, unchanged) runs
 * (1) eagerly for 4 iterations on a backend whose ops are bracketed by CUDA events: device ms per op
 * for one iteration, split into GEMMs, attention and the rest; (2) captured, 200 iterations (the
 * default recipe), each replay bracketed by events; (3) captured, 50 iterations at lr 5e-3 (light).
 * `pipeline`: the whole quantize() (calibration, fp/quantized forwards, tuning, export) through
 * the library on a fresh backend: seconds per block, peak device memory and peak host RSS, and the
 * host seconds spent inside the backend's transfer methods (upload, read, quantizeWeights, sync).
 * `optrtn-host`: the opt-RTN scale search (JavaScript, on the host) on --iters rows of each Linear,
 * extrapolated to a whole block.
 * FLOPs counted: forward, weight-gradient and input-gradient GEMMs of the 7 Linears except the
 * q/k/v input gradient (not computed: nothing upstream is tuned), plus causal attention forward
 * (2 GEMMs over T²/2) and backward (2.5× forward).
 */
import type { Backend } from "../src/backend/backend.ts";
import { createCudaBackend, type CudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { PyRandom } from "../src/io/pyrandom.ts";
import { stderrLog } from "../src/log.ts";
import { blockForward } from "../src/model/block.ts";
import { BLOCK_LINEARS, type ModelSpec } from "../src/model/config.ts";
import { importanceForWeight, searchScalesSym } from "../src/qmath/int_quant.ts";
import { loadBlockWeights, uploadRope } from "../src/model/transformer.ts";
import { DeviceActivations } from "../src/quant/activations.ts";
import { type BlockReport } from "../src/quant/pipeline.ts";
import { initialState, quantParams } from "../src/quant/linear_state.ts";
import { quantize } from "../src/quant/quantize.ts";
import { getRecipe } from "../src/quant/recipes.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { type SignRoundSettings, tuneBlock, type TunedLinear } from "../src/quant/signround.ts";
import { type FlagSpec, parseFlags } from "../src/std/cli.ts";
import { category, instrumented, replayTimed } from "./cuda_op_timing.ts";

const FLAGS: FlagSpec = {
  part: { type: "string" },
  model: { type: "string" },
  dataset: { type: "string" },
  recipe: { type: "string" },
  json: { type: "string" },
  summary: { type: "string" },
  iters: { type: "string" },
};
const TFLOPS_FLOOR = 800;
const NUMBERS_TFLOP = 22.4;
const SAMPLES = 128, SEQ = 2048, BATCH = 8;
const f = parseFlags(Deno.args, FLAGS).values;

/** FLOPs of one block-iteration as this loop executes it (see the header). */
function countedFlops(spec: ModelSpec, rows: number, batch: number, seq: number) {
  const h = spec.hidden, hd = spec.headDim;
  const qkv = (spec.nHeads + 2 * spec.nKvHeads) * hd * h;
  const params = qkv + spec.nHeads * hd * h + 3 * spec.intermediate * h;
  const gemm = 2 * rows * (3 * params - qkv);
  const attnFwd = 4 * batch * spec.nHeads * hd * (seq * seq / 2);
  return { gemm, attention: attnFwd * 3.5, qkvInputGrad: 2 * rows * qkv, total: gemm + attnFwd * 3.5 };
}

function hostPeakRssBytes(): number {
  const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) * 1024 : NaN;
}

function record(r: Record<string, unknown>): void {
  const line = JSON.stringify({ date: new Date().toISOString(), ...r });
  console.log(line);
  if (f.json) Deno.writeTextFileSync(String(f.json), line + "\n", { append: true });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const GIB = 2 ** 30;

// ---- part: iteration -----------------------------------------------------------------------------
async function iterationPart(): Promise<void> {
  using be = createCudaBackend();
  console.log(`device: ${be.device}`);
  using ckpt = await openCheckpoint(String(f.model));
  const spec = ckpt.spec;
  using w = await loadBlockWeights(be, spec, ckpt.weights, 0, "bf16");
  using rope = uploadRope(be, spec, SEQ);
  using inputs = new DeviceActivations(be, SAMPLES, SEQ, spec.hidden);
  using targets = new DeviceActivations(be, SAMPLES, SEQ, spec.hidden);
  for (const seg of inputs.segments) be.fillRandom(seg.data, -1, 1, 7);
  for (let s = 0; s < SAMPLES; s += BATCH) {
    using x = await inputs.read(s, BATCH);
    const { y } = blockForward(be, spec, w, x, { batch: BATCH, seqLen: SEQ }, rope);
    await targets.write(s, y);
    y[Symbol.dispose]();
  }
  const scheme = resolveScheme("W4A16");
  const host = new Map<string, Float32Array>();
  for (const l of BLOCK_LINEARS) host.set(l, await be.read(w.linear[l]));
  const run = async (tb: Backend, iters: number, lr?: number) => {
    const linears: TunedLinear[] = BLOCK_LINEARS.map((name) => {
      const [n, k] = w.linear[name].shape;
      return { name, params: quantParams(scheme, k), state: initialState(be, host.get(name)!, n, k, scheme) };
    });
    const settings: SignRoundSettings = {
      iters,
      lr,
      batchSize: BATCH,
      gradientAccumulateSteps: 1,
      enableMinmaxTuning: true,
      notUseBestMse: false,
      dynamicMaxGap: -1,
    };
    await be.sync();
    const t0 = performance.now();
    const r = await tuneBlock({
      be: tb,
      spec,
      weights: w,
      linears,
      inputs,
      targets,
      lossMask: new Uint8Array(SAMPLES * SEQ).fill(1),
      rope,
      settings,
      rng: new PyRandom(42),
    });
    const seconds = (performance.now() - t0) / 1000;
    for (const l of linears) l.state[Symbol.dispose]();
    return { r, seconds };
  };

  // (1) eager, per-op events; the window between the 2nd and 3rd keepBest is one whole iteration.
  const ins = instrumented(be);
  const eager = await run(ins.view, 4);
  const per = ins.collect(ins.marks[1], ins.marks[2]);
  const split = { GEMM: 0, attention: 0, rest: 0 };
  const ops: Record<string, { ms: number; calls: number }> = {};
  for (const [op, e] of per) {
    split[category(op)] += e.ms;
    ops[op] = { ms: +e.ms.toFixed(3), calls: e.n };
  }
  const eagerMs = split.GEMM + split.attention + split.rest;

  // (2) captured default recipe, (3) captured light recipe.
  const timed = replayTimed(be);
  const iters = Number(f.iters ?? 200);
  const dflt = await run(timed.view, iters);
  const replays = timed.times();
  const light = await run(timed.view, 50, 0.005);
  const lightReplays = timed.times();
  const flops = countedFlops(spec, BATCH * SEQ, BATCH, SEQ);
  const replayMs = median(replays.slice(1));
  const mem = be.memoryStats();
  const out = {
    part: "iteration",
    device: be.device,
    shape: `hidden ${spec.hidden}, intermediate ${spec.intermediate}, ${spec.nHeads}/${spec.nKvHeads} heads`,
    eager: {
      msPerIteration: +eagerMs.toFixed(2),
      gemmMs: +split.GEMM.toFixed(2),
      attentionMs: +split.attention.toFixed(2),
      restMs: +split.rest.toFixed(2),
      ops,
    },
    default: {
      iters,
      tuneBlockSeconds: +dflt.seconds.toFixed(2),
      replayMsMedian: +replayMs.toFixed(2),
      replayMsMean: +(replays.reduce((a, b) => a + b, 0) / replays.length).toFixed(2),
      replayMsFirst: +replays[0].toFixed(2),
      lossStart: dflt.r.lossStart,
      lossBest: dflt.r.lossBest,
      bestIter: dflt.r.bestIter,
    },
    light: {
      iters: 50,
      tuneBlockSeconds: +light.seconds.toFixed(2),
      replayMsMedian: +median(lightReplays.slice(1)).toFixed(2),
    },
    flops: {
      countedTflop: +(flops.total / 1e12).toFixed(2),
      gemmTflop: +(flops.gemm / 1e12).toFixed(2),
      attentionTflop: +(flops.attention / 1e12).toFixed(3),
      qkvInputGradSavedTflop: +(flops.qkvInputGrad / 1e12).toFixed(2),
      achievedTflops: +(flops.total / (replayMs * 1e9)).toFixed(0),
      achievedTflopsOfNumbersCount: +(NUMBERS_TFLOP * 1e12 / (replayMs * 1e9)).toFixed(0),
      gemmTflopsEager: +(flops.gemm / (split.GEMM * 1e9)).toFixed(0),
      attentionTflopsEager: +(flops.attention / (split.attention * 1e9)).toFixed(0),
    },
    eagerTuneBlockSeconds4: +eager.seconds.toFixed(2),
    peakDeviceGiB: +(mem.peakDriverBytes / GIB).toFixed(2),
    peakTensorGiB: +(mem.peakBytes / GIB).toFixed(2),
    peakHostRssGiB: +(hostPeakRssBytes() / GIB).toFixed(2),
  };
  record(out);
  console.log(`\niteration at 8B shape, 16384 tokens (device ms):`);
  console.log(`| | ms | TFLOP | TFLOP/s |\n|---|---:|---:|---:|`);
  console.log(
    `| GEMMs (eager events) | ${
      split.GEMM.toFixed(2)
    } | ${out.flops.gemmTflop} | ${out.flops.gemmTflopsEager} |`,
  );
  console.log(
    `| attention fwd+bwd (eager events) | ${
      split.attention.toFixed(2)
    } | ${out.flops.attentionTflop} | ${out.flops.attentionTflopsEager} |`,
  );
  console.log(`| rest (eager events) | ${split.rest.toFixed(2)} | | |`);
  console.log(`| one eager iteration (sum) | ${eagerMs.toFixed(2)} | | |`);
  console.log(
    `| one graph replay (median of ${replays.length - 1}) | ${
      replayMs.toFixed(2)
    } | ${out.flops.countedTflop} | ${out.flops.achievedTflops} |`,
  );
  console.log(
    `floor: ${NUMBERS_TFLOP} TFLOP / ${TFLOPS_FLOOR} TFLOP/s = ${
      (NUMBERS_TFLOP / TFLOPS_FLOOR * 1000).toFixed(1)
    } ms`,
  );
  console.log(
    `tuneBlock default ${iters} iters: ${dflt.seconds.toFixed(2)} s; light 50: ${light.seconds.toFixed(2)} s`,
  );
  const sorted = Object.entries(ops).sort((a, b) => b[1].ms - a[1].ms);
  console.log(sorted.map(([k, v]) => `${k} ${v.ms} ms/${v.calls}`).join(", "));
}

// ---- part: pipeline ------------------------------------------------------------------------------
/** Host wall seconds spent inside the backend's transfer methods (awaited until they resolve). */
function hostTimed(be: CudaBackend) {
  const seconds: Record<string, number> = {};
  const view = Object.create(be) as CudaBackend;
  for (const op of ["upload", "read", "quantizeWeights", "sync"]) {
    const orig = (be as unknown as Record<string, (...a: unknown[]) => unknown>)[op];
    Object.defineProperty(view, op, {
      value: function (this: unknown, ...args: unknown[]) {
        const t0 = performance.now();
        const add = () => seconds[op] = (seconds[op] ?? 0) + (performance.now() - t0) / 1000;
        const r = orig.apply(this, args);
        if (r instanceof Promise) return r.finally(add);
        add();
        return r;
      },
    });
  }
  return { view, seconds };
}

async function pipelinePart(): Promise<void> {
  const name = String(f.recipe ?? "default");
  const recipe = getRecipe(name);
  using real = createCudaBackend();
  const timed = hostTimed(real);
  const be = timed.view;
  const blocks: BlockReport[] = [];
  let deviceUsedMax = 0;
  const out = await Deno.makeTempDir({ prefix: "cuda8b-" });
  const t0 = performance.now();
  try {
    await quantize({
      model: String(f.model),
      outputDir: `${out}/q`,
      formats: ["auto_round"],
      scheme: resolveScheme("W4A16"),
      iters: recipe.iters,
      lr: recipe.lr ?? undefined,
      minmaxLr: recipe.minmax_lr ?? undefined,
      disableOptRtn: recipe.disable_opt_rtn,
      nsamples: SAMPLES,
      seqlen: SEQ,
      batchSize: BATCH,
      dataset: String(f.dataset),
      maxShardSize: 5e9,
      backend: be,
      onBlock: (r) => {
        blocks.push(r);
        const { free, total } = be.rt.ctx.memInfo();
        deviceUsedMax = Math.max(deviceUsedMax, total - free);
      },
    }, stderrLog());
  } finally {
    await Deno.remove(out, { recursive: true }).catch(() => {});
  }
  const seconds = (performance.now() - t0) / 1000;
  const per = blocks.map((b) => b.seconds);
  const steady = per.length > 1 ? per.slice(1) : per;
  const perBlock = steady.reduce((a, b) => a + b, 0) / steady.length;
  const fixed = seconds - per.reduce((a, b) => a + b, 0);
  const total32 = fixed + per[0] + 31 * perBlock;
  const floorS = 32 * 200 * NUMBERS_TFLOP / TFLOPS_FLOOR;
  const mem = be.memoryStats();
  record({
    part: "pipeline",
    recipe: name,
    device: be.device,
    blocks: per.length,
    blockSeconds: per.map((s) => +s.toFixed(2)),
    steadyBlockSeconds: +perBlock.toFixed(2),
    outsideBlocksSeconds: +fixed.toFixed(1),
    totalSeconds: +seconds.toFixed(1),
    extrapolated32Minutes: +(total32 / 60).toFixed(2),
    ratioToFloor: recipe.iters === 200 ? +(total32 / floorS).toFixed(2) : undefined,
    peakDeviceGiB: +(mem.peakDriverBytes / GIB).toFixed(2),
    deviceUsedMaxGiB: +(deviceUsedMax / GIB).toFixed(2),
    peakHostRssGiB: +(hostPeakRssBytes() / GIB).toFixed(2),
    hostSecondsInBackendPerBlock: Object.fromEntries(
      Object.entries(timed.seconds).map(([k, v]) => [k, +(v / per.length).toFixed(2)]),
    ),
    losses: blocks.map((b) => [b.lossStart, b.lossBest, b.bestIter]),
  });
}

// ---- part: opt-RTN scale search on the host ------------------------------------------------------
/**
 * The opt-RTN path searches scales in JavaScript (int_quant.ts searchScalesSym, importance-weighted):
 * time it on `rows` rows of each Linear of block 0 and extrapolate to the whole block by weights.
 */
async function optRtnHostPart(): Promise<void> {
  using be = createCudaBackend();
  using ckpt = await openCheckpoint(String(f.model));
  const spec = ckpt.spec;
  using w = await loadBlockWeights(be, spec, ckpt.weights, 0, "bf16");
  const rows = Number(f.iters ?? 256);
  let seconds = 0, timedWeights = 0, blockWeights = 0;
  for (const l of BLOCK_LINEARS) {
    const [n, k] = w.linear[l].shape;
    blockWeights += n * k;
    using part = be.rows(w.linear[l], 0, rows);
    const wf = await be.read(part);
    const layout = { n: rows, k, g: 128 };
    const imatrix = Float32Array.from({ length: k }, (_, i) => 1 + (i % 7));
    const t0 = performance.now();
    const imp = importanceForWeight(imatrix, wf, layout, 4);
    searchScalesSym(wf, layout, 4, imp, 1e-5, Math.fround);
    seconds += (performance.now() - t0) / 1000;
    timedWeights += rows * k;
  }
  record({
    part: "optrtn-host",
    rowsPerLinear: rows,
    seconds: +seconds.toFixed(2),
    extrapolatedSecondsPerBlock: +(seconds * blockWeights / timedWeights).toFixed(0),
  });
}

// ---- summary -------------------------------------------------------------------------------------
function summary(file: string): void {
  const recs = Deno.readTextFileSync(file).trim().split("\n").map((l) => JSON.parse(l));
  console.log(
    `| run | s / block | outside blocks s | 32 blocks (min) | ×floor (3.0 min) | peak GPU GiB | peak RSS GiB |`,
  );
  console.log(`|---|---:|---:|---:|---:|---:|---:|`);
  for (const r of recs.filter((r) => r.part === "pipeline")) {
    console.log(
      `| ${r.recipe} | ${r.steadyBlockSeconds} | ${r.outsideBlocksSeconds} | ${r.extrapolated32Minutes} | ${
        r.ratioToFloor ?? ""
      } | ${r.peakDeviceGiB} (${r.deviceUsedMaxGiB} used) | ${r.peakHostRssGiB} |`,
    );
  }
  for (const r of recs.filter((r) => r.part === "pipeline")) {
    console.log(
      `${r.recipe}: host s/block inside backend transfers ${JSON.stringify(r.hostSecondsInBackendPerBlock)}`,
    );
  }
  for (const r of recs.filter((r) => r.part === "optrtn-host")) {
    console.log(`opt-RTN host search: ${r.extrapolatedSecondsPerBlock} s per block (timed ${r.seconds} s)`);
  }
  for (const r of recs.filter((r) => r.part === "iteration")) {
    console.log(
      `iteration: replay ${r.default.replayMsMedian} ms (${r.flops.achievedTflops} TFLOP/s of ${r.flops.countedTflop} TFLOP); eager GEMM ${r.eager.gemmMs} / attention ${r.eager.attentionMs} / rest ${r.eager.restMs} ms; tuneBlock default ${r.default.tuneBlockSeconds} s, light ${r.light.tuneBlockSeconds} s`,
    );
  }
}

if (f.summary) summary(String(f.summary));
else if (f.part === "iteration") await iterationPart();
else if (f.part === "pipeline") await pipelinePart();
else if (f.part === "optrtn-host") await optRtnHostPart();
else throw new Error("--part iteration|pipeline or --summary FILE");
