/**
 * Ordered device work: a non-blocking stream (copies, memsets, kernel launches, graph capture),
 * events (the stream's awaited synchronization, timing) and instantiated graphs.
 */
import { CU, CU_EVENT_DISABLE_TIMING, CU_STREAM_CAPTURE_MODE_RELAXED } from "./driver_symbols.ts";
import { CudaError } from "./errors.ts";
import type { KernelArgs } from "./kernel_args.ts";
import type { CudaDriver } from "./library.ts";
import type { CudaFunction } from "./module.ts";

/** A non-blocking stream: every operation is enqueued and returns at once. */
export class CudaStream implements Disposable {
  private readonly syncEvent: CudaEvent;
  private destroyed = false;

  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {
    const out = new BigUint64Array(1);
    driver.check(driver.lib.symbols.cuEventCreate(out, CU_EVENT_DISABLE_TIMING), "cuEventCreate");
    this.syncEvent = new CudaEvent(driver, out[0]);
  }

  /** Host → device copy, ordered on this stream (pageable source: staged before this returns). */
  copyToDevice(dst: bigint, src: ArrayBufferView): void {
    if (src.byteLength === 0) return;
    this.driver.check(
      this.driver.lib.symbols.cuMemcpyHtoDAsync_v2(
        dst,
        src as BufferSource,
        BigInt(src.byteLength),
        this.handle,
      ),
      "cuMemcpyHtoDAsync_v2",
    );
  }

  /** Device → host copy; blocks until the stream reaches it, so call it after `synchronize()`. */
  copyToHost(dst: ArrayBufferView, src: bigint): void {
    if (dst.byteLength === 0) return;
    this.driver.check(
      this.driver.lib.symbols.cuMemcpyDtoHAsync_v2(
        dst as BufferSource,
        src,
        BigInt(dst.byteLength),
        this.handle,
      ),
      "cuMemcpyDtoHAsync_v2",
    );
  }

  copyDevice(dst: bigint, src: bigint, bytes: number): void {
    if (bytes === 0) return;
    this.driver.check(
      this.driver.lib.symbols.cuMemcpyDtoDAsync_v2(dst, src, BigInt(bytes), this.handle),
      "cuMemcpyDtoDAsync_v2",
    );
  }

  /** Fill `count` elements of `bytesPerElement` (1, 2 or 4) with a bit pattern. */
  fill(dst: bigint, bits: number, bytesPerElement: 1 | 2 | 4, count: number): void {
    if (count === 0) return;
    const s = this.driver.lib.symbols, n = BigInt(count);
    if (bytesPerElement === 4) {
      this.driver.check(s.cuMemsetD32Async(dst, bits >>> 0, n, this.handle), "cuMemsetD32Async");
    } else if (bytesPerElement === 2) {
      this.driver.check(s.cuMemsetD16Async(dst, bits & 0xffff, n, this.handle), "cuMemsetD16Async");
    } else this.driver.check(s.cuMemsetD8Async(dst, bits & 0xff, n, this.handle), "cuMemsetD8Async");
  }

  /** Launch `fn` with the arguments packed in `args`. */
  launch(
    fn: CudaFunction,
    grid: readonly [number, number?, number?],
    block: readonly [number, number?, number?],
    sharedBytes: number,
    args: KernelArgs,
  ): void {
    const rc = this.driver.lib.symbols.cuLaunchKernel(
      fn.handle,
      grid[0],
      grid[1] ?? 1,
      grid[2] ?? 1,
      block[0],
      block[1] ?? 1,
      block[2] ?? 1,
      sharedBytes,
      this.handle,
      args.pointerTable,
      0n,
    );
    if (rc !== CU.SUCCESS) {
      this.driver.check(rc, "cuLaunchKernel", `${fn.name} grid [${grid}] block [${block}]`);
    }
  }

  /** Wait for everything queued so far without blocking the event loop. */
  async synchronize(): Promise<void> {
    const s = this.driver.lib.symbols;
    const ev = this.syncEvent.handle;
    this.driver.check(s.cuEventRecord(ev, this.handle), "cuEventRecord");
    if (this.driver.nonblockingSync !== false) {
      const rc = await s.cuEventSynchronizeNonblocking(ev);
      if (rc === CU.SUCCESS) {
        this.driver.nonblockingSync = true;
        return;
      }
      // The worker thread may have no current context: fall back to polling, which also reports
      // a genuine failure with its own error.
      if (this.driver.nonblockingSync === undefined) this.driver.nonblockingSync = false;
      else this.driver.check(rc, "cuEventSynchronize");
    }
    for (;;) {
      const rc = s.cuEventQuery(ev);
      if (rc === CU.SUCCESS) return;
      if (rc !== CU.ERROR_NOT_READY) this.driver.check(rc, "cuEventQuery");
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** Block the calling thread until the stream is idle (benchmarks, teardown). */
  synchronizeBlocking(): void {
    this.driver.check(this.driver.lib.symbols.cuStreamSynchronize(this.handle), "cuStreamSynchronize");
  }

  /** Start capturing this stream's work into a graph (relaxed mode: allocation stays legal). */
  beginCapture(): void {
    this.driver.check(
      this.driver.lib.symbols.cuStreamBeginCapture_v2(this.handle, CU_STREAM_CAPTURE_MODE_RELAXED),
      "cuStreamBeginCapture_v2",
    );
  }

  /** Stop capturing and instantiate what was captured. */
  endCapture(): CudaGraphExec {
    const s = this.driver.lib.symbols;
    const g = new BigUint64Array(1);
    this.driver.check(s.cuStreamEndCapture(this.handle, g), "cuStreamEndCapture");
    const exec = new BigUint64Array(1);
    try {
      this.driver.check(s.cuGraphInstantiateWithFlags(exec, g[0], 0n), "cuGraphInstantiateWithFlags");
    } finally {
      s.cuGraphDestroy(g[0]);
    }
    return new CudaGraphExec(this.driver, exec[0]);
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.syncEvent[Symbol.dispose]();
    this.driver.lib.symbols.cuStreamDestroy_v2(this.handle);
  }
}

/** An event (timing events for benchmarks; the streams use untimed ones to wait). */
export class CudaEvent implements Disposable {
  private destroyed = false;
  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {}

  record(stream: CudaStream): void {
    this.driver.check(this.driver.lib.symbols.cuEventRecord(this.handle, stream.handle), "cuEventRecord");
  }

  /** Milliseconds from `start` to this event (both recorded, both with timing; waits for this one). */
  elapsedSince(start: CudaEvent): number {
    const s = this.driver.lib.symbols;
    this.driver.check(s.cuEventSynchronize(this.handle), "cuEventSynchronize");
    const ms = new Float32Array(1);
    const fn = s.cuEventElapsedTime_v2 ?? s.cuEventElapsedTime;
    if (!fn) throw new CudaError("cuEventElapsedTime", -1, "missing", "not exported by this driver");
    this.driver.check(fn(ms, start.handle, this.handle), "cuEventElapsedTime");
    return ms[0];
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.driver.lib.symbols.cuEventDestroy_v2(this.handle);
  }
}

/** An instantiated graph: replays the captured launch sequence with one call. */
export class CudaGraphExec implements Disposable {
  private destroyed = false;
  constructor(private readonly driver: CudaDriver, readonly handle: bigint) {}

  launch(stream: CudaStream): void {
    this.driver.check(this.driver.lib.symbols.cuGraphLaunch(this.handle, stream.handle), "cuGraphLaunch");
  }

  [Symbol.dispose](): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.driver.lib.symbols.cuGraphExecDestroy(this.handle);
  }
}
