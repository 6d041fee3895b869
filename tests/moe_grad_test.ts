/**
 * moeBackward (src/model/moe.ts) against float64 central differences of L = Σ c·moe(h2) on the f64
 * CPU backend: dL/dh2 through all three paths (expert inputs, shared expert and its sigmoid gate,
 * routing weights through renorm and the softmax into the router), with renorm on and off and
 * through a non-trivial input transform; dL/dW of one expert's three Linears and of the shared
 * expert. Data is chosen with a clear top-k margin so no perturbation changes the routing. Also: an
 * expert with no tokens gets no weightGrad call, `release` changes nothing, and every temporary is
 * freed.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import {
  disposeMoeSaved,
  expertLinear,
  MIXTRAL_NAMES,
  moeBackward,
  type MoeConfig,
  moeForward,
  moeLinearNames,
  QWEN2_MOE_NAMES,
  QWEN3_MOE_NAMES,
} from "../src/model/moe.ts";
import { assert, assertEquals, assertSameNumbers } from "./assert.ts";
import { fdCheck } from "./finite_diff.ts";
import { config, harness, hostOf, type HostWeights, rand, randomWeights, rng } from "./moe_helpers.ts";

const be = new CpuBackend({ precision: "f64" });
const T = 10, H = 8, EPS = 1e-6;

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** L = Σ c·moe(h2) (read from the current host arrays, so finite differences can perturb them). */
function loss(cfg: MoeConfig, W: HostWeights, h2: Float64Array, c: Float64Array, scaleInputs: boolean) {
  using h = harness(be, W, scaleInputs);
  using x = be.upload(h2, [T, H]);
  using out = moeForward(be, cfg, h.weights, x, h.fwd()).out;
  return dot(hostOf(be, out), c);
}

/** moeBackward for dOut = c: dL/dh2, the weight gradients and what was called. */
function analytic(
  cfg: MoeConfig,
  W: HostWeights,
  h2: Float64Array,
  c: Float64Array,
  scaleInputs = false,
  release = false,
  drop?: string,
) {
  using h = harness(be, W, scaleInputs);
  // `drop`: that Linear's input gradient replaced by zeros (to show the checks see each path).
  const inputGrad: typeof h.bwd.inputGrad = (n, x, dXt) => {
    if (n !== drop) return h.bwd.inputGrad(n, x, dXt);
    const zero = be.full(dXt.shape, 0);
    dXt[Symbol.dispose]();
    return zero;
  };
  using x = be.upload(h2, [T, H]);
  const { out, saved } = moeForward(be, cfg, h.weights, x, h.fwd(true));
  out[Symbol.dispose]();
  using dOut = be.upload(c, [T, H]);
  using dh2 = moeBackward(be, cfg, h.weights, saved!, dOut, { ...h.bwd, inputGrad, release });
  const routing = saved!.routing;
  disposeMoeSaved(saved!);
  return { dh2: hostOf(be, dh2), routing, trace: h.trace };
}

/** Weights and h2 from the first seed whose routing margin is ≥ 1e-3 (≫ the ~1e-6 FD moves). */
function clearRouting(cfg: MoeConfig, seed: number, dead?: number) {
  for (let s = seed; s < seed + 50; s++) {
    const r = rng(s), W = randomWeights(r, cfg, H), h2 = rand(r, T * H), c = rand(r, T * H);
    if (dead !== undefined) {
      for (let i = 0; i < h2.length; i += H) h2[i] = 2 + Math.abs(h2[i]);
      for (let e = 0; e < cfg.nExperts; e++) W[cfg.linearNames.router].w[e * H] = e === dead ? -4 : 0;
    }
    const a = analytic(cfg, W, h2, c);
    if (a.routing.margin >= 1e-3 && (dead === undefined || a.routing.experts[dead].rows.length === 0)) {
      return { W, h2, c };
    }
  }
  throw new Error("no seed with a clear routing margin");
}

const CASES = [
  { name: "qwen3_moe renorm", cfg: config(QWEN3_MOE_NAMES, true), check: 1 },
  { name: "qwen3_moe no renorm", cfg: config(QWEN3_MOE_NAMES, false), check: 2 },
  {
    name: "qwen2_moe shared, no renorm, x̃ = x⊙d",
    cfg: config(QWEN2_MOE_NAMES, false, 4, 2, 6, 5),
    check: 3,
    tf: true,
  },
  {
    name: "qwen2_moe shared, renorm, expert 0 dead",
    cfg: config(QWEN2_MOE_NAMES, true, 4, 2, 6, 5),
    check: 1,
    dead: 0,
  },
  {
    name: "mixtral renorm, expert 2 dead, x̃ = x⊙d",
    cfg: config(MIXTRAL_NAMES, true),
    check: 3,
    tf: true,
    dead: 2,
  },
  { name: "qwen3_moe no renorm, k = 3 of 5", cfg: config(QWEN3_MOE_NAMES, false, 5, 3), check: 4 },
];

