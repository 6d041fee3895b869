/**
 * The WebGPU GGUF quantizer (wgsl/gguf_*.wgsl) against the host reference (src/qmath/gguf/, which is
 * byte-identical with auto-round): every type, with and without opt-RTN and an importance matrix
 * (with zeros), at-export rules, on random weights with awkward groups and on stories260K's weights;
 * split into many binding chunks; and the float32 helpers the kernels build on against JavaScript.
 * Bound (tests/gguf_device_cases.ts): at most 1 in 10⁴ blocks may differ (none in these tensors),
 * each within 1e-6 of the reference's weighted error. The mismatch counts are printed as a table.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { BackendError } from "../src/errors.ts";
import { Params } from "../src/backend/webgpu/params.ts";
import { bind, gpu } from "../src/backend/webgpu/tensor.ts";
import { GGUF_MATH_WGSL } from "../src/backend/webgpu/kernels.ts";
import { f32ToF16, roundHalfEven } from "../src/tensor/dtype.ts";
import { gpuTest, openGpu } from "./webgpu_helpers.ts";
import { GgufExporter } from "../src/export/gguf.ts";
import { ggufQuantizerOf } from "../src/quant/gguf_device.ts";
import { exportModel } from "./consumers/helpers.ts";
import { widenStories } from "./consumers/models.ts";
import {
  type BlockDiff,
  deviceVsHost,
  expectBlocks,
  GGUF_TYPES,
  MODES,
  randomImatrix,
  randomWeights,
  rng,
  storiesWeights,
} from "./gguf_device_cases.ts";

const be = await openGpu();
const table: string[] = [];
function record(label: string, d: BlockDiff): void {
  expectBlocks(label, d);
  table.push(`  ${label.padEnd(44)} ${String(d.differ).padStart(3)} / ${d.blocks}`);
}

gpuTest("GGUF: every type and mode equals the host on random weights with awkward groups", be, async (be) => {
  const seed = crypto.getRandomValues(new Uint32Array(1))[0];
  const n = 8, k = 512, w = randomWeights(n, k, seed), im = randomImatrix(k, seed + 1);
  for (const t of GGUF_TYPES) {
    for (const m of MODES) {
      const d = await deviceVsHost(be, t, w, n, k, m.opts, m.imatrix ? im : undefined);
      record(`random ${t} ${m.name} (seed ${seed})`, d);
    }
  }
  // Weights stored as bf16 (f32 words rounded to bf16 on WebGPU): both sides see the same values.
  for (const t of ["Q4_0", "Q5_1", "Q4_K", "Q6_K"] as const) {
    const d = await deviceVsHost(be, t, w, n, k, { optRtn: true }, im, "bf16");
    record(`random bf16 ${t} opt-RTN + imatrix (seed ${seed})`, d);
  }
});

gpuTest(
  "GGUF: every type equals the host on stories260K's weights (rows of 256), with and without imatrix",
  be,
  async (be) => {
    const { w, n, k } = await storiesWeights();
    const im = randomImatrix(k, 5);
    for (const t of GGUF_TYPES) {
      for (const m of MODES.slice(0, 2)) {
        record(
          `stories260K ${t} ${m.name}`,
          await deviceVsHost(be, t, w, n, k, m.opts, m.imatrix ? im : undefined),
        );
      }
    }
  },
);

gpuTest("GGUF: a weight split over many 4 KiB binding chunks gives the same bytes", be, async () => {
  const split = await openGpu({ maxBindingBytes: 4096, computeDType: "f32" });
  if (!split) return;
  const n = 6, k = 768, w = randomWeights(n, k, 77), im = randomImatrix(k, 78);
  for (const t of ["Q4_0", "Q5_1", "Q8_0", "Q3_K", "Q4_K", "Q6_K"] as const) {
    record(`split ${t} opt-RTN + imatrix`, await deviceVsHost(split, t, w, n, k, { optRtn: true }, im));
  }
  split[Symbol.dispose]();
});

gpuTest(
  "GGUF: the exporter with the device quantizer writes the host's file (widened stories260K, imatrix, embeddings at export)",
  be,
  async (be) => {
    const tmp = await Deno.makeTempDir({ prefix: "autoround_gguf_dev_" });
    try {
      const model = await widenStories(`${tmp}/model`);
      for (const fmt of ["gguf:q4_k_m", "gguf:q2_k_s"]) {
        const host = await exportModel({ model, formats: fmt, out: `${tmp}/host` });
        const device = ggufQuantizerOf(be)!;
        let calls = 0;
        const ggufQuantizer: typeof device = (...a) => (calls++, device(...a));
        const dev = await exportModel({ model, formats: fmt, out: `${tmp}/dev`, ggufQuantizer });
        assert(calls > 0, "the exporter did not use the device quantizer");
        const [a, b] = [host, dev].map((r) => r.exporters[0] as GgufExporter);
        const types = [...new Set(a.records.map((r) => r.type))].sort().join(",");
        assertEquals(await Deno.readFile(b.path), await Deno.readFile(a.path), `${fmt} (${types})`);
        table.push(`  exporter ${fmt} (${types})`.padEnd(46) + ` identical file`);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

gpuTest(
  "GGUF: block Linears quantized from the pipeline's device tensors give the f32 host route's file",
  be,
  async (be) => {
    const tmp = await Deno.makeTempDir({ prefix: "autoround_gguf_tensor_" });
    try {
      const model = await widenStories(`${tmp}/model`);
      // q4_k_m: K-quants with an importance matrix, Q6_K for some tensors, llama's q/k permutation.
      for (const fmt of ["gguf:q4_k_m"]) {
        const device = ggufQuantizerOf(be)!;
        let fromTensors = 0;
        const ggufQuantizer: typeof device = Object.assign(
          (
            ...a: Parameters<typeof device>
          ) => (fromTensors += a[1] instanceof Float32Array ? 0 : 1, device(...a)),
          { backend: device.backend },
        );
        const run = (out: string) =>
          exportModel({ model, formats: fmt, out, be, ggufQuantizer, nsamples: 4, seqlen: 32 });
        Deno.env.set("AUTOROUND_GGUF_HOST_LINEARS", "1");
        let viaHost;
        try {
          viaHost = await run(`${tmp}/host`);
        } finally {
          Deno.env.delete("AUTOROUND_GGUF_HOST_LINEARS");
        }
        assertEquals(fromTensors, 0, "AUTOROUND_GGUF_HOST_LINEARS=1 still quantized device tensors");
        const fromTensor = await run(`${tmp}/tensor`);
        assert(fromTensors >= 35, `only ${fromTensors} Linears quantized from their device tensors`);
        const [a, b] = [viaHost, fromTensor].map((r) => r.exporters[0] as GgufExporter);
        // llama's q/k rows are permuted after quantization on this route (bytes, not floats).
        assert(a.records.some((r) => r.hfName.endsWith("q_proj.weight")), "no q_proj in the file");
        assertEquals(await Deno.readFile(b.path), await Deno.readFile(a.path), fmt);
        table.push(`  pipeline tensors ${fmt}`.padEnd(46) + ` identical file`);
      }
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
);

gpuTest("GGUF: shapes that do not split into blocks and a wrong imatrix are refused", be, async (be) => {
  using w = be.upload(new Float32Array(4 * 96), [4, 96]);
  await assertRejects(() => be.ggufQuantize(w, "Q4_K", { optRtn: true }), BackendError, "blocks of 256");
  using w2 = be.upload(new Float32Array(4 * 64), [4, 64]);
  using im = be.upload(new Float32Array(32), [32]);
  await assertRejects(
    () => be.ggufQuantize(w2, "Q4_0", { optRtn: true, imatrix: im }),
    BackendError,
    "imatrix",
  );
});

// ---- the float32 helpers of gguf_math.wgsl ----------------------------------------------------------

const PROBE = `
@group(0) @binding(1) var<storage, read> ta: array<f32>;
@group(0) @binding(2) var<storage, read> tb: array<f32>;
@group(0) @binding(3) var<storage, read> tc: array<f32>;
@group(0) @binding(4) var<storage, read_write> tout: array<u32>;
@compute @workgroup_size(64)
fn probe(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i >= P.count) { return; }
  let a = ta[i];
  let b = tb[i];
  let c = tc[i];
  tout[6u * i] = bitcast<u32>(div_rn(a, b));
  tout[6u * i + 1u] = bitcast<u32>(sqrt_rn(abs(a)));
  tout[6u * i + 2u] = bitcast<u32>(floor_prod_plus(two_prod(c, b), 8.5));
  tout[6u * i + 3u] = bitcast<u32>(round_sum(c, 32.0));
  tout[6u * i + 4u] = bitcast<u32>(to_i16(round(a)));
  tout[6u * i + 5u] = f16_bits(a);
}`;

/** Inputs that sit on or next to the rounding decisions (midpoints, half-integers, overflow). */
function probeInputs(count: number, seed: number): [Float32Array, Float32Array, Float32Array] {
  const u = rng(seed), fr = Math.fround;
  const a = new Float32Array(count), b = new Float32Array(count), c = new Float32Array(count);
  const randf = () => fr((u() < 0.5 ? -1 : 1) * (1 + u()) * 2 ** Math.floor(u() * 60 - 30));
  for (let i = 0; i < count; i++) {
    b[i] = randf();
    switch (i % 6) {
      case 0: // quotient near a midpoint of two floats
      case 1: {
        const q = fr(1 + u()), mid = q * (1 + 2 ** -24 * (i % 2 ? 1 : -1) * 0.999);
        a[i] = fr(b[i] * mid);
        break;
      }
      case 2: // integers past the Int16 range, f16 overflow and subnormals
        a[i] = fr((u() - 0.5) * 2 ** Math.floor(u() * 45));
        break;
      default:
        a[i] = randf();
    }
    // c·b near n − 8.5 (the floor's edge) or c near a half-integer − 32 (round's edge).
    const nHalf = Math.floor(u() * 24) - 8.5;
    c[i] = i % 3 === 0
      ? fr(nHalf / b[i])
      : i % 3 === 1
      ? fr(Math.floor(u() * 60) - 31.5 + (u() - 0.5) * 2 ** -18)
      : fr((u() * 40 - 20) / b[i]);
    if (i % 3 === 1 && i % 2 === 0) c[i] = fr(Math.floor(u() * 60) - 31.5);
  }
  return [a, b, c];
}

