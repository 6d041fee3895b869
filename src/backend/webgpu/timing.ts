/**
 * GPU time by timestamp queries (devices with `timestamp-query`, opened with `timestamps: true`):
 * whole captured iterations, or each dispatch of one, each in its own timestamped compute pass. For
 * the benchmarks; the backend itself never times.
 */
import { BackendError } from "../../errors.ts";
import type { Captured, GpuRuntime } from "./runtime.ts";

/**
 * GPU time of the dispatches `work` makes, by timestamp queries: `work` (a function, captured here,
 * or an existing capture) is replayed `reps` times, each replay in its own compute pass between two
 * timestamps, all in one submission after the work queued so far. Returns milliseconds per replay (needs `timestamps`).
 *
 * @example
 * ```ts
 * const ms = await gpuTimes(rt, () => runMatmul(rt, a, b, c, {}), 5);
 * ```
 */
export async function gpuTimes(
  rt: GpuRuntime,
  work: (() => void) | Captured,
  reps: number,
): Promise<number[]> {
  const own = typeof work === "function" ? rt.capture(work) : undefined;
  try {
    return await timePasses(rt, own ?? work as Captured, Array(reps).fill(undefined));
  } finally {
    own?.[Symbol.dispose]();
  }
}

/**
 * GPU milliseconds of each dispatch of a capture, each in its own timestamped pass (one replay):
 * where the time of a captured iteration goes, by the `labels` of the capture.
 */
export function profile(rt: GpuRuntime, cap: Captured): Promise<number[]> {
  return timePasses(rt, cap, cap.labels.map((_, i) => i));
}

/** One timestamped compute pass per entry of `passes` (undefined: all of `cap`, else dispatch i). */
async function timePasses(rt: GpuRuntime, cap: Captured, passes: (number | undefined)[]): Promise<number[]> {
  if (!rt.timestamps) throw new BackendError("timing needs a device with timestamp-query");
  if (passes.length > 2048) {
    // A query set holds at most 4096 timestamps.
    const head = await timePasses(rt, cap, passes.slice(0, 2048));
    return [...head, ...await timePasses(rt, cap, passes.slice(2048))];
  }
  const reps = passes.length;
  rt.flush();
  const n = 2 * reps;
  const qs = rt.device.createQuerySet({ type: "timestamp", count: n });
  const resolve = rt.device.createBuffer({
    size: 8 * n,
    usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
  });
  const staging = rt.device.createBuffer({
    size: 8 * n,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  try {
    const enc = rt.device.createCommandEncoder();
    for (let r = 0; r < reps; r++) {
      const pass = enc.beginComputePass({
        timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * r, endOfPassWriteIndex: 2 * r + 1 },
      });
      cap.encodeInto(pass, passes[r]);
      pass.end();
    }
    enc.resolveQuerySet(qs, 0, n, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, staging, 0, 8 * n);
    rt.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    rt.check();
    const t = new BigUint64Array(staging.getMappedRange().slice(0));
    return [...Array(reps).keys()].map((r) => Number(t[2 * r + 1] - t[2 * r]) / 1e6);
  } finally {
    staging.destroy();
    resolve.destroy();
    qs.destroy();
  }
}
