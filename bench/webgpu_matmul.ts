/**
 * WebGPU speed at Llama-3-8B shapes (issue #6): the three GEMM forms of a Linear's training step at
 * 16384 tokens (x·Wᵀ, dY·W, dYᵀ·X with hidden 4096 and intermediate 14336) in f32 and f16 for each
 * candidate tile, and seconds per SignRound block-iteration (8 × 2048 tokens). Each row states the
 * floor it aims at: the plain-FP ceiling of the GPU (H100 SXM: 67 TFLOP/s f32 FMA, 134 TFLOP/s f16
 * HFMA2, no tensor cores in WGSL). The default f16 kernels accumulate in f32, so their own ceiling
 * is the f32 FMA rate; the table shows both percentages. "f16-partials" rows are the opt-in ACC16
 * kernel (packed f16 FMAs over one K tile, then added in f32), which can approach the f16 rate.
 *
 * Usage: deno run -A bench/webgpu_matmul.ts [--quick] [--reps N] [--no-block] [--budget S] [--json FILE]
 *   --quick   small shapes (a smoke run on llvmpipe)
 *   --budget  seconds after which remaining measurements are skipped (default 150)
 */
import { runMatmul, WebGpuBackend } from "../src/backend/webgpu/mod.ts";
import { gpu } from "../src/backend/webgpu/tensor.ts";
import type { MatmulTile } from "../src/backend/webgpu/matmul.ts";
import { tileBytes } from "../src/backend/webgpu/matmul.ts";
import { type BlockDims, blockFlops, LLAMA3_8B, setupBlock } from "./webgpu_block.ts";

const args = Deno.args;
const quick = args.includes("--quick");
const reps = Number(args[args.indexOf("--reps") + 1]) || (quick ? 2 : 5);
const jsonOut = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;

const be = await WebGpuBackend.create({ poolBytes: 2 ** 36 });
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
const TILES: MatmulTile[] = [
  { bm: 128, bn: 128, bk: 8 },
  { bm: 128, bn: 128, bk: 16 },
  { bm: 64, bn: 128, bk: 8 },
  { bm: 64, bn: 64, bk: 8 },
].filter((t) => tileBytes(t) <= be.rt.maxWorkgroupStorage && (t.bm / 8) * (t.bn / 8) <= be.rt.maxInvocations);
const ACC16_TILES: MatmulTile[] = [
  { bm: 128, bn: 128, bk: 16 },
  { bm: 128, bn: 128, bk: 32 },
].filter((t) => tileBytes(t, 2) <= be.rt.maxWorkgroupStorage);

interface Row {
  what: string;
  dtype: string;
  detail: string;
  ms: number;
  tflops: number;
  floor: string;
}
const rows: Row[] = [];
const pct = (x: number, c: number) => (Number.isFinite(c) ? `${(100 * x / c).toFixed(0)}%` : "n/a");
const ceil = (c: number) => (Number.isFinite(c) ? `${c} TF` : "? TF");
const num = (x: number) => (x >= 0.1 ? x.toFixed(2) : x.toPrecision(3));

/** Wall-clock budget: later measurements are skipped (and said so) so the table always prints. */
const BUDGET_MS = Number(args[args.indexOf("--budget") + 1]) * 1000 || 150_000;
const start = performance.now();
const overBudget = () => performance.now() - start > BUDGET_MS;

/** Mean ms of one call after a warm-up (which compiles), with fewer repetitions for slow calls. */
async function timeIt(fn: () => void): Promise<number> {
  let t0 = performance.now();
  fn();
  await be.sync();
  const first = performance.now() - t0;
  const n = Math.max(1, Math.min(reps, Math.floor(3000 / Math.max(first, 1))));
  t0 = performance.now();
  for (let i = 0; i < n; i++) fn();
  await be.sync();
  return (performance.now() - t0) / n;
}

