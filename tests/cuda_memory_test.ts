/**
 * The CUDA backend's memory ops (src/backend/cuda/memory.ts) against the CPU reference: uploads,
 * reads, fills and copies of every float dtype exactly, views and rows, and gatherSamples from a host
 * list and from a device index tensor. Outputs are poisoned first.
 */
import type { DType } from "../src/backend/backend.ts";
import { BackendError } from "../src/errors.ts";
import { cpu, cuda, cudaTest, expectEqual, freshSeed, pair, poison, readBoth, Rng } from "./cuda_helpers.ts";

cudaTest("upload/read/full/copy round-trip every float dtype exactly like the CPU", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  for (const dt of ["f32", "bf16", "f16"] as DType[]) {
    const x = rng.normal(1001, 3);
    const [g, c] = pair(be, x, [7, 143], dt);
    const [a, b] = await readBoth(g, c);
    expectEqual(`upload ${dt}`, a, b);
    using f = be.full([3, 5], -1.3, dt);
    using fc = cpu.full([3, 5], -1.3, dt);
    expectEqual(`full ${dt}`, ...(await readBoth(f, fc)));
    for (const to of ["f32", "bf16", "f16"] as DType[]) {
      poison(be, [7, 143], to);
      using d = be.full([7, 143], 0, to);
      using dc = cpu.full([7, 143], 0, to);
      be.copy(d, g);
      cpu.copy(dc, c);
      expectEqual(`copy ${dt}→${to}`, ...(await readBoth(d, dc)));
    }
    g[Symbol.dispose]();
  }
  using ints = be.uploadInt(Int32Array.from([3, -4, 5]), [3]);
  expectEqual("uploadInt/readInt", await be.readInt(ints), [3, -4, 5]);
  using fi = be.full([4], 9, "i32");
  expectEqual("full i32", await be.readInt(fi), [9, 9, 9, 9]);
});

cudaTest("views, rows and gatherSamples address the right elements", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  const x = rng.normal(6 * 10 * 3);
  const [g, c] = pair(be, x, [60, 3], "bf16");
  using r = be.rows(g, 17, 9);
  using rc = cpu.rows(c, 17, 9);
  expectEqual("rows", ...(await readBoth(r, rc)));
  using v = be.view(r, [27]);
  expectEqual("view of rows", await be.read(v), await cpu.read(rc));
  for (const dt of ["bf16", "f32"] as DType[]) {
    using d = be.full([3 * 10, 3], 0, dt);
    using dc = cpu.full([3 * 10, 3], 0, dt);
    be.gatherSamples(d, g, [4, 0, 4], 10);
    cpu.gatherSamples(dc, c, [4, 0, 4], 10);
    expectEqual(`gatherSamples →${dt}`, ...(await readBoth(d, dc)));
  }
});

cudaTest("gatherSamples with a device i32 index tensor: raw, converting and scalar paths", async () => {
  const be = cuda(), rng = new Rng(freshSeed());
  // [samples·rows, cols]: bf16 rows of 24 (raw 16-byte copies), f32 masks of 7 rows × 1 (scalar
  // path), bf16 → f32 with 8-element rows (converting path).
  const cases: [DType, DType, number, number][] = [["bf16", "bf16", 5, 24], ["f32", "f32", 7, 1], [
    "bf16",
    "f32",
    4,
    8,
  ]];
  for (const [src, dst, rows, cols] of cases) {
    const nS = 9, idx = [8, 0, 3, 3, 5];
    const [g, c] = pair(be, rng.normal(nS * rows * cols), [nS * rows, cols], src);
    using gi = be.uploadInt(Int32Array.from(idx), [idx.length]);
    using ci = cpu.uploadInt(Int32Array.from(idx), [idx.length]);
    poison(be, [idx.length * rows, cols], dst);
    using d = be.full([idx.length * rows, cols], NaN, dst);
    using dc = cpu.full([idx.length * rows, cols], 0, dst);
    be.gatherSamples(d, g, gi, rows);
    cpu.gatherSamples(dc, c, ci, rows);
    expectEqual(`gatherSamples(tensor) ${src}→${dst} ${rows}×${cols}`, ...(await readBoth(d, dc)));
    // A row view of the index tensor (what a gradient-accumulation micro-batch passes).
    using tail = be.rows(gi, 2, 3);
    using d2 = be.full([3 * rows, cols], NaN, dst);
    be.gatherSamples(d2, g, tail, rows);
    using dc2 = cpu.full([3 * rows, cols], 0, dst);
    cpu.gatherSamples(dc2, c, [3, 3, 5], rows);
    expectEqual(`gatherSamples(index view) ${src}→${dst}`, ...(await readBoth(d2, dc2)));
    // One segment of a split store (samples 3..5): it copies the indices it holds, others stay.
    using seg = be.rows(g, 3 * rows, 3 * rows);
    using cseg = cpu.rows(c, 3 * rows, 3 * rows);
    using d3 = be.full([idx.length * rows, cols], -7, dst);
    using dc3 = cpu.full([idx.length * rows, cols], -7, dst);
    be.gatherSamples(d3, seg, gi, rows, 3);
    cpu.gatherSamples(dc3, cseg, ci, rows, 3);
    expectEqual(`gatherSamples(segment) ${src}→${dst}`, ...(await readBoth(d3, dc3)));
    g[Symbol.dispose]();
  }
  using src = be.full([4 * 3, 2], 1, "bf16");
  using dst = be.full([2 * 3, 2], 0, "bf16");
  using bad = be.uploadInt(Int32Array.from([1, 4]), [2]);
  be.gatherSamples(dst, src, bad, 3);
  let threw = false;
  try {
    await be.read(dst);
  } catch (err) {
    threw = err instanceof BackendError && /sample index 4/.test(err.message);
  }
  if (!threw) throw new Error("an index outside the source did not raise a BackendError");
});
