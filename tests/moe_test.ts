/**
 * The mixture-of-experts MLP forward (src/model/moe.ts) against the plain float64 reference of
 * tests/moe_helpers.ts: host routing (top-k order, ties, renorm, f32 rounding), random weights with
 * renorm on and off, the qwen2_moe shared expert, an expert no token reaches, layer 0 of the tiny
 * transformers checkpoints (tests/fixtures/models) as realistic weights, and the refusal on backends
 * without the row ops.
 */
import type { Backend, Tensor } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { UnsupportedError } from "../src/errors.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import {
  disposeMoeSaved,
  expertLinear,
  MIXTRAL_NAMES,
  type MoeConfig,
  moeForward,
  moeLinearNames,
  QWEN2_MOE_NAMES,
  QWEN3_MOE_NAMES,
  routeTokens,
} from "../src/model/moe.ts";
import { assert, assertEquals, assertThrows, fixture, maxRelError } from "./assert.ts";
import {
  allNames,
  config,
  harness,
  hostOf,
  type HostWeights,
  rand,
  randomWeights,
  referenceMoe,
  rng,
} from "./moe_helpers.ts";

const cpu = new CpuBackend();
const cpu64 = new CpuBackend({ precision: "f64" });

Deno.test("routeTokens: descending top-k, ties to the lower index, renorm sums to 1, margin", () => {
  // token 0: a tie between experts 1 and 3 for the top slot; token 1: clear order 2 > 0 > 1
  const logits = Float64Array.from([0, 2, -1, 2, 1, 0.5, 3, -2]);
  const r = routeTokens(logits, 2, 4, 2, false);
  assertEquals(Array.from(r.idx), [1, 3, 2, 0]);
  const p1 = [1, Math.exp(-0.5), Math.exp(2), Math.exp(-3)].map((v, _, a) => v / a.reduce((x, y) => x + y));
  assert(Math.abs(r.weights[2] - p1[2]) < 1e-15 && Math.abs(r.weights[3] - p1[0]) < 1e-15);
  // token 0: 2nd (expert 3) minus 3rd (expert 0); token 1: expert 0 minus expert 1
  assert(Math.abs(r.margin - Math.min(r.probs[3] - r.probs[0], p1[0] - p1[1])) < 1e-15, `${r.margin}`);
  assertEquals(r.experts.map((x) => Array.from(x.rows)), [[1], [0], [1], [0]]);
  assertEquals(r.experts.map((x) => Array.from(x.slots)), [[3], [0], [2], [1]]);
  const n = routeTokens(logits, 2, 4, 2, true);
  assertEquals(n.weights[0], 0.5);
  assert(Math.abs(n.weights[2] + n.weights[3] - 1) < 1e-15);
  // f32 logits are routed in f32: every probability and weight is an f32 value
  const f = routeTokens(Float32Array.from(logits), 2, 4, 2, true);
  assert([...f.probs, ...f.weights].every((v) => v === Math.fround(v)));
  assertEquals(Array.from(f.idx), Array.from(r.idx));
});

/** moeForward's output on `be` for host h2, with its routing. */
function forward(be: Backend, cfg: MoeConfig, W: HostWeights, h2: Float64Array, T: number) {
  using h = harness(be, W);
  using x = be.upload(h2, [T, h2.length / T]);
  const { out, saved } = moeForward(be, cfg, h.weights, x, h.fwd(true));
  const got = hostOf(be, out);
  out[Symbol.dispose]();
  const routing = saved!.routing;
  disposeMoeSaved(saved!);
  return { got, routing, trace: h.trace };
}

/** h2 whose feature 0 is large and positive, and a router row that sends expert `dead` no tokens. */
function withDeadExpert(W: HostWeights, cfg: MoeConfig, h2: Float64Array, H: number, dead: number) {
  for (let i = 0; i < h2.length; i += H) h2[i] = 2 + Math.abs(h2[i]);
  for (let e = 0; e < cfg.nExperts; e++) W[cfg.linearNames.router].w[e * H] = e === dead ? -4 : 0;
}

