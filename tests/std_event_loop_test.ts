/**
 * yieldToEventLoop (src/std/event_loop.ts): a loop of synchronous steps that calls it lets a
 * timer (and so a signal listener) run while the loop is still going; the same loop awaiting only
 * settled promises does not. No clock is asserted: the loops are bounded by step counts.
 */
import { assert, assertEquals } from "./assert.ts";
import { YIELD_INTERVAL_MS, yieldToEventLoop } from "../src/std/event_loop.ts";

/** Busy-wait `ms` milliseconds: one synchronous step of a long computation. */
function busy(ms: number): void {
  const t = performance.now();
  while (performance.now() - t < ms) { /* compute */ }
}

/** Steps of 5 ms run until a 0 ms timer has fired; returns the steps it took, or -1 if it never did. */
async function stepsUntilTimer(pause: () => Promise<void> | void, maxSteps: number): Promise<number> {
  let fired = false;
  const timer = setTimeout(() => fired = true, 0);
  try {
    for (let i = 0; i < maxSteps; i++) {
      if (fired) return i;
      busy(5);
      await pause();
    }
    return -1;
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("a busy loop that calls yieldToEventLoop lets a timer run within a few intervals", async () => {
  // Enough steps for several intervals of busy time (5 ms a step).
  const steps = await stepsUntilTimer(yieldToEventLoop, (YIELD_INTERVAL_MS / 5) * 4);
  assert(steps > 0, "the timer fired while the loop ran");
});

Deno.test("the same loop awaiting settled promises only never lets the timer run", async () => {
  assertEquals(await stepsUntilTimer(() => Promise.resolve(), (YIELD_INTERVAL_MS / 5) * 4), -1);
});

Deno.test("yieldToEventLoop does not yield again right after a turn", async () => {
  busy(YIELD_INTERVAL_MS + 1);
  const first = yieldToEventLoop();
  assert(first instanceof Promise, "a turn after an interval of busy time");
  await first;
  assertEquals(yieldToEventLoop(), undefined, "no turn right after one");
});
