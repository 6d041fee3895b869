/**
 * WebGPU speed at Llama-3-8B shapes (issue #6), timed on the GPU with timestamp queries (median of
 * the repetitions; each repetition is its own compute pass between two timestamps, after a warm-up
 * that compiles). Inputs are random (a hash, filled on the GPU), C is poisoned with NaN before every
 * variant, and every timed product is checked on sampled entries against float64 dot products of the
 * same inputs recomputed on the host.
 *
 * Sections:
 * 1. scaling — x·Wᵀ in f32 at 1024³, 2048³, 4096³, 8192³ and 16384×14336×4096 for the current kernel
 *    and the looped one it replaced (bench/webgpu_matmul_v0.wgsl), with host wall-clock beside the GPU
 *    time: time ∝ FLOPs says the kernel is slow, a constant says overhead.
 * 2. tiles — the three GEMM forms of a Linear's training step at 16384 tokens (x·Wᵀ, dY·W, dYᵀ·X with
 *    hidden 4096 and intermediate 14336) in f32 and f16 for each candidate tile, plus the opt-in
 *    packed-f16 partial sums (ACC16) for f16.
 * 3. seconds per SignRound block-iteration (8 × 2048 tokens), a captured iteration replayed.
 * Each row states the floor it aims at: the plain-FP ceiling of the GPU (H100 SXM: 67 TFLOP/s f32
 * FMA, 134 TFLOP/s f16 HFMA2, no tensor cores in WGSL). The default f16 kernels accumulate in f32, so
 * their own ceiling is the f32 FMA rate; the table shows both percentages.
 *
 * Usage: deno run -A bench/webgpu_matmul.ts [--quick] [--reps N] [--no-scaling] [--no-tiles]
 *          [--no-block] [--block-reps N] [--budget S] [--json FILE]
 *   --quick   small shapes (a smoke run on llvmpipe)
 *   --budget  seconds after which remaining measurements are skipped (default 150)
 */
import { runMatmul, WebGpuBackend } from "../src/backend/webgpu/mod.ts";
import { gpu, type GpuTensor } from "../src/backend/webgpu/tensor.ts";
import type { MatmulTile } from "../src/backend/webgpu/matmul.ts";
import { tileBytes, tileValid } from "../src/backend/webgpu/matmul.ts";
import type { Captured } from "../src/backend/webgpu/runtime.ts";
import { gpuTimes, profile } from "../src/backend/webgpu/timing.ts";
import { hostValue, randomFill } from "./webgpu_random.ts";
import { fill } from "../src/backend/webgpu/memory_ops.ts";
import { type BlockDims, blockFlops, LLAMA3_8B, setupBlock } from "./webgpu_block.ts";

const args = Deno.args;
const quick = args.includes("--quick");
const reps = Number(args[args.indexOf("--reps") + 1]) || 5;
const jsonOut = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;
const V0_SOURCE = await Deno.readTextFile(new URL("./webgpu_matmul_v0.wgsl", import.meta.url));

const be = await WebGpuBackend.create({ poolBytes: 2 ** 36, timestamps: true });
const rt = be.rt;
const h100 = /H100/i.test(be.device);
// Plain-FP ceilings (TFLOP/s): H100 SXM5 at boost; elsewhere unknown (override with env).
const CEIL_F32 = Number(Deno.env.get("CEILING_F32_TFLOPS")) || (h100 ? 67 : NaN);
const CEIL_F16 = Number(Deno.env.get("CEILING_F16_TFLOPS")) || (h100 ? 134 : NaN);

const [T, H, I] = quick ? [512, 256, 448] : [16384, 4096, 14336];
const FORMS = [
  { name: "x·Wᵀ (fwd)", M: T, N: I, K: H, transA: false, transB: true },
  { name: "dY·W (dX)", M: T, N: H, K: I, transA: false, transB: false },
  { name: "dYᵀ·X (dW)", M: I, N: H, K: T, transA: true, transB: false },
];
const fits = (t: MatmulTile, bytes = 4) =>
  tileValid(t) && tileBytes(t, bytes) <= rt.maxWorkgroupStorage &&
  (t.bm / 8) * (t.bn / 8) <= rt.maxInvocations;
