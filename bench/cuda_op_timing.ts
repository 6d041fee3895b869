/**
 * Device timing of a CUDA backend's ops for the benchmarks (bench/cuda_8b.ts): a view of the backend
 * whose ops are each bracketed by CUDA events (eager, per op), or whose captured work's replays are.
 */
import type { Backend } from "../src/backend/backend.ts";
import type { CudaBackend } from "../src/backend/cuda/cuda_backend.ts";
import type { CudaEvent } from "../ffi/cuda/driver.ts";

const TIMED_OPS = [
  "matmul",
  "attention",
  "attentionBackward",
  "fakeQuant",
  "fakeQuantBackward",
  "rmsNorm",
  "rmsNormBackward",
  "rope",
  "siluMul",
  "siluMulBackward",
  "add",
  "mseLoss",
  "accumulate",
  "signSgdStep",
  "keepBest",
  "copy",
  "gatherSamples",
  "full",
] as const;
export type OpName = typeof TIMED_OPS[number];
export const category = (op: OpName) =>
  op === "matmul" ? "GEMM" : op === "attention" || op === "attentionBackward" ? "attention" : "rest";

/**
 * A view of `be` without capture (so tuneBlock runs eagerly) whose ops are bracketed by timing
 * events; each keepBest call (one per iteration) marks an iteration boundary.
 */
export function instrumented(be: CudaBackend) {
  const calls: { op: OpName; a: CudaEvent; b: CudaEvent }[] = [];
  const marks: number[] = [];
  const view = Object.create(be) as CudaBackend & Record<string, unknown>;
  Object.defineProperty(view, "capture", { value: undefined });
  for (const op of TIMED_OPS) {
    const orig = (be as unknown as Record<string, (...a: unknown[]) => unknown>)[op];
    Object.defineProperty(view, op, {
      value: function (this: unknown, ...args: unknown[]) {
        if (op === "keepBest") marks.push(calls.length);
        const a = be.rt.ctx.createEvent(true), b = be.rt.ctx.createEvent(true);
        a.record(be.rt.stream);
        const r = orig.apply(this, args);
        b.record(be.rt.stream);
        calls.push({ op, a, b });
        return r;
      },
    });
  }
  /** Device ms per op name over calls [from, to), and dispose all events. */
  const collect = (from: number, to: number) => {
    const per = new Map<OpName, { ms: number; n: number }>();
    calls.forEach((c, i) => {
      if (i >= from && i < to) {
        const e = per.get(c.op) ?? { ms: 0, n: 0 };
        e.ms += c.b.elapsedSince(c.a);
        e.n++;
        per.set(c.op, e);
      }
      c.a[Symbol.dispose]();
      c.b[Symbol.dispose]();
    });
    return per;
  };
  return { view: view as Backend, marks, collect };
}

/** `be` whose capture() returns work whose replays are bracketed by events. */
export function replayTimed(be: CudaBackend) {
  const events: [CudaEvent, CudaEvent][] = [];
  const view = Object.create(be) as CudaBackend;
  Object.defineProperty(view, "capture", {
    value: (fn: () => void) => {
      const g = be.capture(fn);
      return {
        replay() {
          const a = be.rt.ctx.createEvent(true), b = be.rt.ctx.createEvent(true);
          a.record(be.rt.stream);
          g.replay();
          b.record(be.rt.stream);
          events.push([a, b]);
        },
        [Symbol.dispose]: () => g[Symbol.dispose](),
      };
    },
  });
  const times = () => {
    const ms = events.map(([a, b]) => b.elapsedSince(a));
    for (const [a, b] of events) a[Symbol.dispose](), b[Symbol.dispose]();
    events.length = 0;
    return ms;
  };
  return { view: view as Backend, times };
}
