/**
 * SignRoundV2 (`--enable_alg_ext`, spec/SCHEMES.md § 9.6) on the CPU: the int quantizer with a tuned
 * initial scale computes auto-round's quant_tensor_sym-with-init_scale values (written out here
 * directly from int.py:200-214) with β clamped into [0, 2]; its β gradient matches finite
 * differences of the frozen-rounding surrogate; the outlier-suppressed loss drops exactly the
 * ⌊n/1000⌋ largest |y − t| and its gradient is the surrogate's; a W2 run on stories260K starts from the
 * searched scales and tunes with that loss.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { fakeQuantize, fakeQuantizeBackward, type QuantMath } from "../src/qmath/int_quant.ts";
import { outlierSuppressedMse } from "../src/backend/cpu/loss_ops.ts";
import { roundHalfEven } from "../src/tensor/dtype.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";
import { assert, assertEquals } from "./assert.ts";

const rand = (n: number, s = 1) => Float64Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);

Deno.test("SignRoundV2 int quantizer: scale = fp16(init·clamp(β, 0, 2)), codes divide by it, thresholded", () => {
  const n = 3, k = 64, g = 32, G = 2, bits = 2, maxq = 2;
  const w = rand(n * k, 0.05), v = rand(n * k, 0.4);
  const init = Float64Array.from(
    { length: n * G },
    (_, i) => (i % 3 === 2 ? -1 : 1) * (0.01 + 0.01 * Math.random()),
  );
  init[1] = 4e-6; // under q_scale_thresh once rounded: clamped to +1e-5 (fp16-rounded)
  const beta = Float64Array.of(0.5, 1.7, 2.6, -0.3, 1, 1.999);
  const m: QuantMath = {
    bits,
    sym: true,
    roundScale: Math.f16round,
    scaleThresh: 1e-5,
    tunedInitScale: { maxScaleBound: 2 },
  };
  const out = new Float64Array(n * k);
  fakeQuantize(w, { n, k, g }, m, {
    v,
    maxScale: beta,
    wMin: new Float64Array(n * G),
    wMax: new Float64Array(n * G),
    initScale: init,
  }, out);
  const thr = Math.f16round(1e-5);
  for (let r = 0; r < n; r++) {
    for (let gi = 0; gi < G; gi++) {
      const idx = r * G + gi, b = Math.min(2, Math.max(0, beta[idx]));
      let s = Math.f16round(init[idx] * b);
      s = s < 0 ? Math.min(s, -thr) : Math.max(s, thr);
      for (let c = gi * g; c < (gi + 1) * g; c++) {
        const i = r * k + c;
        const q = Math.min(Math.max(roundHalfEven(w[i] / s + v[i]), -maxq), maxq - 1);
        assertEquals(out[i], s * q, `row ${r} group ${gi} col ${c}`);
      }
    }
  }
});

Deno.test("SignRoundV2 int quantizer: dβ matches finite differences of the frozen-rounding surrogate", () => {
  const n = 4, k = 32, g = 32, bits = 2, maxq = 2;
  const w = rand(n * k, 0.05), v = rand(n * k, 0.3);
  const init = Float64Array.from({ length: n }, () => 0.01 + 0.01 * Math.random());
  const beta = Float64Array.from({ length: n }, () => 0.3 + 1.5 * Math.random());
  const R = rand(n * k);
  const m: QuantMath = {
    bits,
    sym: true,
    roundScale: (x) => x,
    scaleThresh: 1e-12,
    tunedInitScale: { maxScaleBound: 2 },
  };
  // Surrogate: the rounding residual and the clamp branch of each element frozen at the base point.
  const base = new Float64Array(n * k), clampedAt = new Int8Array(n * k);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const i = r * k + c, x = w[i] / (init[r] * beta[r]) + v[i];
      base[i] = roundHalfEven(x) - x;
      const q = roundHalfEven(x);
      clampedAt[i] = q < -maxq ? -1 : q > maxq - 1 ? 1 : 0;
    }
  }
  const loss = (b: Float64Array) => {
    let L = 0;
    for (let r = 0; r < n; r++) {
      const s = init[r] * b[r];
      for (let c = 0; c < k; c++) {
        const i = r * k + c, x = w[i] / s + v[i];
        const q = clampedAt[i] === 0 ? x + base[i] : clampedAt[i] * (clampedAt[i] < 0 ? maxq : maxq - 1);
        L += R[i] * s * q;
      }
    }
    return L;
  };
  const dv = new Float64Array(n * k), da = new Float64Array(n), db = new Float64Array(n);
  const tun = {
    v,
    minScale: new Float64Array(n).fill(1),
    maxScale: beta,
    wMin: new Float64Array(n),
    wMax: new Float64Array(n),
    initScale: init,
  };
  fakeQuantizeBackward(w, { n, k, g }, m, tun, R, dv, da, db);
  let err = 0, scale = 0;
  for (let r = 0; r < n; r++) {
    const e = 1e-6, bp = beta.slice(), bm = beta.slice();
    bp[r] += e;
    bm[r] -= e;
    const num = (loss(bp) - loss(bm)) / (2 * e);
    err = Math.max(err, Math.abs(num - db[r]));
    scale = Math.max(scale, Math.abs(num));
  }
  console.log(`  SignRoundV2 dβ max relative error ${(err / scale).toExponential(2)}`);
  assert(err / scale < 1e-6, `dβ relative error ${err / scale}`);
  assertEquals([...da], [0, 0, 0, 0], "α has no role with an initial scale");
});

Deno.test("outlier-suppressed loss: the ⌊n/1000⌋ largest |y − t| are dropped; value and dy as written out", () => {
  const rows = 40, cols = 64, n = rows * cols; // 2560 elements: 2 dropped
  const y = Float32Array.from(rand(n)), t = Float32Array.from(rand(n));
  y[100] = 50; // the two largest differences
  y[2000] = -40;
  const mask = Float32Array.from({ length: rows }, (_, r) => (r % 5 === 4 ? 0 : 1));
  const dy = new Float32Array(n);
  const L = outlierSuppressedMse(y, t, mask, dy, cols, 1000);
  let want = 0;
  for (let i = 0; i < n; i++) {
    if (i === 100 || i === 2000) continue;
    const e = Math.fround(y[i] - t[i]) * mask[Math.floor(i / cols)];
    want += e * e;
  }
  assert(Math.abs(L - want / n) <= 1e-12 * want, `loss ${L} vs ${want / n}`);
  assert(dy[100] === 0 && dy[2000] === 0, "dropped elements get no gradient");
  for (const i of [0, 7, 333, 1999]) {
    const m = mask[Math.floor(i / cols)];
    assert(Math.abs(dy[i] - Math.fround(1000 * 2 * Math.fround(y[i] - t[i]) * m / n)) < 1e-9, `dy[${i}]`);
  }
});

Deno.test("--enable_alg_ext on stories260K W2G32: block losses fall, and the result differs from plain SignRound", async () => {
  using be = new CpuBackend();
  const opts = { scheme: resolveScheme("W2A16", { groupSize: 32 }), formats: ["fake"], iters: 8 };
  const v1 = await quantizeStoriesReports(be, opts);
  const v2 = await quantizeStoriesReports(be, { ...opts, enableAlgExt: true });
  for (const b of v2.blocks) {
    assert(b.lossBest! <= b.lossStart!, `block ${b.block}: ${b.lossBest} > ${b.lossStart}`);
  }
  let differ = 0;
  for (const [name, w] of v2.fake) {
    const w1 = v1.fake.get(name)!;
    for (let i = 0; i < w.length; i++) if (w[i] !== w1[i]) differ++;
  }
  assert(differ > 0, "SignRoundV2 produced plain SignRound's weights");
  console.log(
    `  V2 block losses ${
      v2.blocks.map((b) => `${b.lossStart!.toExponential(3)}→${b.lossBest!.toExponential(3)}`).join(", ")
    }`,
  );
});