const TILES: MatmulTile[] = (quick ? [{ bm: 64, bn: 64, bk: 16 }] : [
  { bm: 128, bn: 128, bk: 8 },
  { bm: 128, bn: 128, bk: 16 },
  { bm: 64, bn: 128, bk: 8 },
  { bm: 64, bn: 128, bk: 16 },
  { bm: 128, bn: 64, bk: 16 },
  { bm: 64, bn: 64, bk: 16 },
]).filter((t) => fits(t));
const ACC16_TILES: MatmulTile[] = [
  { bm: 128, bn: 128, bk: 16 },
  { bm: 128, bn: 128, bk: 32 },
].filter((t) => fits(t, 2));

interface Row {
  section: string;
  what: string;
  dtype: string;
  detail: string;
  ms: number;
  wallMs?: number;
  tflops: number;
  floor: string;
  check: string;
}
const rows: Row[] = [];
const breakdown: string[] = [];
const pct = (x: number, c: number) => (Number.isFinite(c) ? `${(100 * x / c).toFixed(0)}%` : "n/a");
const ceil = (c: number) => (Number.isFinite(c) ? `${c} TF` : "? TF");
const num = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(3));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const tileName = (t: MatmulTile) => `${t.bm}×${t.bn}×${t.bk}`;

/** Wall-clock budget: later measurements are skipped (and said so) so the table always prints. */
const BUDGET_MS = Number(args[args.indexOf("--budget") + 1]) * 1000 || 150_000;
const start = performance.now();
const overBudget = () => performance.now() - start > BUDGET_MS;

interface Form {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
}
/**
 * ‖C−ref‖/‖ref‖ over sampled entries (rows 0, M−1 and two random rows; 6 columns each, N−1 among
 * them), ref in float64 from the host-recomputed inputs; NaN (an unwritten entry) fails.
 */
async function check(f: Form, c: GpuTensor, seedA: number, seedB: number, dtype: string): Promise<number> {
  let num2 = 0, den2 = 0;
  const rowsToCheck = [0, f.M - 1, Math.floor(f.M / 3), Math.floor((f.M * 7) / 9)];
  for (const i of rowsToCheck) {
    using r = be.rows(c, i, 1);
    const got = await be.read(r);
    for (const j of [0, f.N - 1, 1, Math.floor(f.N / 2), Math.floor(f.N / 5) + 3, (i * 131) % f.N]) {
      let ref = 0;
      for (let k = 0; k < f.K; k++) {
        const ia = f.transA ? k * f.M + i : i * f.K + k;
        const ib = f.transB ? j * f.K + k : k * f.N + j;
        ref += hostValue(ia, seedA, dtype) * hostValue(ib, seedB, dtype);
      }
      const g = got[j];
      if (!Number.isFinite(g)) return NaN;
      num2 += (g - ref) ** 2;
      den2 += ref * ref;
    }
  }
  return Math.sqrt(num2 / den2);
}

/** GPU ms (median of timestamped repetitions) after a warm-up; host wall-clock ms per call beside. */
async function timeIt(
  fn: () => void,
  n = reps,
  wallReps = n,
): Promise<{ ms: number; wallMs: number; firstMs: number }> {
  let t0 = performance.now();
  fn();
  await be.sync();
  const firstMs = performance.now() - t0;
  const ms = median(await gpuTimes(rt, fn, n));
  t0 = performance.now();
  for (let i = 0; i < wallReps; i++) fn();
  await be.sync();
  return { ms, wallMs: (performance.now() - t0) / wallReps, firstMs };
}

console.log(
  `device: ${be.device}; compute dtype ${be.computeDType}; ${reps} reps${quick ? " (quick shapes)" : ""}`,
);
if (!rt.timestamps) throw new Error("this bench needs timestamp-query");