gpuTest(
  "GGUF helpers: division, square root, floor and round of exact sums, Int16 wrap, f16 bits equal JavaScript's",
  be,
  async (be) => {
    const { rt } = be;
    const count = 6000, seed = crypto.getRandomValues(new Uint32Array(1))[0];
    const [a, b, c] = probeInputs(count, seed);
    using A = be.upload(a, [count]);
    using B = be.upload(b, [count]);
    using C = be.upload(c, [count]);
    using O = be.alloc([count * 6], "i32");
    const k = rt.kernel({
      family: "ggufSearch",
      entry: "probe",
      bindings: ["r", "r", "r", "rw"],
      consts: { GS: 32 },
      source: `${GGUF_MATH_WGSL}\n${PROBE}`,
    });
    const [wa, wb, wc, wo] = [A, B, C, O].map((t) => bind(rt, gpu(t)));
    const p = new Params().u(0).u(count).u(0).u(0).u(0).u(0).u(0).u(0).u(0).u(0).u(0).u(0);
    rt.dispatch(k, p, [wa.window, wb.window, wc.window, wo.window], [Math.ceil(count / 64), 1, 1]);
    const got = new Uint32Array(await rt.read(O.storage.buffer, O.offset * 4, count * 24));
    const f = new Float32Array(1), bits = new Uint32Array(f.buffer);
    const asBits = (x: number) => ((f[0] = x), bits[0]);
    const i16 = new Int16Array(1);
    const names = ["div", "sqrt", "floor(c·b + 8.5)", "round(c + 32)", "Int16", "f16 bits"];
    const bad = [0, 0, 0, 0, 0, 0], first: string[] = [];
    for (let i = 0; i < count; i++) {
      i16[0] = roundHalfEven(a[i]);
      const want = [
        asBits(a[i] / b[i]),
        asBits(Math.sqrt(Math.abs(a[i]))),
        asBits(Math.floor(c[i] * b[i] + 8.5)),
        asBits(roundHalfEven(c[i] + 32)),
        i16[0] >>> 0,
        f32ToF16(a[i]),
      ];
      for (let j = 0; j < 6; j++) {
        // Outside their documented ranges: quotients off the normal floats, floors past 2^22.
        if (j === 0 && !isNormalQuotient(a[i], b[i])) continue;
        if (j === 2 && !(Math.abs(c[i] * b[i]) < 2 ** 22)) continue;
        if (got[6 * i + j] !== want[j]) {
          bad[j]++;
          if (first.length < 4) {
            first.push(
              `${names[j]}(${a[i]}, ${b[i]}, ${c[i]}): ${got[6 * i + j]} vs ${want[j]}`,
            );
          }
        }
      }
    }
    assertEquals(bad, [0, 0, 0, 0, 0, 0], `seed ${seed}: ${first.join("; ")}`);
  },
);

/** div_rn guarantees nearest-even quotients only between normal floats. */
function isNormalQuotient(a: number, b: number): boolean {
  const q = Math.abs(a / b);
  return q >= 2 ** -126 && q < 2 ** 128;
}

gpuTest("GGUF: mismatch table", be, () => {
  console.log(`\nwebgpu_gguf_test blocks differing from the host:\n${table.join("\n")}`);
  return Promise.resolve();
});
