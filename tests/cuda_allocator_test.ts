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

Deno.test("allocator: trim between phases keeps the high-water mark at what is in use", () => {
  const { d, mem } = fakeDriver();
  // Phase 1 (the block forwards): 2 × 192 MiB, freed into the cache.
  for (const b of [mem.alloc(192 * MiB), mem.alloc(192 * MiB)]) mem.release(b);
  const kept = mem.alloc(16 * MiB); // still in use across the boundary
  // Phase 2 (tuning) needs 3 × 144 MiB; without a trim the driver would hold 400 + 432 MiB.
  assertEquals(mem.trim(), 384 * MiB);
  assertEquals([d.frees, mem.driverBytes], [2, 16 * MiB]);
  const c = [mem.alloc(144 * MiB), mem.alloc(144 * MiB), mem.alloc(144 * MiB)];
  assertEquals(mem.peakDriverBytes, 448 * MiB);
  for (const b of c) mem.release(b);
  // Phase 2 again: served from the cache, the driver is not asked.
  for (const b of [mem.alloc(144 * MiB), mem.alloc(144 * MiB)]) mem.release(b);
  assertEquals([d.allocs, d.frees], [6, 2]);
  mem.release(kept);
});

Deno.test("allocator: trim leaves a graph's private pool alone", () => {
  const { d, mem } = fakeDriver();
  mem.beginCapture();
  const g = mem.alloc(64 * MiB);
  mem.release(g); // back to the graph's pool, which its replays still use
  const cap = mem.endCapture();
  assertEquals([mem.trim(), d.frees], [0, 0]);
  mem.releaseCapture(cap); // the graph is gone: its blocks join the main cache
  assertEquals([mem.trim(), d.frees], [64 * MiB, 1]);
});
