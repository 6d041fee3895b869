/**
 * The activation stores (src/quant/activations.ts): the host store (--low_gpu_mem_usage) keeps the
 * compute dtype's raw bytes where the backend moves bytes (Backend.readBytes/writeBytes) and hands
 * back exactly what the device store holds — written from tensors of the compute dtype and of
 * another dtype, read back whole, in ranges and gathered in any order; a backend without raw bytes
 * keeps f32 values and gives the same.
 */
import { assertEquals } from "./assert.ts";
import type { Backend, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { DeviceActivations, HostActivations } from "../src/quant/activations.ts";

const S = 6, T = 5, H = 8;
let rawCalls = 0;

function values(seed: number, n: number): Float32Array {
  let x = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return (x / 2 ** 32 - 0.5) * 7;
  });
}

async function filled(be: Backend, store: HostActivations | DeviceActivations) {
  using a = be.upload(values(1, 2 * T * H), [2 * T, H]); // compute dtype
  using b = be.upload(values(2, 4 * T * H), [4 * T, H], "bf16"); // another dtype: converted
  await store.write(0, a);
  await store.write(2, b);
  return store;
}

async function contents(be: Backend, store: HostActivations | DeviceActivations) {
  using whole = await store.read(0, S);
  using part = await store.read(3, 2);
  using g = be.full([3 * T, H], 0);
  await store.gather(g, [4, 0, 4]);
  return [await be.read(whole), await be.read(part), await be.read(g)];
}

for (
  const [label, make] of [
    ["raw bytes (CPU backend)", () => {
      const be = new CpuBackend();
      // Counts the raw moves, so the test knows the byte path ran.
      return Object.assign(Object.create(be), {
        readBytes: (t: Tensor) => (rawCalls++, be.readBytes(t)),
        writeBytes: (t: Tensor, b: Uint8Array) => (rawCalls++, be.writeBytes(t, b)),
      }) as Backend;
    }],
    ["f32 values (a backend without readBytes)", () => {
      const be = new CpuBackend();
      return Object.assign(Object.create(be), { readBytes: undefined, writeBytes: undefined }) as Backend;
    }],
  ] as const
) {
  Deno.test(`host activations, ${label}: the device store's values, read whole, in ranges, gathered`, async () => {
    const be = make();
    rawCalls = 0;
    using host = await filled(be, new HostActivations(be, S, T, H));
    using dev = await filled(be, new DeviceActivations(be, S, T, H));
    const [h, d] = [await contents(be, host), await contents(be, dev)];
    for (let i = 0; i < h.length; i++) assertEquals(h[i], d[i], `part ${i}`);
    // Two writes and three gathered samples moved as bytes, or none without readBytes.
    assertEquals(rawCalls, be.readBytes ? 5 : 0);
    // Gathered rows are the samples asked for: sample 4 twice around sample 0.
    assertEquals(h[2].subarray(0, T * H), h[0].subarray(4 * T * H, 5 * T * H));
    assertEquals(h[2].subarray(T * H, 2 * T * H), h[0].subarray(0, T * H));
  });
}
