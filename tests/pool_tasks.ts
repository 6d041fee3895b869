/**
 * Tasks for tests/parallel_pool_test.ts. A task module is loaded by every worker, so the tasks live
 * at the top level of a module of their own.
 */
import { defineTask, inPoolWorker } from "../src/parallel/pool.ts";

/** x[i] = k·i. */
export const fillTask = defineTask(import.meta.url, "fill", (a: { x: Float32Array; k: number }, s, e) => {
  for (let i = s; i < e; i++) a.x[i] = a.k * i;
});

/** who[i] = 1 when unit i ran in a worker, 2 on the calling thread; runs[i] counts its runs. Slow (2 ms per range). */
export const whoTask = defineTask(
  import.meta.url,
  "who",
  (a: { who: Int32Array; runs: Int32Array }, s, e) => {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
    a.who.fill(inPoolWorker() ? 1 : 2, s, e);
    for (let i = s; i < e; i++) Atomics.add(a.runs, i, 1);
  },
);

/** Throws for the range that holds unit `bad`. */
export const failTask = defineTask(import.meta.url, "fail", (a: { bad: number }, s, e) => {
  if (s <= a.bad && a.bad < e) throw new RangeError(`unit ${a.bad} is bad`);
});
