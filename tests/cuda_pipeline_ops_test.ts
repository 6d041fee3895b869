/**
 * The pipeline's host-traffic savers on CUDA against the CPU reference: group min/max of a weight
 * computed on the device (AutoRound's weight_min/weight_max), and raw checkpoint bytes uploaded and
 * converted on the device.
 */
import type { DType } from "../src/backend/backend.ts";
import { encodeFloats } from "../src/tensor/dtype.ts";
import { cpu, cuda, cudaTest, expectEqual, freshSeed, pair, readBoth, Rng } from "./cuda_helpers.ts";

cudaTest(
  "groupMinMax equals the CPU bit for bit (f32/bf16 weights, groups 32/128/per-row, a short last group)",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    for (const dt of ["f32", "bf16"] as DType[]) {
      for (const [n, k, g] of [[37, 256, 32], [64, 4096, 128], [5, 300, 128], [9, 96, -1]]) {
        const [w, wc] = pair(be, rng.normal(n * k, 0.05), [n, k], dt);
        const a = be.groupMinMax!(w, g), c = cpu.groupMinMax(wc, g);
        expectEqual(`min ${dt} ${n}x${k} g${g}`, ...(await readBoth(a.wMin, c.wMin)));
        expectEqual(`max ${dt} ${n}x${k} g${g}`, ...(await readBoth(a.wMax, c.wMax)));
      }
    }
  },
);

cudaTest(
  "uploadBytes of f32/f16/bf16 checkpoint bytes equals the CPU, converting to every dtype",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    const x = rng.normal(4099, 2);
    for (const [src, kind] of [["f32", "F32"], ["f16", "F16"], ["bf16", "BF16"]] as const) {
      const bytes = encodeFloats(x, kind);
      for (const to of ["f32", "bf16", "f16"] as DType[]) {
        using g = be.uploadBytes!(bytes, src, [4099], to);
        using c = cpu.uploadBytes(bytes, src, [4099], to);
        expectEqual(`${src} → ${to}`, ...(await readBoth(g, c)));
      }
    }
  },
);
