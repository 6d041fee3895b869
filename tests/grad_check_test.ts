/**
 * Gradients of the SignRound op set against central finite differences in float64, on fresh random
 * inputs: each op's backward, the fake-quant straight-through gradients (against a surrogate whose
 * rounding residuals are frozen, which is exactly what round_ste differentiates), and a whole
 * decoder block (Llama, Qwen2 with q/k/v bias, Qwen3 with q/k norm) for every Linear weight.
 */
import type { Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { blockBackward, blockForward, type BlockWeights } from "../src/model/block.ts";
import { BLOCK_LINEARS, type LinearName, parseModelConfig } from "../src/model/config.ts";
import { uploadRope } from "../src/model/transformer.ts";
import {
  fakeQuantizeBackward,
  groupMinMax,
  type QuantMath,
  type QuantTunables,
} from "../src/qmath/int_quant.ts";
import { roundHalfEven } from "../src/tensor/dtype.ts";
import { assert, assertEquals } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";

const be = new CpuBackend({ precision: "f64" });

function rand(n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (Math.random() * 2 - 1) * scale);
}
function up(x: Float64Array, shape: number[]): Tensor {
  return be.upload(x, shape);
}
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}
function readF64(t: Tensor): Float64Array {
  // f64 backend storage is read as f32 by Backend.read; reach into the storage for full precision.
  return Float64Array.from((t as unknown as { f: Float64Array }).f);
}

function sample(n: number, k = 40): number[] {
  return n <= k ? [...Array(n).keys()] : Array.from({ length: k }, () => Math.floor(Math.random() * n));
}
const results: [string, number][] = [];
function report(name: string, e: number, bound = 1e-6): void {
  results.push([name, e]);
  console.log(`  ${name.padEnd(34)} max rel err ${e.toExponential(2)}`);
  assert(e < bound, `${name}: ${e}`);
}

Deno.test("per-op gradients match float64 central differences", () => {
  const rows = 6, n = 16;
  // RMSNorm
  {
    const x = rand(rows * n), w = rand(n), R = rand(rows * n);
    const f = () => dot(readSync(be.rmsNorm(up(x, [rows, n]), up(w, [n]), 1e-5)), R);
    const dx = readF64(be.rmsNormBackward(up(x, [rows, n]), up(w, [n]), up(R, [rows, n]), 1e-5));
    report("rmsNorm dx", fdCheck(x, dx, f, sample(x.length)));
  }
  // SiLU·mul
  {
    const g = rand(rows * n, 3), u = rand(rows * n), R = rand(rows * n);
    const f = () => dot(readSync(be.siluMul(up(g, [rows, n]), up(u, [rows, n]))), R);
    const { dg, du } = be.siluMulBackward(up(g, [rows, n]), up(u, [rows, n]), up(R, [rows, n]));
    report("siluMul dg", fdCheck(g, readF64(dg), f, sample(g.length)));
    report("siluMul du", fdCheck(u, readF64(du), f, sample(u.length)));
  }
  // RoPE: the backward is the inverse rotation applied to the upstream gradient.
  {
    const spec = tinySpec("llama");
    using rope = uploadRope(be, spec, 8);
    const geo = { batch: 2, seqLen: 8, nHeads: 2, headDim: spec.headDim };
    const x = rand(16 * 2 * spec.headDim), R = rand(x.length);
    const f = () => {
      const t = up(x, [16, 2 * spec.headDim]);
      be.rope(t, rope.cos, rope.sin, geo);
      return dot(readSync(t), R);
    };
    const g = up(R, [16, 2 * spec.headDim]);
    be.rope(g, rope.cos, rope.sin, geo, true);
    report("rope dx", fdCheck(x, readF64(g), f, sample(x.length)));
  }
  // Causal GQA attention
  {
    const shape = { batch: 2, seqLen: 5, nHeads: 4, nKvHeads: 2, headDim: 3, scale: 0.6 };
    const M = 10;
    const q = rand(M * 12), k = rand(M * 6), v = rand(M * 6), R = rand(M * 12);
    const f = () => dot(readSync(be.attention(up(q, [M, 12]), up(k, [M, 6]), up(v, [M, 6]), shape).out), R);
    const fw = be.attention(up(q, [M, 12]), up(k, [M, 6]), up(v, [M, 6]), shape);
    const g = be.attentionBackward(
      up(q, [M, 12]),
      up(k, [M, 6]),
      up(v, [M, 6]),
      fw.out,
      fw.lse,
      up(R, [M, 12]),
      shape,
    );
    report("attention dq", fdCheck(q, readF64(g.dq), f, sample(q.length, 60)));
    report("attention dk", fdCheck(k, readF64(g.dk), f, sample(k.length, 60)));
    report("attention dv", fdCheck(v, readF64(g.dv), f, sample(v.length, 60)));
  }
  // Masked MSE (AutoRound's loss, scaled)
  {
    const y = rand(rows * n),
      t = rand(rows * n),
      mask = Float64Array.from({ length: rows }, (_, i) => (i % 3 ? 1 : 0));
    const f = () => readSync(be.mseLoss(up(y, [rows, n]), up(t, [rows, n]), up(mask, [rows]), 1).loss)[0];
    const { dy } = be.mseLoss(up(y, [rows, n]), up(t, [rows, n]), up(mask, [rows]), 1);
    report("mseLoss dy", fdCheck(y, readF64(dy), f, sample(y.length)));
  }
  // Linear: x·Wᵀ with the three matmul forms the backward uses.
  {
    const x = rand(rows * n), w = rand(5 * n), R = rand(rows * 5);
    const f = () => dot(readSync(be.matmul(up(x, [rows, n]), up(w, [5, n]), { transB: true })), R);
    const dW = readF64(be.matmul(up(R, [rows, 5]), up(x, [rows, n]), { transA: true }));
    const dX = readF64(be.matmul(up(R, [rows, 5]), up(w, [5, n])));
    report("linear dW (dYᵀ·X)", fdCheck(w, dW, f, sample(w.length)));
    report("linear dX (dY·W)", fdCheck(x, dX, f, sample(x.length)));
  }
});