console.log(
  `device: ${be.device}; compute dtype ${be.computeDType}; ${reps} reps${quick ? " (quick shapes)" : ""}`,
);
for (const dtype of ["f32", "f16"] as const) {
  if (dtype === "f16" && !be.rt.nativeF16) continue;
  for (const f of FORMS) {
    using a = gpu(be.full(f.transA ? [f.K, f.M] : [f.M, f.K], 0.01, dtype));
    using b = gpu(be.full(f.transB ? [f.N, f.K] : [f.K, f.N], 0.02, dtype));
    using c = gpu(be.full([f.M, f.N], 0, dtype));
    const flop = 2 * f.M * f.N * f.K;
    // f16 also runs the opt-in packed-f16 partial sums (ACC16), whose tiles are half the bytes.
    const variants = [
      ...TILES.map((tile) => ({ tile, acc16: false })),
      ...(dtype === "f16" ? ACC16_TILES.map((tile) => ({ tile, acc16: true })) : []),
    ];
    for (const { tile, acc16 } of variants) {
      if (overBudget()) {
        console.log(
          `  over the ${
            BUDGET_MS / 1000
          } s budget: skipping ${f.name} ${dtype} tile ${tile.bm}×${tile.bn}×${tile.bk}`,
        );
        continue;
      }
      const ms = await timeIt(() => runMatmul(be.rt, a, b, c, { ...f, f16Partials: acc16 }, tile));
      const tf = flop / ms / 1e9;
      const f16Floor = `${ceil(CEIL_F16)} f16 HFMA2: ${pct(tf, CEIL_F16)}`;
      const floor = dtype === "f32"
        ? `${ceil(CEIL_F32)} f32 FMA: ${pct(tf, CEIL_F32)}`
        : acc16
        ? f16Floor
        : `${f16Floor} (f32-acc ceiling ${ceil(CEIL_F32)}: ${pct(tf, CEIL_F32)})`;
      rows.push({
        what: `matmul ${f.name} ${f.M}×${f.N}×${f.K}`,
        dtype,
        detail: `tile ${tile.bm}×${tile.bn}×${tile.bk}${acc16 ? " f16-partials" : ""}`,
        ms,
        tflops: tf,
        floor,
      });
      console.log(
        `  ${rows.at(-1)!.what} ${dtype} ${rows.at(-1)!.detail}: ${ms.toFixed(2)} ms, ${num(tf)} TFLOP/s`,
      );
    }
  }
}

if (!args.includes("--no-block")) {
  const d: BlockDims = quick
    ? { batch: 2, seqLen: 128, hidden: 256, inter: 448, heads: 4, kvHeads: 2, headDim: 64 }
    : LLAMA3_8B;
  for (const dtype of ["f16", "f32"] as const) {
    if (dtype === "f16" && !be.rt.nativeF16) continue;
    if (overBudget()) {
      console.log(`  over the ${BUDGET_MS / 1000} s budget: skipping the ${dtype} block-iteration`);
      continue;
    }
    try {
      using blk = setupBlock(be, d, dtype);
      // Recorded once and replayed, as the SignRound loop runs its iterations (Backend.capture).
      using graph = be.capture(() => blk.iterate());
      const ms = await timeIt(() => graph.replay());
      const fl = blockFlops(d);
      const floorS = fl / (CEIL_F32 * 1e12);
      rows.push({
        what: `SignRound block-iteration ${d.batch}×${d.seqLen} tok, hidden ${d.hidden}`,
        dtype,
        detail: `${num(fl / 1e12)} TFLOP`,
        ms,
        tflops: fl / ms / 1e9,
        floor: Number.isFinite(floorS)
          ? `${floorS.toFixed(3)} s at ${ceil(CEIL_F32)}: ${pct(floorS * 1000, ms)}`
          : "? (no ceiling known)",
      });
      console.log(`  block ${dtype}: ${(ms / 1000).toFixed(3)} s/iteration`);
    } catch (e) {
      console.log(`  block ${dtype}: failed: ${(e as Error).message}`);
    }
  }
}

const header = ["what", "dtype", "detail", "ms", "TFLOP/s", "floor (ceiling: % reached)"];
const body = rows.map((r) => [r.what, r.dtype, r.detail, r.ms.toFixed(2), num(r.tflops), r.floor]);
const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log(`\nWebGPU bench — ${be.device}`);
console.log(line(header));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const r of body) console.log(line(r));
if (jsonOut) await Deno.writeTextFile(jsonOut, JSON.stringify({ device: be.device, rows }, null, 1));
be[Symbol.dispose]();
