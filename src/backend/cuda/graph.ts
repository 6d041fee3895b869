/**
 * CUDA graphs of backend work: capture a launch sequence once (stream capture), replay it with a
 * single cuGraphLaunch. The graph owns the device memory its capture allocated, and holds on to
 * memory its capture freed, so its replays never race with later allocations (allocator.ts).
 */
import type { CudaGraphExec } from "../../../ffi/cuda/driver.ts";
import type { CaptureMemory } from "./allocator.ts";
import { asBackendError, type CudaRuntime } from "./runtime.ts";

/** A captured launch sequence. Dispose it to free its memory. */
export class CudaGraph implements Disposable {
  private disposed = false;

  private constructor(
    private readonly rt: CudaRuntime,
    private readonly exec: CudaGraphExec,
    private readonly memory: CaptureMemory,
  ) {}

  /** Run `fn` under stream capture and instantiate what it enqueued. */
  static capture(rt: CudaRuntime, fn: () => void): CudaGraph {
    rt.memory.beginCapture();
    try {
      rt.stream.beginCapture();
    } catch (e) {
      rt.memory.releaseCapture(rt.memory.endCapture());
      asBackendError(e, "CUDA graph capture");
    }
    let exec: CudaGraphExec | undefined;
    let failure: unknown;
    try {
      fn();
    } catch (e) {
      failure = e;
    }
    try {
      exec = rt.stream.endCapture();
    } catch (e) {
      failure ??= e;
    }
    const memory = rt.memory.endCapture();
    if (failure !== undefined || !exec) {
      exec?.[Symbol.dispose]();
      rt.stream.synchronizeBlocking();
      rt.memory.releaseCapture(memory);
      asBackendError(failure, "CUDA graph capture");
    }
    return new CudaGraph(rt, exec, memory);
  }

  /** Enqueue one replay (returns at once, like every op). */
  replay(): void {
    this.exec.launch(this.rt.stream);
  }

  [Symbol.dispose](): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.stream.synchronizeBlocking();
    this.exec[Symbol.dispose]();
    this.rt.memory.releaseCapture(this.memory);
  }
}