/** Synchronous read of the f64 backend's storage. */
function readSync(t: Tensor): Float64Array {
  return (t as unknown as { f: Float64Array }).f;
}

/**
 * Fake-quant surrogate with the rounding residuals frozen at the base point: what round_ste
 * differentiates. Independent of src/qmath/int_quant.ts (written from the spec's formulas).
 */
function surrogate(
  w: Float64Array,
  n: number,
  k: number,
  g: number,
  bits: number,
  sym: boolean,
  t: { v: Float64Array; a: Float64Array; b: Float64Array; lo: Float64Array; hi: Float64Array },
  frozen?: { r: Float64Array; zr: Float64Array; clampLo: Uint8Array; clampHi: Uint8Array },
) {
  const G = k / g, out = new Float64Array(n * k);
  const rec = frozen ??
    {
      r: new Float64Array(n * k),
      zr: new Float64Array(n * G),
      clampLo: new Uint8Array(n * k),
      clampHi: new Uint8Array(n * k),
    };
  for (let row = 0; row < n; row++) {
    for (let gi = 0; gi < G; gi++) {
      const j = row * G + gi, a = t.a[j], b = t.b[j];
      let s: number, zp = 0;
      if (sym) {
        const maxq = 2 ** (bits - 1), mn = -(t.lo[j] * a), mx = t.hi[j] * b;
        s = (mx < mn ? 1 : -1) * Math.max(mx, mn) / maxq;
      } else {
        const maxq = 2 ** bits - 1, lo = t.lo[j] * a, hi = t.hi[j] * b;
        s = (hi - lo) / maxq;
        const zz = -lo / s;
        if (!frozen) rec.zr[j] = roundHalfEven(zz) - zz;
        zp = zz + rec.zr[j];
      }
      const [qlo, qhi] = sym ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
      for (let c = gi * g; c < (gi + 1) * g; c++) {
        const i = row * k + c, z = w[i] / s + t.v[i];
        if (!frozen) rec.r[i] = roundHalfEven(z) - z;
        let q = z + rec.r[i] + zp;
        if (!frozen) {
          rec.clampLo[i] = q < qlo ? 1 : 0;
          rec.clampHi[i] = q > qhi ? 1 : 0;
        }
        if (rec.clampLo[i]) q = qlo;
        if (rec.clampHi[i]) q = qhi;
        out[i] = s * (q - zp);
      }
    }
  }
  return { out, rec };
}

Deno.test("fake-quant straight-through gradients (dV, dα, dβ) match finite differences of the frozen-rounding surrogate", () => {
  for (const sym of [true, false]) {
    for (const bits of [2, 4]) {
      const n = 4, k = 64, g = 32, G = 2;
      const w = rand(n * k, 0.05);
      const { wMin, wMax } = groupMinMax(w, { n, k, g });
      const t = {
        v: rand(n * k, 0.3),
        a: Float64Array.from({ length: n * G }, () => 0.6 + 0.35 * Math.random()),
        b: Float64Array.from({ length: n * G }, () => 0.6 + 0.35 * Math.random()),
        lo: wMin,
        hi: wMax,
      };
      const R = rand(n * k);
      const base = surrogate(w, n, k, g, bits, sym, t);
      const f = () => dot(surrogate(w, n, k, g, bits, sym, t, base.rec).out, R);
      const m: QuantMath = { bits, sym, roundScale: (x) => x, scaleThresh: 1e-12 };
      const tun: QuantTunables = { v: t.v, minScale: t.a, maxScale: t.b, wMin, wMax };
      const dv = new Float64Array(n * k), da = new Float64Array(n * G), db = new Float64Array(n * G);
      fakeQuantizeBackward(w, { n, k, g }, m, tun, R, dv, da, db);
      const tag = `${bits}b ${sym ? "sym" : "asym"}`;
      report(`fakeQuant dV ${tag}`, fdCheck(t.v, dv, f, sample(n * k)));
      report(`fakeQuant dα ${tag}`, fdCheck(t.a, da, f, sample(n * G)));
      report(`fakeQuant dβ ${tag}`, fdCheck(t.b, db, f, sample(n * G)));
    }
  }
});

