/**
 * A pool of storage buffers by size class, so the tuning loop's per-iteration tensors reuse memory
 * instead of creating a GPU buffer per op.
 *
 * Reuse is safe without waiting for the GPU: every op is recorded in queue order, so a buffer freed
 * by one op and taken by the next is only written after the earlier reads (WebGPU orders dispatches
 * and inserts the barriers). Buffers are destroyed only after the pending work was submitted
 * (`collect`), because destroying a buffer referenced by unsubmitted commands fails the submit.
 */

/** Usage every pooled buffer has: bound as storage, copied from (reads) and to (uploads). */
export const STORAGE_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * Size class of a request: powers of two up to 1 MiB, then steps of 1/8 of the power of two below,
 * so a pooled buffer wastes at most 12.5% of its bytes.
 *
 * @example
 * ```ts
 * sizeClass(1000); // 1024
 * sizeClass(5 << 20); // 5 MiB
 * ```
 */
export function sizeClass(bytes: number): number {
  const b = Math.max(256, Math.ceil(bytes));
  if (b <= 1 << 20) return 2 ** Math.ceil(Math.log2(b));
  const step = 2 ** (Math.floor(Math.log2(b)) - 3);
  return Math.ceil(b / step) * step;
}

/**
 * Buffers a captured command list references (see GpuRuntime.capture): while the capture lives they
 * never go back to the shared pool, so no later op can take one that a replay still writes.
 */
export class CaptureBuffers {
  /** Released while recording: reusable by later allocations of the same recording. */
  readonly free = new Map<number, GPUBuffer[]>();
  /** Released after recording: kept until the capture is disposed. */
  readonly held: GPUBuffer[] = [];
  recording = true;
  disposed = false;
}

/** Reusable GPU buffers keyed by size class. */
export class BufferPool implements Disposable {
  private free = new Map<number, GPUBuffer[]>();
  private owner = new Map<GPUBuffer, CaptureBuffers>();
  /** The capture being recorded, whose allocations it owns. */
  recording?: CaptureBuffers;
  private freeBytes = 0;
  private doomed: GPUBuffer[] = [];
  /** Bytes currently handed out. */
  liveBytes = 0;
  /** High-water mark of {@link liveBytes}: the working set the program has needed at once. */
  peakLiveBytes = 0;
  /** Bytes of buffers destroyed so far (churn: each is a later re-creation). */
  destroyedBytes = 0;
  /** Bytes of the pool's buffers that exist on the device (handed out, idle, or awaiting destroy). */
  deviceBytes = 0;
  /** High-water mark of {@link deviceBytes}: the pool's peak GPU memory. */
  peakDeviceBytes = 0;

  /**
   * @param maxFreeBytes free bytes kept for reuse before the largest idle buffers are destroyed
   * @param maxBufferBytes the device's largest buffer: a size class never rounds a request past it
   * @param guard runs each buffer creation (inside the runtime's error scopes)
   */
  constructor(
    private readonly device: GPUDevice,
    private readonly maxFreeBytes = 1 << 30,
    private readonly maxBufferBytes = Infinity,
    private readonly guard: <T>(what: string, create: () => T) => T = (_w, create) => create(),
  ) {}

  /** A buffer of at least `bytes` bytes (contents undefined). */
  acquire(bytes: number): GPUBuffer {
    // A request near the device's limit gets an exact-size buffer instead of its class.
    const size = bytes <= this.maxBufferBytes
      ? Math.min(sizeClass(bytes), this.maxBufferBytes)
      : sizeClass(bytes);
    this.liveBytes += size;
    if (this.liveBytes > this.peakLiveBytes) this.peakLiveBytes = this.liveBytes;
    const cap = this.recording;
    const own = cap?.free.get(size)?.pop();
    if (own) return own;
    const hit = this.free.get(size)?.pop();
    if (hit) this.freeBytes -= size;
    const buf = hit ?? this.create(size);
    if (cap) this.owner.set(buf, cap);
    return buf;
  }

  private create(size: number): GPUBuffer {
    this.deviceBytes += size;
    if (this.deviceBytes > this.peakDeviceBytes) this.peakDeviceBytes = this.deviceBytes;
    return this.guard(
      `creating a ${size}-byte buffer`,
      () => this.device.createBuffer({ label: `${size} B`, size, usage: STORAGE_USAGE }),
    );
  }

  /** Give a buffer back for reuse. */
  release(buf: GPUBuffer): void {
    const size = buf.size;
    this.liveBytes -= size;
    const cap = this.owner.get(buf);
    if (cap && !cap.disposed) {
      if (cap.recording) {
        let l = cap.free.get(size);
        if (!l) cap.free.set(size, l = []);
        l.push(buf);
      } else cap.held.push(buf);
      return;
    }
    this.owner.delete(buf);
    this.toFree(buf);
  }

  /** A capture ended: its idle buffers return to the pool, its live ones will when released. */
  endCapture(cap: CaptureBuffers): void {
    cap.disposed = true;
    const idle = [...cap.held, ...[...cap.free.values()].flat()];
    cap.held.length = 0;
    cap.free.clear();
    for (const b of idle) {
      this.owner.delete(b);
      this.toFree(b);
    }
  }

  private toFree(buf: GPUBuffer): void {
    const size = buf.size;
    let list = this.free.get(size);
    if (!list) this.free.set(size, list = []);
    list.push(buf);
    this.freeBytes += size;
    // Idle buffers up to the largest working set seen are kept: a loop that frees and re-creates
    // the same tensors every pass (an 8B block's forward over each batch) must find them again.
    // Destroying them instead churned GPU memory faster than the driver reclaimed it (WebGPU frees
    // a destroyed buffer only when the device is next polled): 139 GB on an H200 within 50 s.
    const cap = Math.max(this.maxFreeBytes, this.peakLiveBytes);
    if (this.freeBytes > cap) this.shrink(cap / 2);
  }

  /** Move idle buffers to the destroy list, largest first, until at most `target` bytes stay idle. */
  shrink(target = 0): void {
    const sizes = [...this.free.keys()].sort((a, b) => b - a);
    for (const size of sizes) {
      const list = this.free.get(size)!;
      while (list.length > 0 && this.freeBytes > target) {
        this.doomed.push(list.pop()!);
        this.freeBytes -= size;
      }
    }
  }

  /** Destroy what `shrink` set aside; call only right after pending commands were submitted. */
  collect(): void {
    for (const b of this.doomed) {
      this.deviceBytes -= b.size;
      this.destroyedBytes += b.size;
      b.destroy();
    }
    this.doomed = [];
  }

  [Symbol.dispose](): void {
    this.shrink(0);
    this.collect();
  }
}
