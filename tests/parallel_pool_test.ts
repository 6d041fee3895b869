/**
 * The worker pool (src/parallel/pool.ts): ranges cover the count exactly, workers write shared
 * memory in place, a worker's error reaches the caller, arrays off shared memory are refused, and the
 * serial pool runs everything on the calling thread.
 */
import { PoolError, splitRange, WorkerPool } from "../src/parallel/pool.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { failTask, fillTask, whoTask } from "./pool_tasks.ts";

Deno.test("splitRange cuts [0, count) into contiguous ranges of at least `grain`, at most `parts`", () => {
  for (
    const [count, parts, grain] of [[10, 3, 1], [7, 4, 1], [100, 3, 40], [5, 8, 1], [3, 2, 10], [0, 4, 1]]
  ) {
    const r = splitRange(count, parts, grain);
    assert(r.length <= parts, `${count}/${parts}: ${r.length} ranges`);
    if (count === 0) {
      assertEquals(r, []);
      continue;
    }
    assertEquals(r[0][0], 0);
    assertEquals(r[r.length - 1][1], count);
    for (let i = 1; i < r.length; i++) assertEquals(r[i][0], r[i - 1][1]);
    if (r.length > 1) {
      for (const [s, e] of r) {
        assert(e - s >= grain, `range ${s}..${e} below grain ${grain}`);
      }
    }
  }
  assertEquals(splitRange(100, 3, 40), [[0, 50], [50, 100]]);
});

Deno.test("a 3-thread pool runs each range once, on the calling thread and the workers, in place on shared memory", async () => {
  using pool = await WorkerPool.start(3);
  assertEquals(pool.threads, 3);
  const x = new Float32Array(new SharedArrayBuffer(4 * 1000));
  pool.run(fillTask, x.length, { x, k: 0.5 });
  for (let i = 0; i < x.length; i++) assert(x[i] === 0.5 * i, `x[${i}] = ${x[i]}`);
  const shared = (n: number) => new Int32Array(new SharedArrayBuffer(4 * n));
  const who = shared(99), runs = shared(99);
  pool.run(whoTask, who.length, { who, runs });
  assert(runs.every((r) => r === 1), "every unit ran exactly once");
  assert(who.includes(1) && who.includes(2), `both the calling thread and a worker ran ranges: ${who}`);
  // grain: 99 units in ranges of at least 60 → one range, on the calling thread.
  const who1 = shared(99), runs1 = shared(99);
  pool.run(whoTask, who1.length, { who: who1, runs: runs1 }, 60);
  assert(who1.every((w) => w === 2), "one range runs inline");
  // Explicit ranges, more than threads.
  const y = new Float32Array(new SharedArrayBuffer(4 * 10));
  pool.map(fillTask, [[0, 2], [2, 3], [3, 7], [7, 8], [8, 10]], { x: y, k: 1 });
  assertEquals([...y], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

Deno.test("an error in any range reaches run() with its message; the pool stays usable", async () => {
  using pool = await WorkerPool.start(2);
  for (const bad of [0, 7, 19]) {
    // The calling thread's own error is thrown as it is, a worker's as a PoolError.
    let caught: unknown;
    try {
      pool.run(failTask, 20, { bad }, 1);
    } catch (e) {
      caught = e;
    }
    assert(caught instanceof RangeError || caught instanceof PoolError, `unit ${bad}: ${caught}`);
    assert((caught as Error).message.includes(`unit ${bad} is bad`), (caught as Error).message);
  }
  const x = new Float32Array(new SharedArrayBuffer(4 * 10));
  pool.run(fillTask, x.length, { x, k: 2 });
  assertEquals(x[9], 18);
});

Deno.test("typed arrays off shared memory are refused (a worker's writes would be lost)", async () => {
  using pool = await WorkerPool.start(2);
  assertThrows(() => pool.run(fillTask, 10, { x: new Float32Array(10), k: 1 }), PoolError, "argument x");
});

Deno.test("the serial pool runs every task inline, with any arrays", () => {
  using pool = WorkerPool.serial();
  assertEquals(pool.threads, 1);
  const x = new Float32Array(10);
  pool.run(fillTask, x.length, { x, k: 3 });
  assertEquals(x[9], 27);
});

Deno.test("arguments that cannot be sent to a worker throw at once, and the pool stays usable", async () => {
  using pool = await WorkerPool.start(2);
  const x = new Float32Array(new SharedArrayBuffer(4 * 10));
  assertThrows(
    () => pool.run(fillTask, x.length, { x, k: 1, f: () => 0 } as { x: Float32Array; k: number }),
    DOMException,
  );
  pool.run(fillTask, x.length, { x, k: 3 });
  assertEquals(x[9], 27);
});
