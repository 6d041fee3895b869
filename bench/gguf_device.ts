/**
 * The device GGUF quantizer (Backend.ggufQuantize: search, double quantization, packing) on a
 * 4096×14336 weight (Llama-3-8B's down projection) per type, with the importance matrix (AutoRound's
 * opt-RTN, the heaviest search), against its arithmetic floor and the host reference.
 *
 *   deno run -A bench/gguf_device.ts --device cuda                 # the real figures (H200)
 *   deno run -A bench/gguf_device.ts --device webgpu --rows 32     # llvmpipe smoke run
 *   options: --rows N --cols K --types Q4_0,Q4_K --reps R --peak-tflops P --host-rows H (0: skip)
 *
 * Floor: the searches are float32 scalar arithmetic (no tensor cores); `flops/elem` counts the float
 * operations of the kernels' loops (candidates × work per element, gguf_plan.ts's grids), and the
 * floor is that work at `--peak-tflops` (default: H200 FP32, 67 TFLOP/s; pass the adapter's for
 * WebGPU). Each byte of the output is re-derived from its codes, which the count includes (~2× per
 * code). The host column is src/qmath/gguf/ (single-threaded) timed on `--host-rows` rows and scaled.
 */
import type { Backend, GgufBlockType } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { type GgufPlan, ggufPlan } from "../src/backend/gguf_plan.ts";

function arg(name: string, def: string): string {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 && i + 1 < Deno.args.length ? Deno.args[i + 1] : def;
}

const device = arg("device", "cuda");
const rows = Number(arg("rows", "4096")), cols = Number(arg("cols", "14336"));
const reps = Number(arg("reps", "3")), peak = Number(arg("peak-tflops", "67"));
const hostRows = Number(arg("host-rows", "8"));
const types = arg("types", "Q4_0,Q4_1,Q5_0,Q5_1,Q8_0,Q2_K,Q3_K,Q4_K,Q5_K,Q6_K").split(",") as GgufBlockType[];

async function open(): Promise<Backend> {
  if (device === "cuda") {
    const { createCudaBackend } = await import("../src/backend/cuda/cuda_backend.ts");
    return createCudaBackend({ computeDType: "f32" });
  }
  const { WebGpuBackend } = await import("../src/backend/webgpu/mod.ts");
  return await WebGpuBackend.create({ computeDType: "f32" });
}

/** Float operations per weight of the kernels' loops for this plan (an estimate from the code). */
function flopsPerElem(p: GgufPlan): number {
  const pack = 2 * 12;
  if (p.family === "legacy") {
    return (p.optRtn && (p.code === 0 || p.code === 2 || p.code === 4) ? (p.grid.length + 1) * 9 : 10) + pack;
  }
  if (p.family === "kasym") return p.grid.length * 20 + 30 + pack;
  // Q3_K without an imatrix: 5 rounds of the code-moving search (~14 ops and a division each).
  return (p.imatrix || p.bits === 6 ? (p.grid.length + 1) * 9 : 5 * 16 + 10) + pack;
}

let seed = 7;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);
const w = Float32Array.from({ length: rows * cols }, () => (rand() + rand() + rand() - 1.5) * 0.03);
const im = Float32Array.from({ length: cols }, () => (rand() + 0.05) ** 2);
const be = await open();
const cpu = new CpuBackend();
console.log(`device: ${be.device}; weight [${rows}, ${cols}] f32, opt-RTN with an importance matrix`);
using W = be.upload(w, [rows, cols]);
using I = be.upload(im, [cols]);

const table: string[] = [];
for (const t of types) {
  const p = ggufPlan(t, rows, cols, { optRtn: true }, im);
  await be.ggufQuantize!(W, t, { optRtn: true, imatrix: I }); // compile / JIT, warm caches
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await be.ggufQuantize!(W, t, { optRtn: true, imatrix: I });
    times.push(performance.now() - t0);
  }
  const ms = times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
  const flops = flopsPerElem(p) * rows * cols;
  const floorMs = flops / (peak * 1e9);
  let host = "";
  if (hostRows > 0) {
    const hr = Math.min(hostRows, rows);
    using hw = cpu.upload(w.subarray(0, hr * cols), [hr, cols]);
    using hi = cpu.upload(im, [cols]);
    const t0 = performance.now();
    await cpu.ggufQuantize(hw, t, { optRtn: true, imatrix: hi });
    host = ((performance.now() - t0) * (rows / hr) / 1000).toFixed(1);
  }
  const line =
    `| ${t.padEnd(4)} | ${ms.toFixed(1).padStart(9)} | ${String(flopsPerElem(p)).padStart(10)} | ` +
    `${(flops / (ms * 1e9)).toFixed(2).padStart(8)} | ${floorMs.toFixed(2).padStart(8)} | ` +
    `${((floorMs / ms) * 100).toFixed(1).padStart(6)}% | ${host.padStart(9)} |`;
  console.log(line);
  table.push(line);
}
console.log(
  `\nGGUF device quantizer, ${be.device}, [${rows}, ${cols}], median of ${reps}, floor at ${peak} TFLOP/s`,
);
console.log("| type | device ms | flops/elem | TFLOP/s | floor ms | of floor | host s (scaled) |");
console.log("| ---- | --------: | ---------: | ------: | -------: | -------: | --------------: |");
for (const l of table) console.log(l);
