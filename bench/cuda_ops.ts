/**
 * CUDA backend micro-benchmark: each row is a measured figure next to its floor (DESIGN.md
 * practice 10). Floors measured on this workplace's H100 (KINDS.md): bf16 dense ≈ 800 TFLOP/s,
 * device copy ≈ 3.0 TB/s (bytes read + written).
 *
 *   deno run -A bench/cuda_ops.ts            # full table (needs a CUDA device)
 *   deno run -A bench/cuda_ops.ts --quick    # smaller shapes
 *
 * Rows: cuBLASLt bf16 GEMMs of a Llama-3-8B block at 16384 tokens (forward x·Wᵀ, input gradient
 * dY·W, weight gradient dYᵀ·X for q/o, k/v, gate/up and down), causal GQA attention forward and
 * backward (B=8, T=2048, 32 heads, 8 kv heads, head dim 128), fake-quant forward/backward of a
 * 14336×4096 weight (group 128), a few memory-bound ops, and the host cost of one launch.
 */
import type { Tensor } from "../src/backend/backend.ts";
import { createCudaBackend } from "../src/backend/cuda/cuda_backend.ts";

const quick = Deno.args.includes("--quick");
const TFLOPS_FLOOR = 800;
const TBS_FLOOR = 3.0;

const be = createCudaBackend({ computeDType: "bf16" });
console.log(`device: ${be.device}`);

interface Row {
  group: string;
  name: string;
  ms: number;
  value: number;
  unit: "TFLOP/s" | "TB/s" | "µs";
  floor: number;
}
const rows: Row[] = [];
function record(group: string, name: string, ms: number, work: number, unit: Row["unit"]): void {
  const value = unit === "TFLOP/s" ? work / (ms * 1e9) : unit === "TB/s" ? work / (ms * 1e9) : ms * 1000;
  const floor = unit === "TFLOP/s" ? TFLOPS_FLOOR : unit === "TB/s" ? TBS_FLOOR : 0;
  rows.push({ group, name, ms, value, unit, floor });
  console.log(`  ${group} ${name}: ${ms.toFixed(3)} ms, ${value.toFixed(unit === "µs" ? 2 : 1)} ${unit}`);
}

function rand(shape: number[], dtype: "bf16" | "f32" | "f16" = "bf16", scale = 1, seed = 1): Tensor {
  const t = be.full(shape, 0, dtype);
  be.fillRandom(t, -scale, scale, seed);
  return t;
}

// ---- GEMMs -------------------------------------------------------------------------------------
{
  const T = quick ? 4096 : 16384;
  const shapes: [string, number, number][] = [
    ["q/o 4096×4096", 4096, 4096],
    ["k/v 1024×4096", 1024, 4096],
    ["gate/up 14336×4096", 14336, 4096],
    ["down 4096×14336", 4096, 14336],
  ];
  for (const [label, N, K] of shapes) {
    using x = rand([T, K]);
    using w = rand([N, K], "bf16", 0.05, 2);
    using dy = rand([T, N], "bf16", 1, 3);
    using y = be.full([T, N], 0, "bf16");
    using dx = be.full([T, K], 0, "bf16");
    using dw = be.full([N, K], 0, "f32");
    const flops = 2 * T * N * K;
    record(
      "gemm",
      `${label} x·Wᵀ`,
      be.timeMs(() => be.matmul(x, w, { transB: true, out: y })),
      flops,
      "TFLOP/s",
    );
    record("gemm", `${label} dY·W`, be.timeMs(() => be.matmul(dy, w, { out: dx })), flops, "TFLOP/s");
    record(
      "gemm",
      `${label} dYᵀ·X`,
      be.timeMs(() => be.matmul(dy, x, { transA: true, out: dw })),
      flops,
      "TFLOP/s",
    );
  }
}

// ---- attention ---------------------------------------------------------------------------------
{
  const [B, T, H, KV, hd] = quick ? [2, 2048, 32, 8, 128] : [8, 2048, 32, 8, 128];
  const s = { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: hd, scale: 1 / Math.sqrt(hd) };
  using q = rand([B * T, H * hd]);
  using k = rand([B * T, KV * hd], "bf16", 1, 5);
  using v = rand([B * T, KV * hd], "bf16", 1, 6);
  using dO = rand([B * T, H * hd], "bf16", 1, 7);
  const fwdFlops = 4 * B * H * T * T * hd / 2; // causal: half the score matrix
  const fwd = be.attention(q, k, v, s);
  const msF = be.timeMs(
    () => {
      const r = be.attention(q, k, v, s);
      r.out[Symbol.dispose]();
      r.lse[Symbol.dispose]();
    },
    5,
    3,
  );
  record("attention", `fwd B${B} T${T} H${H}/${KV} d${hd}`, msF, fwdFlops, "TFLOP/s");
  const msB = be.timeMs(
    () => {
      const g = be.attentionBackward(q, k, v, fwd.out, fwd.lse, dO, s);
      for (const t of [g.dq, g.dk, g.dv]) t[Symbol.dispose]();
    },
    3,
    3,
  );
  record("attention", `bwd B${B} T${T} H${H}/${KV} d${hd}`, msB, 2.5 * fwdFlops, "TFLOP/s");
  const out = await be.read(fwd.out);
  if (out.some((x) => !Number.isFinite(x))) console.log("  WARNING: attention output has non-finite values");
}

