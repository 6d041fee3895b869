/**
 * Shared setup of the WebGPU tests: one backend per test file (pipelines compile once per device;
 * on llvmpipe that is most of the test time), seeded fresh random inputs, relative-error checks.
 *
 * Without a WebGPU adapter every test is registered with `ignore: true` and the reason is printed;
 * with AUTOROUND_REQUIRE_GPU=1 (deno task test:gpu) a missing adapter fails instead.
 */
import { WebGpuBackend, type WebGpuOptions } from "../src/backend/webgpu/mod.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import type { Backend, Tensor } from "../src/backend/backend.ts";

/** Why the WebGPU tests cannot run here, or undefined when an adapter was found. */
export let skipReason: string | undefined;

/**
 * Open a backend for tests (poisoned allocations; compute dtype fixed to f32 so each file skips the
 * startup f16 check, tests name their dtypes), or undefined with `skipReason` set.
 */
export async function openGpu(opts: WebGpuOptions = {}): Promise<WebGpuBackend | undefined> {
  try {
    return await WebGpuBackend.create({ poison: true, computeDType: "f32", ...opts });
  } catch (e) {
    skipReason = (e as Error).message;
    if (Deno.env.get("AUTOROUND_REQUIRE_GPU")) throw e;
    console.log(`%cwebgpu tests skipped: ${skipReason}`, "color: yellow");
    return undefined;
  }
}

/** Register a test that needs a backend; ignored (with the printed reason) when there is none. */
export function gpuTest(
  name: string,
  be: WebGpuBackend | undefined,
  fn: (be: WebGpuBackend) => Promise<void>,
): void {
  Deno.test({
    name,
    ignore: be === undefined,
    // Pipelines and pooled buffers live for the whole file, not one test.
    sanitizeResources: false,
    sanitizeOps: false,
    fn: () => fn(be!),
  });
}

/** The CPU reference (f32). */
export const cpu: Backend = new CpuBackend();

/** A seeded generator (mulberry32); the seed is fresh each run and printed with any failure. */
export class Rng {
  private s: number;
  constructor(readonly seed = crypto.getRandomValues(new Uint32Array(1))[0]) {
    this.s = seed;
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** n values uniform in [lo, hi). */
  uniform(n: number, lo = -1, hi = 1): Float32Array {
    return Float32Array.from({ length: n }, () => lo + (hi - lo) * this.next());
  }
  /** n standard normal values (Box–Muller). */
  normal(n: number, std = 1): Float32Array {
    return Float32Array.from(
      { length: n },
      () => std * Math.sqrt(-2 * Math.log(1 - this.next())) * Math.cos(2 * Math.PI * this.next()),
    );
  }
  /** n integers in [0, k). */
  ints(n: number, k: number): Int32Array {
    return Int32Array.from({ length: n }, () => Math.floor(this.next() * k));
  }
}

/** ‖got − ref‖ / ‖ref‖ (NaN when got holds a NaN or the lengths differ). */
export function relErr(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) return NaN;
  let num = 0, den = 0;
  for (let i = 0; i < ref.length; i++) {
    if (!Number.isFinite(got[i]) && got[i] !== ref[i]) return NaN;
    num += (got[i] - ref[i]) ** 2;
    den += ref[i] ** 2;
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** Largest error seen per check name, printed by `reportErrors`. */
const worst = new Map<string, number>();

/** Assert relErr(got, ref) ≤ bound (NaN never passes); records the error under `what`. */
export function expectClose(
  what: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  bound: number,
  rng?: Rng,
): number {
  const e = relErr(got, ref);
  worst.set(what, Math.max(worst.get(what) ?? 0, e));
  if (!(e <= bound)) {
    throw new Error(`${what}: relative error ${e} exceeds ${bound}${rng ? ` (seed ${rng.seed})` : ""}`);
  }
  return e;
}

/** Assert exact equality of two integer arrays. */
export function expectEqual(what: string, got: ArrayLike<number>, ref: ArrayLike<number>, rng?: Rng): void {
  if (got.length !== ref.length) throw new Error(`${what}: length ${got.length} vs ${ref.length}`);
  let bad = 0, first = -1;
  for (let i = 0; i < ref.length; i++) {
    if (!Object.is(got[i], ref[i])) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad > 0) {
    throw new Error(
      `${what}: ${bad} of ${ref.length} differ, first at ${first}: ${got[first]} vs ${ref[first]}${
        rng ? ` (seed ${rng.seed})` : ""
      }`,
    );
  }
}

/** Print the worst relative error of every check (a table for the kernel headers and the report). */
export function reportErrors(file: string): void {
  Deno.test({
    name: `${file}: error table`,
    ignore: worst.size === 0 && skipReason !== undefined,
    fn() {
      const rows = [...worst].map(([k, v]) => `  ${k.padEnd(48)} ${v.toExponential(2)}`);
      console.log(`\n${file} max relative error:\n${rows.join("\n")}`);
    },
  });
}

/** Upload the same host data to both backends. */
export function both(
  be: Backend,
  data: Float32Array,
  shape: number[],
  dtype: "f32" | "f16" | "bf16" = "f32",
): [Tensor, Tensor] {
  return [be.upload(data, shape, dtype), cpu.upload(data, shape, dtype)];
}