function tinySpec(modelType: "llama" | "qwen2" | "qwen3") {
  return parseModelConfig({
    model_type: modelType,
    hidden_size: 12,
    intermediate_size: 20,
    num_hidden_layers: 1,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 4,
    vocab_size: 10,
    rms_norm_eps: 1e-5,
  }, "tiny");
}

for (const modelType of ["llama", "qwen2", "qwen3"] as const) {
  Deno.test(`whole ${modelType} block: dW of all seven Linears match finite differences`, () => {
    const spec = tinySpec(modelType);
    const geo = { batch: 2, seqLen: 5 };
    const M = geo.batch * geo.seqLen, H = spec.hidden;
    using rope = uploadRope(be, spec, geo.seqLen);
    const shapes: Record<LinearName, [number, number]> = {
      "self_attn.q_proj": [16, H],
      "self_attn.k_proj": [8, H],
      "self_attn.v_proj": [8, H],
      "self_attn.o_proj": [H, 16],
      "mlp.gate_proj": [20, H],
      "mlp.up_proj": [20, H],
      "mlp.down_proj": [H, 20],
    };
    const raw = Object.fromEntries(
      BLOCK_LINEARS.map((l) => [l, rand(shapes[l][0] * shapes[l][1], 0.4)]),
    ) as Record<
      LinearName,
      Float64Array
    >;
    const norms = { in: rand(H).map((x) => 1 + 0.3 * x), post: rand(H).map((x) => 1 + 0.3 * x) };
    const extra = {
      bq: rand(16, 0.2),
      bk: rand(8, 0.2),
      bv: rand(8, 0.2),
      qn: rand(4).map((x) => 1 + 0.3 * x),
      kn: rand(4).map((x) => 1 + 0.3 * x),
    };
    const x = rand(M * H);
    const R = rand(M * H);
    const weights = (): BlockWeights => ({
      inputNorm: up(norms.in, [H]),
      postNorm: up(norms.post, [H]),
      linear: Object.fromEntries(BLOCK_LINEARS.map((l) => [l, up(raw[l], shapes[l])])) as Record<
        LinearName,
        Tensor
      >,
      bias: spec.traits.qkvBias
        ? { q: up(extra.bq, [16]), k: up(extra.bk, [8]), v: up(extra.bv, [8]) }
        : undefined,
      qNorm: spec.traits.qkNorm ? up(extra.qn, [4]) : undefined,
      kNorm: spec.traits.qkNorm ? up(extra.kn, [4]) : undefined,
    });
    const f = () => dot(readSync(blockForward(be, spec, weights(), up(x, [M, H]), geo, rope).y), R);
    const w = weights();
    const { saved } = blockForward(be, spec, w, up(x, [M, H]), geo, rope, { save: true });
    const grads = blockBackward(be, spec, w, saved!, up(R, [M, H]), geo, rope, () => true);
    for (const l of BLOCK_LINEARS) {
      report(
        `${modelType} block d${l.split(".")[1]}`,
        fdCheck(raw[l], readF64(grads.get(l)!), f, sample(raw[l].length, 25)),
      );
    }
    // The releasing backward (SignRound's): gradients handed out one by one, saved tensors freed at
    // their last read, dg/du written over gate/up by a backend that overwrites (emulated here):
    // the same gradients, and nothing of the forward left but its input.
    const overwriting = Object.assign(Object.create(be), {
      siluMulBackward(g: Tensor, u: Tensor, dh: Tensor, o?: { overwrite?: boolean }) {
        const r = be.siluMulBackward(g, u, dh);
        if (!o?.overwrite) return r;
        be.copy(g, r.dg), be.copy(u, r.du);
        r.dg[Symbol.dispose](), r.du[Symbol.dispose]();
        return { dg: g, du: u };
      },
    }) as typeof be;
    const w2 = weights();
    const { saved: s2 } = blockForward(be, spec, w2, up(x, [M, H]), geo, rope, { save: true });
    const handed = new Map<LinearName, Float64Array>();
    const onGrad = (n: LinearName, dW: Tensor) => (handed.set(n, readF64(dW)), dW[Symbol.dispose]());
    blockBackward(overwriting, spec, w2, s2!, up(R, [M, H]), geo, rope, () => true, {
      onGrad,
      release: true,
    });
    for (const l of BLOCK_LINEARS) assertEquals(handed.get(l), readF64(grads.get(l)!), `released d${l}`);
    assertEquals(Object.keys(s2!), ["x"]);
  });
}

Deno.test("gradient-check summary", () => {
  assert(results.length > 0);
  const worst = results.reduce((a, b) => (b[1] > a[1] ? b : a));
  console.log(`  ${results.length} checks, worst ${worst[0]} ${worst[1].toExponential(2)}`);
});
