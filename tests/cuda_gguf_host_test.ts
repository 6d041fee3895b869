/**
 * The CUDA GGUF quantizer's arithmetic without a GPU: ffi/cuda/gguf_host_check.cu compiles the very
 * functions the kernels run (gguf_search.cuh, gguf_super.cuh, gguf_pack.cuh) for the CPU, and its
 * bytes must equal the host reference's (src/qmath/gguf/, via the CPU backend) under the bound of
 * tests/gguf_device_cases.ts — every type and mode, random and stories260K weights. The launches,
 * dtype loads and device intrinsics are checked on the GPU by cuda_gguf_test.ts. Skips (printing why)
 * when nvcc is not installed.
 */
import { ggufPlan } from "../src/backend/gguf_plan.ts";
import { ggufFlags } from "../src/backend/cuda/gguf.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { GgufBlockType, GgufQuantizeOptions } from "../src/backend/backend.ts";
import {
  compareBlocks,
  expectBlocks,
  GGUF_TYPES,
  MODES,
  randomImatrix,
  randomWeights,
  storiesWeights,
} from "./gguf_device_cases.ts";

const SRC = new URL("../ffi/cuda/gguf_host_check.cu", import.meta.url).pathname;

/** Build the checker once per run, or say why not. */
async function build(): Promise<{ bin?: string; reason?: string }> {
  const dir = await Deno.makeTempDir({ prefix: "autoround_gguf_" });
  const bin = `${dir}/gguf_host_check`;
  try {
    const r = await new Deno.Command("nvcc", {
      args: ["-std=c++17", "-O2", "-Xcompiler", "-ffp-contract=off", SRC, "-o", bin],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!r.success) throw new Error(new TextDecoder().decode(r.stderr));
    return { bin };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { reason: "nvcc is not installed" };
    throw e;
  }
}

const built = await build();
if (built.reason) console.log(`cuda_gguf_host_test skipped: ${built.reason}`);
const cpu = new CpuBackend();

/** Bytes from the compiled checker for the same plan the CUDA launcher would make. */
async function hostCheck(
  type: GgufBlockType,
  w: Float32Array,
  n: number,
  k: number,
  opts: Omit<GgufQuantizeOptions, "imatrix">,
  imatrix?: Float32Array,
): Promise<Uint8Array> {
  const p = ggufPlan(type, n, k, opts, imatrix);
  const head = Int32Array.from([
    p.code,
    ggufFlags(p),
    n,
    k,
    p.gs,
    p.sgs,
    p.bs,
    p.ts,
    p.superBits,
    p.grid.length,
    p.superGrid.length,
  ]);
  const parts = [head, p.grid, p.superGrid, w, ...(p.imatrix ? [imatrix!] : [])];
  const input = new Uint8Array(parts.reduce((a, x) => a + x.byteLength, 0));
  let at = 0;
  for (const x of parts) {
    input.set(new Uint8Array(x.buffer, x.byteOffset, x.byteLength), at);
    at += x.byteLength;
  }
  const child = new Deno.Command(built.bin!, { stdin: "piped", stdout: "piped", stderr: "piped" }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(input);
  await writer.close();
  const r = await child.output();
  if (!r.success) throw new Error(`gguf_host_check failed: ${new TextDecoder().decode(r.stderr)}`);
  if (r.stdout.length !== p.bytes) {
    throw new Error(`gguf_host_check wrote ${r.stdout.length} bytes, not ${p.bytes}`);
  }
  return r.stdout;
}

async function check(
  label: string,
  type: GgufBlockType,
  w: Float32Array,
  n: number,
  k: number,
  opts: Omit<GgufQuantizeOptions, "imatrix">,
  imatrix?: Float32Array,
): Promise<void> {
  const got = await hostCheck(type, w, n, k, opts, imatrix);
  using cw = cpu.upload(w, [n, k]);
  using ci = imatrix ? cpu.upload(imatrix, [k]) : undefined;
  const ref = await cpu.ggufQuantize(cw, type, { ...opts, imatrix: ci });
  expectBlocks(label, compareBlocks(type, got, ref, w, k, imatrix));
}

Deno.test({
  name: "CUDA GGUF functions on the CPU: every type and mode equals the host on random weights",
  ignore: built.bin === undefined,
  async fn() {
    const seed = crypto.getRandomValues(new Uint32Array(1))[0];
    const n = 8, k = 512, w = randomWeights(n, k, seed), im = randomImatrix(k, seed + 1);
    for (const t of GGUF_TYPES) {
      for (const m of MODES) {
        await check(`${t} ${m.name} (seed ${seed})`, t, w, n, k, m.opts, m.imatrix ? im : undefined);
      }
    }
  },
});

Deno.test({
  name: "CUDA GGUF functions on the CPU: every type equals the host on stories260K's weights",
  ignore: built.bin === undefined,
  async fn() {
    const { w, n, k } = await storiesWeights();
    const im = randomImatrix(k, 5);
    for (const t of GGUF_TYPES) {
      for (const m of MODES.slice(0, 2)) {
        await check(`stories260K ${t} ${m.name}`, t, w, n, k, m.opts, m.imatrix ? im : undefined);
      }
    }
  },
});