Deno.test("dL/dh2 and expert/shared dL/dW match float64 central differences (max rel err ≤ 1e-6)", () => {
  for (const [i, k] of CASES.entries()) {
    const { W, h2, c } = clearRouting(k.cfg, 200 + 17 * i, k.dead);
    const tf = k.tf ?? false;
    const a = analytic(k.cfg, W, h2, c, tf);
    const f = () => loss(k.cfg, W, h2, c, tf);
    const errs: [string, number][] = [["dh2", fdCheck(h2, a.dh2, f, [...h2.keys()], EPS)]];
    const names = ["gate", "up", "down"].map((w) => expertLinear(k.cfg, k.check, w as "gate"));
    const sh = k.cfg.linearNames.shared;
    if (sh) names.push(sh.gate, sh.up, sh.down, sh.gateLinear);
    for (const n of names) {
      const g = a.trace.grads.get(n);
      assert(g, `${k.name}: a gradient for ${n}`);
      const idx = Array.from({ length: 24 }, (_, j) => (j * 7919) % W[n].w.length);
      errs.push([n.replace(/^.*\.(\d+\.)/, "$1"), fdCheck(W[n].w, g, f, idx, EPS)]);
    }
    console.log(`  ${k.name.padEnd(42)} ${errs.map(([n, e]) => `${n} ${e.toExponential(1)}`).join("  ")}`);
    for (const [n, e] of errs) assert(e <= 1e-6, `${k.name} ${n}: ${e}`);
  }
});

Deno.test("the checks can fail: dL/dh2 without the routing or the shared-gate path misses the differences", () => {
  for (const renorm of [true, false]) {
    const cfg = config(QWEN2_MOE_NAMES, renorm, 4, 2, 6, 5);
    const { W, h2, c } = clearRouting(cfg, 31);
    const f = () => loss(cfg, W, h2, c, false);
    for (const drop of [cfg.linearNames.router, cfg.linearNames.shared!.gateLinear]) {
      const a = analytic(cfg, W, h2, c, false, false, drop);
      const err = fdCheck(h2, a.dh2, f, [...h2.keys()], EPS);
      console.log(`  renorm ${renorm}, without ${drop}: dh2 ${err.toExponential(1)}`);
      assert(err > 1e-2, `renorm ${renorm}, ${drop}: ${err}`);
    }
  }
});

Deno.test("an expert with no tokens gets no weightGrad call; every routed Linear exactly one; the router none", () => {
  for (
    const [cfg, dead] of [[config(MIXTRAL_NAMES, true), 2], [
      config(QWEN2_MOE_NAMES, false, 4, 2, 6, 5),
      1,
    ]] as const
  ) {
    const { W, h2, c } = clearRouting(cfg, 400, dead);
    const a = analytic(cfg, W, h2, c);
    assertEquals(a.routing.experts[dead].rows.length, 0);
    const deadNames = ["gate", "up", "down"].map((w) => expertLinear(cfg, dead, w as "gate"));
    const expected = moeLinearNames(cfg).filter((n) => !deadNames.includes(n)).sort();
    assertEquals([...a.trace.grads.keys()].sort(), expected);
    assert(!a.trace.inputGrads.some((n) => deadNames.includes(n)), "nothing flows through the dead expert");
    assert(a.trace.inputGrads.includes(cfg.linearNames.router), "the router's input gradient is taken");
  }
});

Deno.test("release frees as it goes and gives the same gradients", () => {
  const cfg = config(QWEN2_MOE_NAMES, true, 4, 2, 6, 5);
  const { W, h2, c } = clearRouting(cfg, 500);
  const keep = analytic(cfg, W, h2, c, true), rel = analytic(cfg, W, h2, c, true, true);
  assertSameNumbers(rel.dh2, keep.dh2, "dh2");
  for (const [n, g] of keep.trace.grads) assertSameNumbers(rel.trace.grads.get(n)!, g, n);
});

Deno.test("forward and backward free every temporary (shared-memory accounting of a threaded backend)", async () => {
  using tb = await CpuBackend.create({ threads: 2 });
  const cfg = config(QWEN2_MOE_NAMES, true, 4, 2, 6, 5);
  const { W, h2, c } = clearRouting(cfg, 600, 3);
  using h = harness(tb, W);
  using x = tb.upload(h2, [T, H]);
  using dOut = tb.upload(c, [T, H]);
  const base = tb.memoryStats().liveBytes;
  assert(base > 0, "the threaded backend counts its shared memory");
  moeForward(tb, cfg, h.weights, x, h.fwd()).out[Symbol.dispose]();
  assertEquals(tb.memoryStats().liveBytes, base, "forward");
  for (const release of [false, true]) {
    h.trace.grads.clear();
    const { out, saved } = moeForward(tb, cfg, h.weights, x, h.fwd(true));
    out[Symbol.dispose]();
    moeBackward(tb, cfg, h.weights, saved!, dOut, { ...h.bwd, release })[Symbol.dispose]();
    disposeMoeSaved(saved!);
    assertEquals(tb.memoryStats().liveBytes, base, `forward + backward, release ${release}`);
  }
});
