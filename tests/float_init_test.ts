/**
 * Searched initial coefficients of the float schemes (spec/SCHEMES.md § 4.3 search_mx_scale, § 5.3
 * search_nvfp4_scale / opt_rtn_fast_nvfp4, § 9.6 SignRoundV2): the searches pick, per group, the
 * candidate an exhaustive evaluation with the independent host references (qmath/float_quant.ts
 * mxQuantize / nvfp4Quantize) finds best, first candidate on ties; NVFP4 RTN on stories260K (auto-round's
 * default opt-RTN) gives, group by group, nvfp4Quantize with one of the candidates and the fused
 * global scale, and differs from --disable_opt_rtn; --enable_alg_ext runs MXFP4 and NVFP4.
 */
import { assert, assertEquals } from "./assert.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { mxFormat, mxQuantize, nvfp4Quantize } from "../src/qmath/float_quant.ts";
import { searchMxScaleRows, searchNvfp4ScaleRows } from "../src/qmath/float_tune.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { quantizeStoriesReports } from "./stories_quantize.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { fixture } from "./assert.ts";

const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => (Math.random() * 2 - 1) * s);
const NV_CANDIDATES = [
  1,
  ...Array.from({ length: 102 }, (_, i) => 50 + i).filter((s) => s !== 100)
    .map((s) => Math.fround(s / 100)),
];

/** Σ qw·(q − w)² of one group, for a candidate evaluated by a reference quantizer. */
function groupLoss(q: Float32Array, w: Float32Array, qw: Float32Array | undefined, at: number, g: number) {
  let l = 0;
  for (let i = at; i < at + g; i++) {
    l += Math.fround(Math.fround(Math.fround(q[i] - w[i]) ** 2) * (qw ? qw[i] : 1));
  }
  return l;
}

Deno.test("search_nvfp4_scale and search_mx_scale pick the reference quantizers' best candidate", () => {
  const n = 6, k = 64;
  for (const withImportance of [false, true]) {
    const w = rand(n * k, 0.05);
    w.fill(0, 0, 16); // an all-zero group: every candidate ties, the first (1) wins
    const qw = withImportance ? Float32Array.from({ length: n * k }, () => Math.random()) : undefined;
    let amax = 0;
    for (const x of w) amax = Math.max(amax, Math.abs(x));
    const gs = Math.fround(2688 * Math.fround(1 / amax));
    const nv = searchNvfp4ScaleRows(w, k, 0, n, gs, qw);
    const G = n * k / 16;
    const byCandidate = NV_CANDIDATES.map((c) =>
      nvfp4Quantize(w, n, k, { globalScale: gs, maxScale: new Float32Array(G).fill(c) }).values
    );
    for (let gi = 0; gi < G; gi++) {
      let best = 0, bestLoss = groupLoss(byCandidate[0], w, qw, gi * 16, 16);
      for (let j = 1; j < NV_CANDIDATES.length; j++) {
        const l = groupLoss(byCandidate[j], w, qw, gi * 16, 16);
        if (l < bestLoss) [best, bestLoss] = [j, l];
      }
      assertEquals(nv[gi], NV_CANDIDATES[best], `nv group ${gi} (importance ${withImportance})`);
    }
    const fmt = mxFormat("mx_fp4", 4);
    const mx = searchMxScaleRows(w, k, 0, n, fmt, qw);
    const Gm = n * k / 32, mxCands = [1, 0.5, 2];
    const mxBy = mxCands.map((c) =>
      mxQuantize(w, n, k, 32, fmt, { maxScale: new Float32Array(Gm).fill(c) }).values
    );
    for (let gi = 0; gi < Gm; gi++) {
      let best = 0, bestLoss = groupLoss(mxBy[0], w, qw, gi * 32, 32);
      for (let j = 1; j < 3; j++) {
        const l = groupLoss(mxBy[j], w, qw, gi * 32, 32);
        if (l < bestLoss) [best, bestLoss] = [j, l];
      }
      assertEquals(mx[gi], mxCands[best], `mx group ${gi} (importance ${withImportance})`);
    }
    assertEquals([nv[0], mx[0]], [1, 1], "all-zero group keeps the first candidate");
  }
});