const CASES = [
  { name: "qwen3_moe, renorm", names: QWEN3_MOE_NAMES, renorm: true },
  { name: "qwen2_moe, no renorm, shared expert", names: QWEN2_MOE_NAMES, renorm: false, Is: 5 },
  { name: "mixtral, renorm, expert 2 gets no tokens", names: MIXTRAL_NAMES, renorm: true, dead: 2 },
  {
    name: "qwen2_moe, renorm, shared, expert 0 gets no tokens",
    names: QWEN2_MOE_NAMES,
    renorm: true,
    Is: 5,
    dead: 0,
  },
  { name: "qwen3_moe, no renorm, k = 1 of 6", names: QWEN3_MOE_NAMES, renorm: false, E: 6, k: 1 },
];

Deno.test("moeForward equals the float64 reference: f64 backend to 1e-13, f32 backend to 1e-6", () => {
  for (const [i, c] of CASES.entries()) {
    const cfg = config(c.names, c.renorm, c.E ?? 4, c.k ?? 2, 6, c.Is);
    const r = rng(100 + i), T = 12, H = 8;
    const W = randomWeights(r, cfg, H), h2 = rand(r, T * H);
    if (c.dead !== undefined) withDeadExpert(W, cfg, h2, H, c.dead);
    const ref = referenceMoe(cfg, W, h2, T);
    const f64 = forward(cpu64, cfg, W, h2, T), f32 = forward(cpu, cfg, W, h2, T);
    const e64 = maxRelError(f64.got, ref.out), e32 = maxRelError(f32.got, ref.out);
    console.log(`  ${c.name.padEnd(50)} f64 ${e64.toExponential(2)}  f32 ${e32.toExponential(2)}`);
    assert(e64 < 1e-13, `${c.name}: f64 ${e64}`);
    assert(e32 < 1e-6, `${c.name}: f32 ${e32}`);
    assertEquals(f64.routing.experts.map((x) => x.rows.length), ref.counts, `${c.name}: counts`);
    if (c.dead !== undefined) {
      assertEquals(ref.counts[c.dead], 0, `${c.name}: the dead expert is really unrouted`);
      const deadNames = ["gate", "up", "down"].map((w) => expertLinear(cfg, c.dead!, w as "gate"));
      assertEquals(f64.trace.linCalls.filter((n) => deadNames.includes(n)), []);
      assertEquals(f64.trace.observed.filter((n) => deadNames.includes(n)), []);
    }
    // Every Linear of a routed expert (and the shared expert) ran and was observed; the router ran
    // and was not observed (never quantized).
    const unrouted = ref.counts.flatMap((n, e) => n === 0 ? [`.${e}.`] : []);
    const live = moeLinearNames(cfg).filter((n) => !unrouted.some((u) => n.includes(u)));
    assertEquals([...f64.trace.linCalls].sort(), [cfg.linearNames.router, ...live].sort());
    assertEquals([...f64.trace.observed].sort(), [...live].sort());
  }
});

Deno.test("moeForward on a bf16 h2: the output is bf16 and within bf16 rounding of the float64 reference", () => {
  const cfg = config(QWEN2_MOE_NAMES, true, 4, 2, 6, 5), r = rng(7), T = 6, H = 8;
  const W = randomWeights(r, cfg, H), h2 = rand(r, T * H);
  using h = harness(cpu, W);
  using x = cpu.upload(h2, [T, H], "bf16");
  using out = moeForward(cpu, cfg, h.weights, x, h.fwd()).out;
  assertEquals(out.dtype, "bf16");
  // The bf16 input and f32 weights: compare with the reference on the bf16-rounded input.
  const ref = referenceMoe(cfg, W, Float64Array.from(cpu.readSync(x)), T).out;
  const e = maxRelError(cpu.readSync(out), ref);
  console.log(`  bf16 max rel err ${e.toExponential(2)}`);
  assert(e < 2e-2 && e > 1e-5, `bf16 rounding shows and stays bounded: ${e}`);
});

