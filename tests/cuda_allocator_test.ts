/**
 * The CUDA backend's caching allocator (src/backend/cuda/allocator.ts) on a fake driver, so it runs
 * anywhere: a steady loop never reaches the driver; an allocation that would raise the high-water
 * mark first gives cached blocks of other sizes back (the peak counts what is in use, not the cache
 * of an earlier phase); during a graph capture nothing is trimmed.
 */
import { assertEquals } from "./assert.ts";
import { DeviceMemory, sizeClass } from "../src/backend/cuda/allocator.ts";
import type { CudaContext, CudaStream } from "../ffi/cuda/driver.ts";

const MiB = 2 ** 20;

/** A driver that hands out addresses and counts calls. */
function fakeDriver() {
  const d = { allocs: 0, frees: 0, syncs: 0, held: 0, next: 0x1000n };
  const ctx = {
    info: { name: "fake" },
    tryAlloc(bytes: number): bigint {
      d.allocs++;
      d.held += bytes;
      d.next += BigInt(bytes);
      return d.next;
    },
    free(_addr: bigint) {
      d.frees++;
    },
    memInfo: () => ({ free: 0, total: 0 }),
  } as unknown as CudaContext;
  const stream = { synchronizeBlocking: () => void d.syncs++ } as unknown as CudaStream;
  return { d, mem: new DeviceMemory(ctx, stream) };
}

Deno.test("allocator: a loop of the same shapes reaches the driver only in its first round", () => {
  const { d, mem } = fakeDriver();
  for (let i = 0; i < 50; i++) {
    const blocks = [100, 300, 300, 7].map((m) => mem.alloc(m * MiB));
    for (const b of blocks) mem.release(b);
  }
  assertEquals([d.allocs, d.frees, d.syncs], [4, 0, 0]);
  assertEquals(mem.peakDriverBytes, [100, 300, 300, 7].reduce((a, m) => a + sizeClass(m * MiB), 0));
});

Deno.test("allocator: a new high-water mark is not raised while other sizes sit cached", () => {
  const { d, mem } = fakeDriver();
  // Phase 1 (say the block forwards): 2 × 192 MiB, then freed into the cache.
  const a = [mem.alloc(192 * MiB), mem.alloc(192 * MiB)];
  for (const b of a) mem.release(b);
  assertEquals(mem.peakDriverBytes, 384 * MiB);
  // Phase 2 (tuning) needs 3 × 144 MiB: without the trim the driver would hold 384 + 432 MiB.
  const c = [mem.alloc(144 * MiB), mem.alloc(144 * MiB), mem.alloc(144 * MiB)];
  assertEquals(d.syncs, 1, "one sync before the trim");
  assertEquals(d.frees, 2, "the two cached 192 MiB blocks went back");
  assertEquals([mem.peakDriverBytes, mem.driverBytes], [432 * MiB, 432 * MiB]);
  for (const b of c) mem.release(b);
  // Phase 2 again: served from the cache, the driver is not asked.
  const again = [mem.alloc(144 * MiB), mem.alloc(144 * MiB)];
  for (const b of again) mem.release(b);
  assertEquals([d.allocs, d.frees, d.syncs], [5, 2, 1]);
});

Deno.test("allocator: small caches and graph captures are never trimmed", () => {
  const { d, mem } = fakeDriver();
  const small = mem.alloc(8 * MiB);
  mem.release(small);
  mem.alloc(100 * MiB); // raises the mark, but 8 MiB cached is below the trim threshold
  assertEquals([d.syncs, d.frees], [0, 0]);
  const big = mem.alloc(300 * MiB);
  mem.release(big);
  mem.beginCapture();
  mem.alloc(500 * MiB); // would trim the 300 MiB outside a capture
  mem.endCapture();
  assertEquals([d.syncs, d.frees], [0, 0]);
});