Deno.test("NVFP4 RTN defaults to opt_rtn_fast_nvfp4: each group is nvfp4Quantize with one candidate and the fused gs", async () => {
  using be = new CpuBackend();
  const opts = { scheme: resolveScheme("NVFP4"), iters: 0, formats: ["fake"], nsamples: 8, seqlen: 64 };
  const opt = await quantizeStoriesReports(be, opts);
  const plain = await quantizeStoriesReports(be, { ...opts, disableOptRtn: true });
  using ck = await openCheckpoint(fixture("stories260K"));
  const amaxOf = async (name: string) => {
    let m = 0;
    for (const x of await ck.weights.readF32(name)) m = Math.max(m, Math.abs(x));
    return Math.fround(2688 * Math.fround(1 / Math.fround(m)));
  };
  let searched = 0, groups = 0;
  for (const [name, q] of opt.fake) {
    const w = await ck.weights.readF32(name);
    const [n, k] = ck.weights.shape(name);
    // The fused global scale (§ 5.1): the minimum over q/k/v and over gate/up.
    const block = name.replace(/\.(self_attn|mlp)\..*$/, "");
    const group = /[qkv]_proj/.test(name)
      ? ["q_proj", "k_proj", "v_proj"].map((l) => `${block}.self_attn.${l}.weight`)
      : /gate_proj|up_proj/.test(name)
      ? ["gate_proj", "up_proj"].map((l) => `${block}.mlp.${l}.weight`)
      : [name];
    const gs = Math.min(...await Promise.all(group.map(amaxOf)));
    const G = (n * k) / 16;
    const byCandidate = NV_CANDIDATES.map((c) =>
      nvfp4Quantize(w, n, k, { globalScale: gs, maxScale: new Float32Array(G).fill(c) }).values
    );
    const p = plain.fake.get(name)!;
    for (let gi = 0; gi < G; gi++) {
      groups++;
      const at = gi * 16,
        same = (a: Float32Array) => q.subarray(at, at + 16).every((x, i) => Object.is(x, a[at + i]));
      assert(byCandidate.some(same), `${name} group ${gi}: no candidate gives the run's values`);
      if (!same(p)) searched++;
    }
  }
  console.log(`  NVFP4 opt-RTN: ${searched} of ${groups} groups differ from plain RTN`);
  assert(searched > 0 && searched < groups, `${searched} of ${groups} groups differ from plain RTN`);
});

Deno.test("--enable_alg_ext on MXFP4 and NVFP4: block losses fall and the result differs from SignRound v1", async () => {
  using be = new CpuBackend();
  for (const scheme of ["MXFP4", "NVFP4"]) {
    const opts = {
      scheme: resolveScheme(scheme),
      formats: ["fake"],
      iters: 6,
      nsamples: 8,
      seqlen: 64,
      batchSize: 4,
    };
    const v1 = await quantizeStoriesReports(be, opts);
    const v2 = await quantizeStoriesReports(be, { ...opts, enableAlgExt: true });
    for (const b of v2.blocks) assert(b.lossBest! <= b.lossStart!, `${scheme} block ${b.block}`);
    let differ = 0;
    for (const [name, w] of v2.fake) {
      for (let i = 0; i < w.length; i++) if (w[i] !== v1.fake.get(name)![i]) differ++;
    }
    assert(differ > 0, `${scheme}: V2 gave V1's weights`);
    console.log(
      `  ${scheme} V2: ${differ} weights differ from V1; losses ${
        v2.blocks.map((b) => `${b.lossStart!.toExponential(2)}→${b.lossBest!.toExponential(2)}`).join(", ")
      }`,
    );
  }
});
