/**
 * Partial rotary embedding (rope's geo.rotaryDim, Phi-3's partial_rotary_factor) on the CPU
 * backend, against a plain f64 rotate_half reference written here from transformers'
 * apply_rotary_pos_emb: only x[..., :rotaryDim] rotates (pairs i, i + rotaryDim/2, tables
 * `[maxPos, rotaryDim/2]`), the rest passes through bit for bit; the inverse is the backward
 * (central differences) and undoes the forward; 2 threads give the single-threaded bits.
 */
import type { Backend, RopeGeo, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { BackendError } from "../src/errors.ts";
import { assert, assertSameNumbers, assertThrows, maxRelError } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";
import { Rng } from "./webgpu_helpers.ts";

type Geo = RopeGeo;

/** HF's tables for rotaryDim dims: θ_i = base^(−2i/rotaryDim), cos/sin `[maxPos, rotaryDim/2]`. */
function tables(maxPos: number, rotaryDim: number, base = 10000) {
  const half = rotaryDim / 2, cos = new Float64Array(maxPos * half), sin = new Float64Array(maxPos * half);
  for (let p = 0; p < maxPos; p++) {
    for (let i = 0; i < half; i++) {
      const a = p * Math.pow(base, -2 * i / rotaryDim);
      cos[p * half + i] = Math.cos(a);
      sin[p * half + i] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** q_rot·cat(cos, cos) + rotate_half(q_rot)·cat(sin, sin), then cat with the pass-through part. */
function reference(x: Float64Array, cos: Float64Array, sin: Float64Array, g: Geo): Float64Array {
  const rot = g.rotaryDim ?? g.headDim, half = rot / 2, out = Float64Array.from(x);
  for (let b = 0; b < g.batch; b++) {
    for (let t = 0; t < g.seqLen; t++) {
      const p = t + (g.posOffset ?? 0);
      for (let h = 0; h < g.nHeads; h++) {
        const o = ((b * g.seqLen + t) * g.nHeads + h) * g.headDim;
        for (let i = 0; i < rot; i++) {
          const c = cos[p * half + (i % half)], s = sin[p * half + (i % half)];
          const rotated = i < half ? -x[o + i + half] : x[o + i - half];
          out[o + i] = x[o + i] * c + rotated * s;
        }
      }
    }
  }
  return out;
}

const f64 = (t: Tensor) => (t as unknown as { f: Float64Array }).f;

function apply(be: Backend, x: ArrayLike<number>, tab: ReturnType<typeof tables>, g: Geo, inverse = false) {
  const half = (g.rotaryDim ?? g.headDim) / 2, maxPos = tab.cos.length / half;
  const t = be.upload(Float64Array.from(x), [g.batch * g.seqLen, g.nHeads * g.headDim]);
  be.rope(t, be.upload(tab.cos, [maxPos, half]), be.upload(tab.sin, [maxPos, half]), g, inverse);
  return t;
}

const CASES: Geo[] = [
  { batch: 2, seqLen: 5, nHeads: 3, headDim: 8, rotaryDim: 4, posOffset: 3 },
  { batch: 2, seqLen: 4, nHeads: 2, headDim: 10, rotaryDim: 6 },
  { batch: 1, seqLen: 6, nHeads: 2, headDim: 12, rotaryDim: 2, posOffset: 1 },
  { batch: 2, seqLen: 3, nHeads: 2, headDim: 6, rotaryDim: 6 },
];

Deno.test("partial rope: the f64 backend matches the rotate_half reference within 1e-15 and leaves the rest untouched", () => {
  using be = new CpuBackend({ precision: "f64" });
  const r = new Rng(7);
  for (const g of CASES) {
    const rot = g.rotaryDim!, tab = tables(g.seqLen + (g.posOffset ?? 0) + 2, rot);
    const x = Float64Array.from(r.normal(g.batch * g.seqLen * g.nHeads * g.headDim));
    const got = f64(apply(be, x, tab, g)), want = reference(x, tab.cos, tab.sin, g);
    const err = maxRelError(got, want);
    console.log(`  headDim ${g.headDim} rotaryDim ${rot}: max rel err ${err.toExponential(2)}`);
    assert(err < 1e-15, `rotaryDim ${rot}: ${err}`);
    for (let i = 0; i < x.length; i++) {
      if (i % g.headDim >= rot) assert(got[i] === x[i], `element ${i} should pass through`);
    }
    // The rotation did move the rotated part (a test of an identity would pass vacuously).
    assert(maxRelError(got, x) > 1e-2, "nothing rotated");
  }
});

Deno.test("partial rope: rotaryDim = headDim gives the bits of the full rope; the inverse undoes the forward", () => {
  using be = new CpuBackend({ precision: "f64" });
  const r = new Rng(8), g: Geo = { batch: 2, seqLen: 5, nHeads: 2, headDim: 8 };
  const tab = tables(5, 8), x = Float64Array.from(r.normal(2 * 5 * 2 * 8));
  assertSameNumbers(f64(apply(be, x, tab, { ...g, rotaryDim: 8 })), f64(apply(be, x, tab, g)));
  const pg = { ...g, rotaryDim: 4 }, ptab = tables(5, 4);
  const back = f64(apply(be, f64(apply(be, x, ptab, pg)), ptab, pg, true));
  assert(maxRelError(back, x) < 1e-15, `inverse: ${maxRelError(back, x)}`);
});

Deno.test("partial rope backward: the inverse rotation of dOut matches f64 central differences within 1e-8", () => {
  using be = new CpuBackend({ precision: "f64" });
  const r = new Rng(9);
  for (const g of CASES.slice(0, 3)) {
    const tab = tables(g.seqLen + (g.posOffset ?? 0), g.rotaryDim!);
    const x = Float64Array.from(r.normal(g.batch * g.seqLen * g.nHeads * g.headDim));
    const R = Float64Array.from(r.normal(x.length));
    const f = () => reference(x, tab.cos, tab.sin, g).reduce((s, y, i) => s + y * R[i], 0);
    const err = fdCheck(x, f64(apply(be, R, tab, g, true)), f, [...x.keys()]);
    console.log(`  rotaryDim ${g.rotaryDim}: finite differences ${err.toExponential(2)}`);
    assert(err < 1e-8, `rotaryDim ${g.rotaryDim}: ${err}`);
  }
});

Deno.test("partial rope on 2 threads gives the single-threaded bits", async () => {
  using ref = new CpuBackend();
  using thr = await CpuBackend.create({ threads: 2, blas: "none" });
  const g: Geo = { batch: 8, seqLen: 64, nHeads: 4, headDim: 64, rotaryDim: 16, posOffset: 2 };
  const tab = tables(66, 16), x = new Rng(10).normal(8 * 64 * 4 * 64);
  for (const inverse of [false, true]) {
    const [a, b] = await Promise.all([
      ref.read(apply(ref, x, tab, g, inverse)),
      thr.read(apply(thr, x, tab, g, inverse)),
    ]);
    assertSameNumbers(b, a, `inverse ${inverse}`);
    assert(maxRelError(a, x) > 1e-2, "nothing rotated");
  }
});

Deno.test("a rotaryDim that is odd, zero or above headDim is a BackendError", () => {
  using be = new CpuBackend();
  const x = be.upload(new Float32Array(8), [1, 8]), tab = be.upload(new Float32Array(8), [2, 4]);
  for (const rotaryDim of [3, 0, 10]) {
    const g = { batch: 1, seqLen: 1, nHeads: 1, headDim: 8, rotaryDim };
    assertThrows(() => be.rope(x, tab, tab, g), BackendError, "rotaryDim");
  }
});