/** Layer 0 of a fixture checkpoint, relative names, as HostWeights; and its post-attention norm. */
async function fixtureLayer(family: string, cfg: MoeConfig) {
  using st = await SafetensorsReader.open(fixture(`models/${family}`));
  const W: HostWeights = {};
  for (const n of allNames(cfg)) {
    const key = `model.layers.0.${n}.weight`, [rows, cols] = st.info(key).shape;
    W[n] = { w: Float64Array.from(await st.readF32(key)), rows, cols };
  }
  return { W, ln2: await st.readF32("model.layers.0.post_attention_layernorm.weight") };
}

Deno.test("fixture weights (layer 0 of the transformers checkpoints): names resolve, forward matches the reference", async () => {
  const families = [
    { family: "qwen2_moe", cfg: config(QWEN2_MOE_NAMES, false, 8, 2, 32, 64) },
    { family: "qwen2_moe_norm", cfg: config(QWEN2_MOE_NAMES, true, 8, 2, 32, 64) },
    { family: "qwen3_moe", cfg: config(QWEN3_MOE_NAMES, true, 8, 2, 32) },
    { family: "mixtral", cfg: config(MIXTRAL_NAMES, true, 4, 2, 32) },
  ];
  for (const { family, cfg } of families) {
    const { W, ln2 } = await fixtureLayer(family, cfg);
    const T = 48, H = ln2.length, h2 = rand(rng(9), T * H);
    for (let t = 0; t < T; t++) { // h2 = rmsnorm(random)·ln2, as the block makes it
      const row = h2.subarray(t * H, (t + 1) * H), rms = Math.sqrt(row.reduce((a, v) => a + v * v, 0) / H);
      for (let c = 0; c < H; c++) row[c] = row[c] / rms * ln2[c];
    }
    const ref = referenceMoe(cfg, W, h2, T);
    const f32 = forward(cpu, cfg, W, h2, T), f64 = forward(cpu64, cfg, W, h2, T);
    const e32 = maxRelError(f32.got, ref.out), e64 = maxRelError(f64.got, ref.out);
    console.log(
      `  ${family.padEnd(16)} f64 ${e64.toExponential(2)}  f32 ${e32.toExponential(2)}  ` +
        `counts ${ref.counts}  margin ${f64.routing.margin.toExponential(1)}`,
    );
    assert(f64.routing.margin > 1e-5, `${family}: no near-tie in the routing`);
    assertEquals(f32.routing.experts.map((x) => x.rows.length), ref.counts);
    assert(e64 < 1e-12 && e32 < 1e-6, `${family}: ${e64} ${e32}`);
  }
});

Deno.test("a backend without the row ops or readSync refuses MoE blocks, naming --device cpu", () => {
  const cfg = config(QWEN3_MOE_NAMES, true), W = randomWeights(rng(3), cfg, 8);
  using h = harness(cpu, W);
  using x = cpu.upload(rand(rng(4), 16), [2, 8]);
  for (const op of ["gatherRows", "scatterAddRows", "rowDots", "readSync"]) {
    const bare = Object.assign(Object.create(cpu), { [op]: undefined }) as Backend;
    const e = assertThrows(
      () => moeForward(bare, cfg, h.weights, x, h.fwd()),
      UnsupportedError,
      "--device cpu",
    );
    assert(e.message.includes("cpu backend lacks"), e.message);
  }
  assertEquals(h.trace.linCalls, [], "refused before any Linear ran");
});

Deno.test("a missing or misshapen expert weight is reported by name before anything runs", () => {
  const cfg = config(MIXTRAL_NAMES, true), W = randomWeights(rng(5), cfg, 8);
  using h = harness(cpu, W);
  const weights: Record<string, Tensor> = { ...h.weights };
  delete weights["block_sparse_moe.experts.3.w2"];
  using x = cpu.upload(rand(rng(6), 16), [2, 8]);
  assertThrows(
    () => moeForward(cpu, cfg, weights, x, h.fwd()),
    Error,
    "block_sparse_moe.experts.3.w2 missing",
  );
  const wider = { ...cfg, expertInter: 7 };
  assertThrows(
    () => moeForward(cpu, wider, h.weights, x, h.fwd()),
    Error,
    "w1 is [6,8], the config says [7,8]",
  );
  assertEquals(h.trace.linCalls, []);
});