// ---- 1. scaling: current kernel vs the looped v0, x·Wᵀ in f32.
if (!args.includes("--no-scaling")) {
  const sizes: [number, number, number][] = quick
    ? [[128, 128, 128], [256, 256, 256], [512, 512, 512]]
    : [[1024, 1024, 1024], [2048, 2048, 2048], [4096, 4096, 4096], [8192, 8192, 8192], [16384, 14336, 4096]];
  for (const [M, N, K] of sizes) {
    const f = { M, N, K, transA: false, transB: true };
    using a = gpu(be.full([M, K], 0, "f32"));
    using b = gpu(be.full([N, K], 0, "f32"));
    using c = gpu(be.full([M, N], 0, "f32"));
    randomFill(rt, a, 11), randomFill(rt, b, 23);
    for (const version of ["v0 (loops)", "current"]) {
      if (overBudget()) {
        console.log(`  over budget: skipping scaling ${M}×${N}×${K} ${version}`);
        continue;
      }
      const o = { ...f, kernelSource: version === "current" ? undefined : V0_SOURCE };
      const tile = { bm: 128, bn: 128, bk: 8 };
      fill(be, c, NaN);
      const big = 2 * M * N * K > 5e11 && version !== "current";
      const tm = await timeIt(() => runMatmul(rt, a, b, c, o, tile), big ? 2 : reps);
      const err = await check(f, c, 11, 23, "f32");
      const tf = 2 * M * N * K / tm.ms / 1e9;
      rows.push({
        section: "scaling",
        what: `x·Wᵀ ${M}×${N}×${K}`,
        dtype: "f32",
        detail: `${version} ${tileName(tile)}`,
        ms: tm.ms,
        wallMs: tm.wallMs,
        tflops: tf,
        floor: `${ceil(CEIL_F32)}: ${pct(tf, CEIL_F32)}`,
        check: err.toExponential(1),
      });
      console.log(
        `  scaling ${M}×${N}×${K} ${version}: gpu ${tm.ms.toFixed(3)} ms, wall ${tm.wallMs.toFixed(3)} ms, ` +
          `first ${tm.firstMs.toFixed(0)} ms, ${num(tf)} TFLOP/s, err ${err.toExponential(1)}`,
      );
    }
  }
}

// ---- 2. tiles at the 8B shapes.
for (const dtype of args.includes("--no-tiles") ? [] : ["f32", "f16"] as const) {
  if (dtype === "f16" && !rt.nativeF16) continue;
  for (const f of FORMS) {
    using a = gpu(be.full(f.transA ? [f.K, f.M] : [f.M, f.K], 0, dtype));
    using b = gpu(be.full(f.transB ? [f.N, f.K] : [f.K, f.N], 0, dtype));
    using c = gpu(be.full([f.M, f.N], 0, dtype));
    randomFill(rt, a, 5), randomFill(rt, b, 77);
    const flop = 2 * f.M * f.N * f.K;
    const variants = [
      ...TILES.map((tile) => ({ tile, acc16: false })),
      ...(dtype === "f16" ? ACC16_TILES.map((tile) => ({ tile, acc16: true })) : []),
    ];
    for (const { tile, acc16 } of variants) {
      if (overBudget()) {
        console.log(`  over budget: skipping ${f.name} ${dtype} tile ${tileName(tile)}`);
        continue;
      }
      fill(be, c, NaN);
      const tm = await timeIt(() => runMatmul(rt, a, b, c, { ...f, f16Partials: acc16 }, tile), reps, 2);
      const err = await check(f, c, 5, 77, dtype);
      const tf = flop / tm.ms / 1e9;
      const f16Floor = `${ceil(CEIL_F16)} f16: ${pct(tf, CEIL_F16)}`;
      const floor = dtype === "f32"
        ? `${ceil(CEIL_F32)} f32: ${pct(tf, CEIL_F32)}`
        : acc16
        ? f16Floor
        : `${f16Floor}; f32-acc ${ceil(CEIL_F32)}: ${pct(tf, CEIL_F32)}`;
      rows.push({
        section: "tiles",
        what: `${f.name} ${f.M}×${f.N}×${f.K}`,
        dtype,
        detail: `${tileName(tile)}${acc16 ? " f16-partials" : ""}`,
        ms: tm.ms,
        wallMs: tm.wallMs,
        tflops: tf,
        floor,
        check: err.toExponential(1),
      });
      console.log(
        `  ${f.name} ${dtype} ${rows.at(-1)!.detail}: gpu ${tm.ms.toFixed(2)} ms (wall ${
          tm.wallMs.toFixed(2)
        }, ` +
          `first ${tm.firstMs.toFixed(0)}), ${num(tf)} TFLOP/s, err ${err.toExponential(1)}`,
      );
    }
  }
}

