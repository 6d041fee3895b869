/**
 * A caching device allocator. Freed blocks go back to a free list of their size class and are
 * handed out again without a cuMemAlloc: the SignRound loop allocates and frees the same shapes
 * every iteration, so after the first one no allocation reaches the driver. Reuse is safe without
 * events because all work runs on one stream, in order: a block freed by the host after enqueuing
 * its last reader is only written by work enqueued later.
 *
 * Graph capture: while a capture is open, allocations come from a private pool the graph keeps (a
 * block the main pool has cached moves into it before the driver is asked: everything that used it
 * was enqueued before the graph's replays), and blocks of the main pool freed during the capture are
 * held (not reused) until the graph goes away, since the graph's replays still read and write them
 * (PyTorch's private graph pools, the same idea). When the graph goes away, every block of its pool
 * returns to the main pool: cached for reuse, or still in use where a tensor made inside the
 * capture outlives the graph (it is then freed like any main-pool tensor).
 */
import type { CudaContext, CudaStream } from "../../../ffi/cuda/driver.ts";
import { BackendError, DeviceError } from "../../errors.ts";

/** Size classes: 512-byte granules up to 4 KB, then eight classes per power of two (≤ 12.5% slack). */
export function sizeClass(bytes: number): number {
  if (bytes <= 512) return 512;
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = Math.max(512, p / 8);
  return Math.ceil(bytes / step) * step;
}

/** One device allocation of `bytes` (its size class), owned by one pool at a time. */
export class DeviceBlock {
  /** False while it sits in a free list. */
  inUse = true;
  constructor(readonly addr: bigint, readonly bytes: number, public pool: DevicePool) {}
}

/** Free lists of one pool, and every block it holds. */
export class DevicePool {
  private readonly free = new Map<number, DeviceBlock[]>();
  /** Every block of this pool, free or in use. */
  readonly blocks = new Set<DeviceBlock>();
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
      b.inUse = true;
      this.cachedBytes -= bytes;
      this.liveBytes += bytes;
    }
    return b;
  }

  adopt(addr: bigint, bytes: number): DeviceBlock {
    const b = new DeviceBlock(addr, bytes, this);
    this.blocks.add(b);
    this.reservedBytes += bytes;
    this.liveBytes += bytes;
    return b;
  }

  putBack(b: DeviceBlock): void {
    if (!b.inUse) throw new BackendError(`device block released twice`);
    b.inUse = false;
    let list = this.free.get(b.bytes);
    if (!list) this.free.set(b.bytes, list = []);
    list.push(b);
    this.liveBytes -= b.bytes;
    this.cachedBytes += b.bytes;
  }

  /** Move an in-use block of another pool into this one. */
  takeOver(b: DeviceBlock): void {
    const from = b.pool;
    from.blocks.delete(b);
    from.reservedBytes -= b.bytes;
    from.liveBytes -= b.bytes;
    b.pool = this;
    this.blocks.add(b);
    this.reservedBytes += b.bytes;
    this.liveBytes += b.bytes;
  }

  /** Move every block of `other` (free or in use) into this pool, keeping its state. */
  absorb(other: DevicePool): void {
    for (const b of other.blocks) {
      b.pool = this;
      this.blocks.add(b);
      this.reservedBytes += b.bytes;
      if (b.inUse) this.liveBytes += b.bytes;
      else {
        let list = this.free.get(b.bytes);
        if (!list) this.free.set(b.bytes, list = []);
        list.push(b);
        this.cachedBytes += b.bytes;
      }
    }
    other.blocks.clear();
    other.free.clear();
    other.liveBytes = other.cachedBytes = other.reservedBytes = 0;
  }

  /** Give every cached block back to the driver (the stream must be idle); returns the bytes. */
  trim(ctx: CudaContext): number {
    let n = 0;
    for (const list of this.free.values()) {
      for (const b of list) {
        ctx.free(b.addr);
        this.blocks.delete(b);
        n += b.bytes;
      }
    }
    this.free.clear();
    this.cachedBytes -= n;
    this.reservedBytes -= n;
    return n;
  }
}

/** What DeviceMemory.stats reports, in bytes. */
export interface MemoryStats {
  liveBytes: number;
  cachedBytes: number;
  peakBytes: number;
  driverBytes: number;
  peakDriverBytes: number;
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
  /** Bytes obtained from the driver and not yet returned (all pools, graphs' included). */
  driverBytes = 0;
  /** High-water mark of driverBytes. */
  peakDriverBytes = 0;
  private live = 0;

  constructor(private readonly ctx: CudaContext, private readonly stream: CudaStream) {}

  get capturing(): boolean {
    return this.capture !== undefined;
  }

  alloc(bytes: number): DeviceBlock {
    const size = sizeClass(bytes);
    const pool = this.capture?.pool ?? this.main;
    let b = pool.take(size);
    if (!b && this.capture) {
      b = this.main.take(size);
      if (b) pool.takeOver(b);
    }
    if (!b) {
      let addr = this.ctx.tryAlloc(size);
      if (addr === null && !this.capture) {
        // Out of memory: wait for queued work, return the cache to the driver, try once more.
        this.stream.synchronizeBlocking();
        this.driverBytes -= this.main.trim(this.ctx);
        addr = this.ctx.tryAlloc(size);
      }
      if (addr === null) {
        const { free, total } = this.ctx.memInfo();
        const mib = (x: number) => `${(x / 2 ** 20).toFixed(0)} MiB`;
        throw new DeviceError(
          `out of device memory allocating ${mib(size)} (${mib(this.live)} in use by this program, ` +
            `${mib(free)} free of ${mib(total)} on ${this.ctx.info.name})`,
        );
      }
      b = pool.adopt(addr, size);
      this.driverBytes += size;
      if (this.driverBytes > this.peakDriverBytes) this.peakDriverBytes = this.driverBytes;
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

  /**
   * Return a finished capture's memory to the main pool (the stream must be idle: nothing may
   * replay it again). Blocks still in use stay valid and are freed when their tensors are.
   */
  releaseCapture(c: CaptureMemory): void {
    for (const b of c.retained) b.pool.putBack(b);
    c.retained = [];
    this.main.absorb(c.pool);
  }

  /**
   * Bytes held: in use (main pool), cached for reuse, the high-water mark of tensors in use, and the
   * bytes obtained from the driver now and at most (graphs' pools included).
   */
  stats(): MemoryStats {
    return {
      liveBytes: this.main.liveBytes,
      cachedBytes: this.cachedBytes,
      peakBytes: this.peakBytes,
      driverBytes: this.driverBytes,
      peakDriverBytes: this.peakDriverBytes,
    };
  }

  /** Bytes cached in the main pool's free lists. */
  get cachedBytes(): number {
    return this.main.cachedBytes;
  }

  /** Free every cached block (the stream must be idle). */
  trim(): number {
    const n = this.main.trim(this.ctx);
    this.driverBytes -= n;
    return n;
  }
}
