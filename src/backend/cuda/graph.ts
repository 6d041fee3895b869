/**
 * CUDA graphs of backend work: capture a launch sequence once (stream capture), replay it with a
 * single cuGraphLaunch. The graph owns the device memory its capture allocated, and holds on to
 * memory its capture freed, so its replays never race with later allocations (allocator.ts); on
 * dispose that memory goes back to the allocator's main pool for reuse.
 */
import type { CapturedWork } from "../backend.ts";
import type { CudaGraphExec } from "../../../ffi/cuda/driver.ts";
import { BackendError } from "../../errors.ts";
import type { CaptureMemory } from "./allocator.ts";
import { asBackendError, type CudaRuntime } from "./runtime.ts";

/** A captured launch sequence (Backend.capture's CapturedWork). Dispose it to free its memory. */
export class CudaGraph implements CapturedWork {
  private disposed = false;

  private constructor(
    private readonly rt: CudaRuntime,
    private readonly exec: CudaGraphExec,
    private readonly memory: CaptureMemory,
    /** Whether the captured kernels report bad inputs through the error word. */
    private readonly reportsErrors: boolean,
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
    const armedBefore = rt.errorArmed;
    rt.errorArmed = false;
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
    const reportsErrors = rt.errorArmed;
    rt.errorArmed = armedBefore;
    const memory = rt.memory.endCapture();
    if (failure !== undefined || !exec) {
      exec?.[Symbol.dispose]();
      rt.stream.synchronizeBlocking();
      rt.memory.releaseCapture(memory);
      asBackendError(failure, "CUDA graph capture");
    }
    return new CudaGraph(rt, exec, memory, reportsErrors);
  }

  /** Enqueue one replay (returns at once, like every op). */
  replay(): void {
    if (this.disposed) throw new BackendError("replay of a disposed CUDA graph");
    try {
      this.exec.launch(this.rt.stream);
    } catch (e) {
      asBackendError(e, "CUDA graph launch");
    }
    // Kernels that report through the error word (gather indices, token ids) ran: check at the next read.
    if (this.reportsErrors) this.rt.errorArmed = true;
  }

  [Symbol.dispose](): void {
    if (this.disposed) return;
    this.disposed = true;
    this.rt.stream.synchronizeBlocking();
    this.exec[Symbol.dispose]();
    this.rt.memory.releaseCapture(this.memory);
  }
}