// ---- fake-quant --------------------------------------------------------------------------------
{
  const [N, K, g] = quick ? [4096, 4096, 128] : [14336, 4096, 128];
  const G = K / g;
  using w = rand([N, K], "bf16", 0.05);
  using v = rand([N, K], "f32", 0.5, 9);
  using minS = be.full([N * G], 1);
  using maxS = be.full([N * G], 1);
  using wMin = be.full([N * G], -0.05);
  using wMax = be.full([N * G], 0.05);
  using dwq = rand([N, K], "f32", 1, 11);
  const state = { v, minScale: minS, maxScale: maxS, wMin, wMax };
  const p = { bits: 4, groupSize: g, sym: true, scaleDType: "f16" as const };
  const groupBytes = N * G * 4 * 4;
  const msF = be.timeMs(() => be.fakeQuant(w, state, p)[Symbol.dispose]());
  record(
    "fake-quant",
    `fwd ${N}×${K} g${g} (W bf16, V f32 → Ŵ bf16)`,
    msF,
    N * K * (2 + 4 + 2) + groupBytes,
    "TB/s",
  );
  const msB = be.timeMs(() => {
    const r = be.fakeQuantBackward(w, state, p, dwq);
    for (const t of [r.dv, r.dMinScale, r.dMaxScale]) t[Symbol.dispose]();
  });
  record(
    "fake-quant",
    `bwd ${N}×${K} g${g} (W, V, dŴ f32 → dV, dα, dβ)`,
    msB,
    N * K * (2 + 4 + 4 + 4) + groupBytes + N * G * 8,
    "TB/s",
  );
}

// ---- memory-bound ops --------------------------------------------------------------------------
{
  const [rowsN, hidden] = quick ? [4096, 4096] : [16384, 4096];
  using x = rand([rowsN, hidden]);
  using y = rand([rowsN, hidden], "bf16", 1, 13);
  using w = rand([hidden], "bf16", 1, 14);
  using f = be.full([rowsN, hidden], 0, "f32");
  const n = rowsN * hidden;
  record("memory", `copy bf16→f32 ${rowsN}×${hidden}`, be.timeMs(() => be.copy(f, x)), n * 6, "TB/s");
  record("memory", `add bf16 ${rowsN}×${hidden}`, be.timeMs(() => be.add(x, y, y)), n * 6, "TB/s");
  record(
    "memory",
    `rmsNorm bf16 ${rowsN}×${hidden}`,
    be.timeMs(() => be.rmsNorm(x, w, 1e-5)[Symbol.dispose]()),
    n * 4,
    "TB/s",
  );
  using g = rand([rowsN, 14336], "bf16", 1, 15);
  using u = rand([rowsN, 14336], "bf16", 1, 16);
  record(
    "memory",
    `siluMul bf16 ${rowsN}×14336`,
    be.timeMs(() => be.siluMul(g, u)[Symbol.dispose]()),
    rowsN * 14336 * 6,
    "TB/s",
  );
  using t = rand([rowsN, hidden], "bf16", 1, 17);
  record(
    "memory",
    `mseLoss bf16 ${rowsN}×${hidden}`,
    be.timeMs(() => {
      const r = be.mseLoss(x, t, undefined, 1);
      r.loss[Symbol.dispose]();
      r.dy[Symbol.dispose]();
    }),
    n * (2 + 2 + 4),
    "TB/s",
  );
}

// ---- launch overhead ---------------------------------------------------------------------------
{
  using a = be.full([256], 1);
  using b = be.full([256], 2);
  await be.sync();
  const n = 20000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) be.add(a, b, a);
  const host = (performance.now() - t0) / n;
  await be.sync();
  record("host", "one elementwise launch from JS (enqueue cost)", host, 1, "µs");
  using graph = be.captureGraph(() => {
    for (let i = 0; i < 100; i++) be.add(a, b, a);
  });
  const msG = be.timeMs(() => graph.replay(), 20, 5);
  record("host", "100 tiny launches replayed as one graph, per launch", msG / 100, 1, "µs");
}

console.log("\n| group | op | ms | achieved | floor | of floor |");
console.log("| --- | --- | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  const pct = r.floor ? `${((100 * r.value) / r.floor).toFixed(0)}%` : "";
  const floor = r.floor ? `${r.floor} ${r.unit}` : "";
  console.log(
    `| ${r.group} | ${r.name} | ${r.ms.toFixed(3)} | ${
      r.value.toFixed(r.unit === "µs" ? 2 : 1)
    } ${r.unit} | ${floor} | ${pct} |`,
  );
}
const out = Deno.env.get("AUTOROUND_BENCH_JSON");
if (out) await Deno.writeTextFile(out, JSON.stringify({ device: be.device, rows }, null, 1));
be[Symbol.dispose]();
