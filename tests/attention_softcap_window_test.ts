/**
 * Attention with Gemma 2's score soft cap and a sliding window (AttentionShape.softcap, .window) on
 * the CPU backend, against a plain f64 O(T²) reference written here from the contract in backend.ts:
 * s = scale·q·k, s ← cap·tanh(s/cap), then keys j with j > t or t − j ≥ window masked, softmax.
 * - out and lse of the f64 backend (TypeScript kernel) and of the f64 tiled BLAS kernel (threads 2,
 *   sequences longer than its 64-row tile) match the reference within 1e-12;
 * - the backward of both matches f64 central differences (the tanh derivative included);
 * - the f32 backend on 2 threads gives the single-threaded bits (TypeScript) or stays within 1e-5
 *   (BLAS); window ≥ seqLen is plain causal; window 1 returns v of the query's own row.
 */
import type { AttentionShape, Backend, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { BackendError } from "../src/errors.ts";
import { assert, assertSameNumbers, assertThrows, maxRelError } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";
import { Rng } from "./webgpu_helpers.ts";

/** The f64 reference: out `[B·T, H·D]` and lse `[B, H, T]`. */
function reference(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, g: AttentionShape) {
  const { batch: B, seqLen: T, nHeads: H, nKvHeads: KV, headDim: D, scale, softcap, window } = g;
  const out = new Float64Array(B * T * H * D), lse = new Float64Array(B * H * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / KV));
      for (let t = 0; t < T; t++) {
        const s = new Float64Array(T);
        for (let j = 0; j < T; j++) {
          let dot = 0;
          for (let d = 0; d < D; d++) {
            dot += q[(b * T + t) * H * D + h * D + d] * k[(b * T + j) * KV * D + kh * D + d];
          }
          s[j] = dot * scale;
          if (softcap !== undefined) s[j] = softcap * Math.tanh(s[j] / softcap);
          const visible = j <= t && (window === undefined || t - j < window);
          if (!visible) s[j] = -Infinity;
        }
        const m = Math.max(...s);
        let sum = 0;
        for (let j = 0; j < T; j++) sum += Math.exp(s[j] - m);
        lse[(b * H + h) * T + t] = m + Math.log(sum);
        for (let j = 0; j < T; j++) {
          const p = Math.exp(s[j] - m) / sum;
          for (let d = 0; d < D; d++) {
            out[(b * T + t) * H * D + h * D + d] += p * v[(b * T + j) * KV * D + kh * D + d];
          }
        }
      }
    }
  }
  return { out, lse };
}

const f64 = (t: Tensor) => (t as unknown as { f: Float64Array }).f;

/** Inputs of a shape; q and k scaled so that scores reach a few units and a cap of 1–2 matters. */
function inputs(g: AttentionShape, seed: number, qkStd = 1.5) {
  const r = new Rng(seed), M = g.batch * g.seqLen;
  return {
    q: Float64Array.from(r.normal(M * g.nHeads * g.headDim, qkStd)),
    k: Float64Array.from(r.normal(M * g.nKvHeads * g.headDim, qkStd)),
    v: Float64Array.from(r.normal(M * g.nKvHeads * g.headDim)),
    dOut: Float64Array.from(r.normal(M * g.nHeads * g.headDim)),
  };
}
type Inputs = ReturnType<typeof inputs>;

function run(be: Backend, x: Inputs, g: AttentionShape) {
  const M = g.batch * g.seqLen, qw = g.nHeads * g.headDim, kw = g.nKvHeads * g.headDim;
  const q = be.upload(x.q, [M, qw]), k = be.upload(x.k, [M, kw]), v = be.upload(x.v, [M, kw]);
  const { out, lse } = be.attention(q, k, v, g);
  const grads = be.attentionBackward(q, k, v, out, lse, be.upload(x.dOut, [M, qw]), g);
  return { out, lse, ...grads };
}

const GQA = { batch: 2, nHeads: 4, nKvHeads: 2 };
/** Short sequences for the TypeScript kernel; cap and window alone and together. */
const SHORT: [string, AttentionShape][] = [
  ["softcap 1.5 + window 3", { ...GQA, seqLen: 9, headDim: 5, scale: 0.7, softcap: 1.5, window: 3 }],
  ["softcap 1.0", { ...GQA, seqLen: 7, headDim: 4, scale: 0.8, softcap: 1 }],
  ["window 2", { ...GQA, seqLen: 8, headDim: 3, scale: 0.6, window: 2 }],
  ["window 1 + softcap 2", { ...GQA, seqLen: 6, headDim: 4, scale: 0.5, softcap: 2, window: 1 }],
  ["window 12 ≥ seqLen 6", { ...GQA, seqLen: 6, headDim: 4, scale: 0.5, window: 12 }],
];
/** Longer than the tiled kernel's 64-row tile, windows cutting tiles in the middle. */
const LONG: [string, AttentionShape][] = [
  ["T 150 softcap 2 + window 40", { ...GQA, seqLen: 150, headDim: 8, scale: 0.4, softcap: 2, window: 40 }],
  ["T 130 window 70", { ...GQA, seqLen: 130, headDim: 6, scale: 0.4, window: 70 }],
  ["T 100 softcap 1.2", { ...GQA, seqLen: 100, headDim: 6, scale: 0.4, softcap: 1.2 }],
];

