/**
 * Turns of the event loop inside long computations.
 *
 * A loop of synchronous work (the CPU backend's kernels, CUDA launches through FFI) that only
 * awaits promises already settled never returns to the event loop, so signal listeners (Ctrl-C:
 * src/cli/interrupt.ts) and timers wait until the whole loop ends. Loops that can run for minutes
 * (SignRound's iterations, evaluation batches, generated tokens) call {@link yieldToEventLoop}
 * once per step: it gives the event loop one turn when at least {@link YIELD_INTERVAL_MS} passed
 * since the last turn it gave, and costs one clock read otherwise (a turn is a `setTimeout(0)`,
 * about 2 ms; measured on the 2-core build machine, 2026-12).
 *
 * @example
 * ```ts
 * for (let i = 0; i < iters; i++) {
 *   step(i);
 *   await yieldToEventLoop();
 * }
 * ```
 */

/** Busy time between two turns of the event loop: well under a person's patience after Ctrl-C. */
export const YIELD_INTERVAL_MS = 100;

let lastTurn = performance.now();

/** One turn of the event loop if {@link YIELD_INTERVAL_MS} passed since the last one; otherwise nothing. */
export function yieldToEventLoop(): Promise<void> | void {
  const now = performance.now();
  if (now - lastTurn < YIELD_INTERVAL_MS) return;
  return new Promise((resolve) =>
    setTimeout(() => {
      lastTurn = performance.now();
      resolve();
    }, 0)
  );
}