// ---- 3. SignRound block-iteration.
if (!args.includes("--no-block")) {
  const d: BlockDims = quick
    ? { batch: 2, seqLen: 128, hidden: 256, inter: 448, heads: 4, kvHeads: 2, headDim: 64 }
    : LLAMA3_8B;
  for (const dtype of ["f16", "f32"] as const) {
    if (dtype === "f16" && !rt.nativeF16) continue;
    if (overBudget()) {
      console.log(`  over budget: skipping the ${dtype} block-iteration`);
      continue;
    }
    try {
      be.resetPeakMemory();
      using blk = setupBlock(be, d, dtype);
      // Recorded once and replayed, as the SignRound loop runs its iterations (Backend.capture).
      using graph = be.capture(() => blk.iterate());
      let t0 = performance.now();
      graph.replay();
      await be.sync();
      const firstMs = performance.now() - t0;
      const blockReps = Number(args[args.indexOf("--block-reps") + 1]) || 3;
      const n = firstMs > 20_000 ? 0 : Math.max(1, Math.min(blockReps, Math.floor(10_000 / firstMs)));
      const ms = n > 0 ? median(await gpuTimes(rt, graph as Captured, n)) : NaN;
      t0 = performance.now();
      for (let i = 0; i < n; i++) graph.replay();
      await be.sync();
      const wallMs = n > 0 ? (performance.now() - t0) / n : firstMs;
      const peakGiB = be.memoryStats().peakDeviceBytes / 2 ** 30;
      const fl = blockFlops(d);
      const floorS = fl / (CEIL_F32 * 1e12);
      rows.push({
        section: "block",
        what: `SignRound block-iteration ${d.batch}×${d.seqLen} tok, hidden ${d.hidden}`,
        dtype,
        detail: `${num(fl / 1e12)} TFLOP, peak GPU ${peakGiB.toFixed(2)} GiB`,
        ms: Number.isFinite(ms) ? ms : wallMs,
        wallMs,
        tflops: fl / (Number.isFinite(ms) ? ms : wallMs) / 1e9,
        floor: Number.isFinite(floorS)
          ? `${floorS.toFixed(3)} s at ${ceil(CEIL_F32)}: ${
            pct(floorS * 1000, Number.isFinite(ms) ? ms : wallMs)
          }`
          : "? (no ceiling known)",
        check: "-",
      });
      console.log(
        `  block ${dtype}: gpu ${(ms / 1000).toFixed(3)} s, wall ${
          (wallMs / 1000).toFixed(3)
        } s/iteration, ` +
          `peak pooled GPU memory ${peakGiB.toFixed(2)} GiB`,
      );
      if (n > 0) {
        // Where the iteration's time goes: each dispatch in its own timestamped pass, by kernel.
        const cap = graph as Captured;
        const per = await profile(rt, cap);
        const by = new Map<string, { ms: number; n: number }>();
        cap.labels.forEach((l, i) => {
          const e = by.get(l) ?? { ms: 0, n: 0 };
          e.ms += per[i], e.n++;
          by.set(l, e);
        });
        const total = per.reduce((x, y) => x + y, 0);
        const top = [...by].sort((x, y) => y[1].ms - x[1].ms).slice(0, 8);
        const text = top.map(([l, e]) => `${l} ${e.ms.toFixed(0)} ms/${e.n}`).join(", ");
        console.log(
          `  block ${dtype} by kernel (sum ${total.toFixed(0)} ms over ${per.length} dispatches): ${text}`,
        );
        breakdown.push(`${dtype} (Σ ${total.toFixed(0)} ms, ${per.length} dispatches): ${text}`);
      }
    } catch (e) {
      console.log(`  block ${dtype}: failed: ${(e as Error).message}`);
    }
  }
}

const header = [
  "what",
  "dtype",
  "detail",
  "gpu ms",
  "wall ms",
  "TFLOP/s",
  "floor (ceiling: % reached)",
  "err",
];
const body = rows.map((r) => [
  r.what,
  r.dtype,
  r.detail,
  r.ms.toFixed(2),
  r.wallMs?.toFixed(2) ?? "",
  num(r.tflops),
  r.floor,
  r.check,
]);
const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log(`\nWebGPU bench — ${be.device} (gpu ms: timestamp queries, median of ${reps})`);
console.log(line(header));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const r of body) console.log(line(r));
for (const b of breakdown) console.log(`block-iteration by kernel, ${b}`);
if (jsonOut) await Deno.writeTextFile(jsonOut, JSON.stringify({ device: be.device, rows }, null, 1));
be[Symbol.dispose]();
