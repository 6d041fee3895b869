/**
 * The pipeline's per-group statistics on WebGPU (wgsl/int_search.wgsl) against the CPU reference
 * (src/qmath/int_quant.ts): AutoRound's weight_min/weight_max bit for bit, and the optimized-RTN
 * scale search — float32 candidates and codes as on the host, losses as float32 pairs where the host
 * sums float64 — with at most 1 in 10⁴ scales allowed to differ (none in these tensors).
 */
import type { DType } from "../src/backend/backend.ts";
import { both, cpu, expectEqual, gpuTest, openGpu, Rng } from "./webgpu_helpers.ts";

const be = await openGpu();

gpuTest(
  "groupMinMax equals the CPU bit for bit (f32/bf16 weights, groups 32/128/per-row, a short last group)",
  be,
  async (be) => {
    const rng = new Rng();
    for (const dt of ["f32", "bf16"] as DType[]) {
      for (const [n, k, g] of [[37, 256, 32], [16, 1024, 128], [5, 300, 128], [9, 96, -1]]) {
        const [w, wc] = both(be, rng.normal(n * k, 0.05), [n, k], dt as "f32" | "bf16");
        const a = be.groupMinMax(w, g), c = cpu.groupMinMax!(wc, g);
        expectEqual(`min ${dt} ${n}x${k} g${g}`, await be.read(a.wMin), await cpu.read(c.wMin), rng);
        expectEqual(`max ${dt} ${n}x${k} g${g}`, await be.read(a.wMax), await cpu.read(c.wMax), rng);
      }
    }
  },
);

gpuTest(
  "optimized-RTN scale search picks the CPU's scales (imatrix with zeros, 2/3/4/8 bits, short last group)",
  be,
  async (be) => {
    const rng = new Rng();
    let groups = 0;
    for (const bits of [2, 3, 4, 8]) {
      for (const [n, k, g] of [[24, 256, 32], [8, 512, 128], [4, 200, -1], [6, 100, 64]]) {
        const [w, wc] = both(be, rng.normal(n * k, 0.05), [n, k], "bf16");
        const im = rng.normal(k, 1).map((x) => x * x);
        for (let c = 0; c < 20; c++) im[c] = 0; // more than half of the first group zero → weight fallback
        for (let c = 40; c < 43; c++) im[c] = 0; // a few zeros → mean replacement
        const [i, ic] = both(be, im, [k]);
        for (const imp of [undefined, [i, ic]] as const) {
          const a = await be.read(be.optRtnScales(w, imp?.[0], g, bits));
          const c = await cpu.read(cpu.optRtnScales!(wc, imp?.[1], g, bits));
          let differ = 0, first = -1;
          for (let j = 0; j < a.length; j++) {
            if (a[j] !== c[j]) {
              differ++;
              if (first < 0) first = j;
            }
          }
          groups += a.length;
          if (differ > Math.floor(a.length / 1e4)) {
            throw new Error(
              `${bits}b ${n}x${k} g${g} ${
                imp ? "imatrix" : "uniform"
              }: ${differ}/${a.length} scales differ, ` +
                `first ${first}: ${a[first]} vs ${c[first]} (seed ${rng.seed})`,
            );
          }
        }
      }
    }
    console.log(`optRtnScales: 0 differing scales in ${groups} groups`);
  },
);
