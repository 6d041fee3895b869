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

cudaTest(
  "optimized-RTN scale search on the device picks the CPU's scales (imatrix with zeros, 2/3/4 bits)",
  async () => {
    const be = cuda(), rng = new Rng(freshSeed());
    for (const bits of [2, 3, 4]) {
      for (const [n, k, g] of [[48, 256, 32], [16, 512, 128], [8, 200, -1]]) {
        const [w, wc] = pair(be, rng.normal(n * k, 0.05), [n, k], "bf16");
        const im = rng.normal(k, 1).map((x) => x * x);
        for (let c = 0; c < 20; c++) im[c] = 0; // more than half of the first group zero → weight fallback
        for (let c = 40; c < 43; c++) im[c] = 0; // a few zeros → mean replacement
        const [i, ic] = pair(be, im, [k], "f32");
        for (const imp of [undefined, [i, ic]] as const) {
          const [a, c] = await readBoth(
            be.optRtnScales!(w, imp?.[0], g, bits),
            cpu.optRtnScales(wc, imp?.[1], g, bits),
          );
          // Same candidate grid and arithmetic; only the f64 summation order differs, which can flip
          // a near-tie between two candidates of equal loss.
          let differ = 0;
          for (let j = 0; j < a.length; j++) if (a[j] !== c[j]) differ++;
          if (differ > Math.max(1, a.length * 0.005)) {
            throw new Error(
              `${bits}b ${n}x${k} g${g} ${imp ? "imatrix" : "uniform"}: ${differ}/${a.length} scales differ`,
            );
          }
        }
      }
    }
  },
);
