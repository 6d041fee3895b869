/**
 * Whole-block gradients of every family of issue 18 against float64 central differences: block 0 of
 * each tiny checkpoint in tests/fixtures/models/ (real routers, fused Phi-3 Linears, Gemma's sandwich
 * norms, soft-capping and sliding window), on the f64 CPU backend. Checked: dL/dW of every
 * quantizable Linear (a sample of entries each) and dL/dx of the block input, which runs through
 * every path (MoE routing weights, renormalisation, shared-expert gate, softcap, window, partial
 * rotary). The sequence is longer than the Gemma fixtures' window (8).
 */
import type { Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { blockBackward, blockForward, type BlockWeights } from "../src/model/block.ts";
import { blockLinears } from "../src/model/block_layout.ts";
import { loadBlockWeights, uploadRope } from "../src/model/transformer.ts";
import { assert } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";

const be = new CpuBackend({ precision: "f64" });

/** Deterministic uniform(−scale, scale) values (an LCG: the same data, and routing, every run). */
function seeded(n: number, seed: number, scale = 1): Float64Array {
  let s = seed >>> 0;
  return Float64Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 * 2 - 1) * scale;
  });
}
function f64(t: Tensor): Float64Array {
  // f64 backend storage is read as f32 by Backend.read; reach into the storage for full precision.
  return Float64Array.from((t as unknown as { f: Float64Array }).f);
}
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
function picks(n: number, k: number, seed: number): number[] {
  const r = seeded(k, seed);
  return Array.from(r, (v) => Math.floor((v + 1) / 2 * n));
}

const FAMILIES = [
  "qwen2_moe",
  "qwen2_moe_norm",
  "qwen3_moe",
  "mixtral",
  "gemma2",
  "gemma3_text",
  "phi3",
  "phi3_longrope",
];

for (const family of FAMILIES) {
  Deno.test(`${family} block 0: dW and dx match float64 finite differences`, async () => {
    using ckpt = await openCheckpoint(`tests/fixtures/models/${family}`);
    const spec = ckpt.spec;
    const geo = { batch: 2, seqLen: 12 };
    const M = geo.batch * geo.seqLen, H = spec.hidden;
    using rope = uploadRope(be, spec, geo.seqLen);
    using base = await loadBlockWeights(be, spec, ckpt.weights, 0);
    const raw: Record<string, Float64Array> = {};
    for (const [name, t] of Object.entries(base.linear)) raw[name] = f64(t);
    const weights = (): BlockWeights => ({
      ...base,
      linear: Object.fromEntries(
        Object.entries(raw).map(([n, a]) => [n, be.upload(a, base.linear[n].shape)]),
      ),
    });
    const x = seeded(M * H, 7), R = seeded(M * H, 11);
    const f = () => {
      const { y } = blockForward(be, spec, weights(), be.upload(x, [M, H]), geo, rope);
      return dot(f64(y), R);
    };
    const w = weights();
    const { saved } = blockForward(be, spec, w, be.upload(x, [M, H]), geo, rope, { save: true });
    let dx: Float64Array | undefined;
    const grads = blockBackward(be, spec, w, saved!, be.upload(R, [M, H]), geo, rope, () => true, {
      onInputGrad: (d) => (dx = f64(d)),
    });
    let worst = 0, checked = 0, untouched = 0;
    for (const { name } of blockLinears(spec, 0)) {
      const g = grads.get(name);
      if (!g) {
        untouched++; // an expert no token reached: no gradient (spec/MODELS.md § 7.2)
        continue;
      }
      const e = fdCheck(raw[name], f64(g), f, picks(raw[name].length, 6, name.length * 31 + checked));
      worst = Math.max(worst, e);
      checked++;
      assert(e < 1e-6, `${family} d${name}: ${e}`);
    }
    const ex = fdCheck(x, dx!, f, picks(x.length, 40, 3));
    console.log(
      `  ${family}: ${checked} Linears, worst dW ${worst.toExponential(2)}, dx ${ex.toExponential(2)}` +
        (untouched ? `, ${untouched} unreached expert Linears without gradient` : ""),
    );
    assert(ex < 1e-6, `${family} dx: ${ex}`);
  });
}