function checkForward(be: Backend, cases: [string, AttentionShape][], what: string, seed: number): void {
  for (const [name, g] of cases) {
    const x = inputs(g, seed++), ref = reference(x.q, x.k, x.v, g), got = run(be, x, g);
    const eOut = maxRelError(f64(got.out), ref.out), eLse = maxRelError(f64(got.lse), ref.lse);
    console.log(`  ${what} ${name}: out ${eOut.toExponential(2)}, lse ${eLse.toExponential(2)}`);
    assert(eOut < 1e-12 && eLse < 1e-12, `${what} ${name}: out ${eOut}, lse ${eLse}`);
  }
}

function checkGradients(be: Backend, cases: [string, AttentionShape][], what: string, seed: number): void {
  for (const [name, g] of cases) {
    const x = inputs(g, seed++), got = run(be, x, g);
    const f = () => {
      const o = reference(x.q, x.k, x.v, g).out;
      let s = 0;
      for (let i = 0; i < o.length; i++) s += o[i] * x.dOut[i];
      return s;
    };
    const r = new Rng(seed);
    const pick = (n: number) => Array.from({ length: 50 }, () => Math.floor(r.uniform(1, 0, n)[0]));
    const errs = (["q", "k", "v"] as const).map((p) =>
      fdCheck(x[p], f64(got[`d${p}`]), f, pick(x[p].length))
    );
    const [eq, ek, ev] = errs.map((e) => e.toExponential(2));
    console.log(`  ${what} ${name}: finite differences dq ${eq}, dk ${ek}, dv ${ev}`);
    errs.forEach((e, i) => assert(e < 1e-6, `${what} ${name} d${"qkv"[i]}: ${e}`));
  }
}

Deno.test("softcap/window attention: the f64 TypeScript kernel's out and lse match the f64 reference within 1e-12", () => {
  using be = new CpuBackend({ precision: "f64" });
  checkForward(be, [...SHORT, ...LONG.slice(2)], "ts", 1);
});

Deno.test("softcap/window attention backward: the f64 TypeScript kernel matches central differences within 1e-6", () => {
  using be = new CpuBackend({ precision: "f64" });
  checkGradients(be, SHORT, "ts", 11);
});

Deno.test("softcap/window attention: the f64 tiled BLAS kernel matches the reference (forward 1e-12, backward by differences 1e-6)", async () => {
  using be = await CpuBackend.create({ precision: "f64", threads: 2 });
  if (!be.blas?.hasDgemm) {
    return console.log("  no CBLAS library with dgemm: the tiled kernel is not exercised here");
  }
  checkForward(be, [...LONG, ...SHORT], "blas", 21);
  checkGradients(be, [LONG[0], LONG[1], SHORT[0]], "blas", 31);
});

Deno.test("softcap/window attention on 2 threads: TypeScript kernels give the single-threaded bits, BLAS stays within 1e-5", async () => {
  using ref = new CpuBackend();
  using ts = await CpuBackend.create({ threads: 2, blas: "none" });
  using blas = await CpuBackend.create({ threads: 2 });
  for (const [name, g] of [...LONG, SHORT[0]]) {
    const x = inputs(g, 41), want = run(ref, x, g);
    for (const [be, bound] of [[ts, 0], [blas, 1e-5]] as const) {
      const got = run(be, x, g);
      for (const key of ["out", "lse", "dq", "dk", "dv"] as const) {
        const [a, b] = await Promise.all([be.read(got[key]), ref.read(want[key])]);
        if (bound === 0) assertSameNumbers(a, b, `${name} ${key}`);
        else assert(maxRelError(a, b) <= bound, `${name} ${key}: ${maxRelError(a, b)}`);
      }
    }
  }
});

Deno.test("window ≥ seqLen is plain causal; window 1 returns v of the query's own position; the cap changes the output", () => {
  using be = new CpuBackend({ precision: "f64" });
  const g: AttentionShape = { ...GQA, seqLen: 7, headDim: 4, scale: 0.6 };
  const x = inputs(g, 51), plain = run(be, x, g);
  for (const window of [7, 8, 100]) {
    const w = run(be, x, { ...g, window });
    for (const key of ["out", "lse", "dq", "dk", "dv"] as const) {
      assertSameNumbers(f64(w[key]), f64(plain[key]), `window ${window} ${key}`);
    }
  }
  const one = f64(run(be, x, { ...g, window: 1, softcap: 1 }).out);
  for (let r = 0; r < g.batch * g.seqLen; r++) {
    for (let h = 0; h < g.nHeads; h++) {
      for (let d = 0; d < g.headDim; d++) {
        const kh = Math.floor(h / 2), want = x.v[r * g.nKvHeads * g.headDim + kh * g.headDim + d];
        assert(Math.abs(one[r * g.nHeads * g.headDim + h * g.headDim + d] - want) < 1e-15, "window 1");
      }
    }
  }
  // A cap of 1 with scores of several units must move the output well beyond rounding.
  const capped = f64(run(be, x, { ...g, softcap: 1 }).out);
  const moved = maxRelError(capped, f64(plain.out));
  console.log(`  softcap 1 moves the output by ${moved.toExponential(2)} (relative)`);
  assert(moved > 0.05, `softcap 1 barely changed the output: ${moved}`);
});

Deno.test("an attention window below 1 or a cap that is not positive is a BackendError", () => {
  using be = new CpuBackend();
  const g: AttentionShape = { batch: 1, seqLen: 2, nHeads: 1, nKvHeads: 1, headDim: 2, scale: 1 };
  const t = be.upload(new Float32Array(4), [2, 2]);
  assertThrows(() => be.attention(t, t, t, { ...g, window: 0 }), BackendError, "window");
  assertThrows(() => be.attention(t, t, t, { ...g, softcap: 0 }), BackendError, "softcap");
  assertThrows(() => be.attention(t, t, t, { ...g, window: 1.5 }), BackendError, "window");
});
