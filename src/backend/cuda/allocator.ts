/**
 * A caching device allocator. Freed blocks go back to a free list of their size class and are
 * handed out again without a cuMemAlloc: the SignRound loop allocates and frees the same shapes
 * every iteration, so after the first one no allocation reaches the driver. Reuse is safe without
 * events because all work runs on one stream, in order: a block freed by the host after enqueuing
 * its last reader is only written by work enqueued later.
 *
 * Graph capture: while a capture is open, allocations come from a private pool the graph keeps, and
 * blocks of the main pool freed during the capture are held (not reused) until the graph goes away,
 * since the graph's replays still read and write them (PyTorch's private graph pools, the same idea).
 */
import type { CudaContext, CudaStream } from "../../../ffi/cuda/driver.ts";
import { BackendError } from "../../errors.ts";

/** Size classes: 512-byte granules up to 4 KB, then eight classes per power of two (≤ 12.5% slack). */
export function sizeClass(bytes: number): number {
  if (bytes <= 512) return 512;
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = Math.max(512, p / 8);
  return Math.ceil(bytes / step) * step;
}

/** One device allocation of `bytes` (its size class) owned by a pool. */
export class DeviceBlock {
  constructor(readonly addr: bigint, readonly bytes: number, readonly pool: DevicePool) {}
}

/** Free lists of one pool. */
export class DevicePool {
  private readonly free = new Map<number, DeviceBlock[]>();
  /** Bytes handed out and not yet released. */
  liveBytes = 0;
  /** Bytes sitting in the free lists. */
  cachedBytes = 0;
  /** All bytes this pool obtained from the driver and still holds. */
  reservedBytes = 0;

  constructor(readonly label: string) {}

  take(bytes: number): DeviceBlock | undefined {
    const list = this.free.get(bytes);
    const b = list?.pop();
    if (b) {
      this.cachedBytes -= bytes;
      this.liveBytes += bytes;
    }
    return b;
  }

  adopt(addr: bigint, bytes: number): DeviceBlock {
    this.reservedBytes += bytes;
    this.liveBytes += bytes;
    return new DeviceBlock(addr, bytes, this);
  }

  putBack(b: DeviceBlock): void {
    let list = this.free.get(b.bytes);
    if (!list) this.free.set(b.bytes, list = []);
    list.push(b);
    this.liveBytes -= b.bytes;
    this.cachedBytes += b.bytes;
  }

  /** Give every cached block back to the driver (the stream must be idle). */
  trim(ctx: CudaContext): number {
    let n = 0;
    for (const list of this.free.values()) {
      for (const b of list) {
        ctx.free(b.addr);
        n += b.bytes;
      }
    }
    this.free.clear();
    this.cachedBytes -= n;
    this.reservedBytes -= n;
    return n;
  }
}

/** Memory a finished capture keeps alive: its private pool and the main-pool blocks it still uses. */
export interface CaptureMemory {
  pool: DevicePool;
  retained: DeviceBlock[];
}

/** The allocator of one backend: a main pool plus, during a capture, the capture's pool. */
export class DeviceMemory {
  readonly main = new DevicePool("main");
  private capture?: CaptureMemory;
  /** High-water mark of live bytes over all pools. */
  peakBytes = 0;
  private live = 0;

  constructor(private readonly ctx: CudaContext, private readonly stream: CudaStream) {}

  get capturing(): boolean {
    return this.capture !== undefined;
  }

  alloc(bytes: number): DeviceBlock {
    const size = sizeClass(bytes);
    const pool = this.capture?.pool ?? this.main;
    let b = pool.take(size);
    if (!b) {
      let addr = this.ctx.tryAlloc(size);
      if (addr === null && !this.capture) {
        // Out of memory: wait for queued work, return the cache to the driver, try once more.
        this.stream.synchronizeBlocking();
        this.main.trim(this.ctx);
        addr = this.ctx.tryAlloc(size);
      }
      if (addr === null) {
        const { free, total } = this.ctx.memInfo();
        const mib = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;
        throw new BackendError(
          `out of device memory allocating ${mib(size)} (${mib(this.live)} in use by this program, ` +
            `${mib(free)} free of ${mib(total)} on ${this.ctx.info.name})`,
        );
      }
      b = pool.adopt(addr, size);
    }
    this.live += size;
    if (this.live > this.peakBytes) this.peakBytes = this.live;
    return b;
  }

  release(b: DeviceBlock): void {
    this.live -= b.bytes;
    if (this.capture && b.pool !== this.capture.pool) {
      this.capture.retained.push(b);
      return;
    }
    b.pool.putBack(b);
  }

  beginCapture(): void {
    if (this.capture) throw new BackendError("a graph capture is already open");
    this.capture = { pool: new DevicePool("graph"), retained: [] };
  }

  endCapture(): CaptureMemory {
    const c = this.capture;
    if (!c) throw new BackendError("no graph capture is open");
    this.capture = undefined;
    return c;
  }

  /** Return a finished capture's memory (the stream must be idle: nothing may replay it again). */
  releaseCapture(c: CaptureMemory): void {
    for (const b of c.retained) b.pool.putBack(b);
    c.retained = [];
    c.pool.trim(this.ctx);
  }

  /** Bytes cached in the main pool's free lists. */
  get cachedBytes(): number {
    return this.main.cachedBytes;
  }

  /** Free every cached block (the stream must be idle). */
  trim(): number {
    return this.main.trim(this.ctx);
  }
}
