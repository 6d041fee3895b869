/**
 * Shared pieces of the CUDA tests: one backend per compute dtype (created on first use), a test
 * wrapper that skips with a printed reason when no CUDA device can be opened (CI has none), the
 * CPU reference, seeded random inputs, output poisoning, and the relative-error check METHOD.md
 * asks for (‖out − ref‖₂ / ‖ref‖₂; NaN never passes). Errors are also appended to the JSON file
 * named by AUTOROUND_CUDA_REPORT so one run's figures can be collected.
 */
import type { Backend, DType, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { createCudaBackend, type CudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import { probeCuda } from "../src/backend/cuda/runtime.ts";

const probe = probeCuda();
const requireGpu = Deno.env.get("AUTOROUND_REQUIRE_GPU") === "1";
if (!probe.ok) {
  if (requireGpu) throw new Error(`AUTOROUND_REQUIRE_GPU=1 but CUDA is unavailable: ${probe.reason}`);
  console.log(`CUDA tests skipped: ${probe.reason}`);
}

/** Whether CUDA tests run here. */
export const cudaAvailable = probe.ok;

const backends = new Map<string, CudaBackend>();
/** The shared CUDA backend for a compute dtype. */
export function cuda(computeDType: "bf16" | "f32" = "bf16"): CudaBackend {
  let be = backends.get(computeDType);
  if (!be) {
    be = createCudaBackend({ computeDType });
    backends.set(computeDType, be);
  }
  return be;
}

/** The CPU reference (f32). */
export const cpu: CpuBackend = new CpuBackend();

/** A Deno test that runs only where a CUDA device is present. */
export function cudaTest(name: string, fn: () => Promise<void> | void): void {
  Deno.test({
    name: `cuda: ${name}`,
    ignore: !cudaAvailable,
    // The driver library and its worker-thread waits outlive single tests by design.
    sanitizeResources: false,
    sanitizeOps: false,
    fn,
  });
}

/** Deterministic random numbers (xorshift), so a failure reproduces; seeds differ per call site. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = (seed * 2654435761) >>> 0 || 1;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.s = x;
    return x / 4294967296;
  }
  /** Normal(0, std) by Box–Muller. */
  normal(n: number, std = 1): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const u = Math.max(this.next(), 1e-12), v = this.next();
      out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
    }
    return out;
  }
  uniform(n: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }
  ints(n: number, lo: number, hi: number): Int32Array {
    const out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = lo + Math.floor(this.next() * (hi - lo));
    return out;
  }
}

/** A fresh seed per run (printed with failures) unless AUTOROUND_TEST_SEED fixes it. */
export function freshSeed(): number {
  const fixed = Deno.env.get("AUTOROUND_TEST_SEED");
  return fixed ? Number(fixed) : Math.floor(Math.random() * 2 ** 31);
}

/** Same data on both backends. */
export function pair(
  be: Backend,
  data: Float32Array,
  shape: readonly number[],
  dtype: DType = "f32",
): [Tensor, Tensor] {
  return [be.upload(data, shape, dtype), cpu.upload(data, shape, dtype)];
}

/**
 * Fill the allocator's next block of this size with NaN (or -777 for integers) and free it: the
 * caching allocator hands exactly that block to the op that allocates the same size next, so an
 * element the op forgets to write stays NaN and fails the check.
 */
export function poison(be: Backend, shape: readonly number[], dtype: DType): void {
  const t = be.full(shape, dtype === "i32" || dtype === "u8" ? -777 : NaN, dtype);
  t[Symbol.dispose]();
}

/** ‖a − b‖₂ / ‖b‖₂ (Infinity when a has a NaN or the lengths differ). */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]) || (Number.isNaN(b[i]) !== Number.isNaN(a[i]))) return Infinity;
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

const reportFile = Deno.env.get("AUTOROUND_CUDA_REPORT");

/** Assert relErr(out, ref) ≤ bound and record the figure. */
export function expectClose(
  name: string,
  out: ArrayLike<number>,
  ref: ArrayLike<number>,
  bound: number,
): number {
  const e = relErr(out, ref);
  console.log(`  ${name}: rel err ${e.toExponential(2)} (bound ${bound.toExponential(0)})`);
  if (reportFile) {
    Deno.writeTextFileSync(reportFile, JSON.stringify({ name, relErr: e, bound }) + "\n", { append: true });
  }
  if (!(e <= bound)) throw new Error(`${name}: relative error ${e} exceeds ${bound}`);
  return e;
}

/** Read a tensor from either backend. */
export function readBoth(a: Tensor, b: Tensor): Promise<[Float32Array, Float32Array]> {
  return Promise.all([a.backend.read(a), b.backend.read(b)]);
}

/** Assert exact equality of two integer-like arrays. */
export function expectEqual(name: string, a: ArrayLike<number>, b: ArrayLike<number>): void {
  if (a.length !== b.length) throw new Error(`${name}: lengths ${a.length} vs ${b.length}`);
  let bad = 0, first = -1;
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i]) && !(a[i] === 0 && b[i] === 0)) {
      bad++;
      if (first < 0) first = i;
    }
  }
  console.log(`  ${name}: ${bad} of ${a.length} differ`);
  if (reportFile) {
    Deno.writeTextFileSync(reportFile, JSON.stringify({ name, mismatches: bad, of: a.length }) + "\n", {
      append: true,
    });
  }
  if (bad) {
    throw new Error(`${name}: ${bad} of ${a.length} differ (first at ${first}: ${a[first]} vs ${b[first]})`);
  }
}
