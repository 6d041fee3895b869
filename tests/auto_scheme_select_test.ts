/**
 * AutoScheme selection (spec/AUTOSCHEME.md § 9 T3–T9 and § 4.6): every expected number is the one the
 * spec derives by hand; plus a brute-force check of the knapsack on random small tables.
 */
import { UsageError } from "../src/errors.ts";
import { RAW_PRESET_FIELDS } from "../src/quant/auto_scheme/fields.ts";
import { buildExpertGroups, fillInactiveExperts } from "../src/quant/auto_scheme/groups.ts";
import { knapsack, type KnapsackChoice } from "../src/quant/auto_scheme/knapsack.ts";
import { applyGgufFallback } from "../src/quant/auto_scheme/layout.ts";
import { type AutoOption, resolveOptions } from "../src/quant/auto_scheme/options.ts";
import {
  type AutoLayer,
  chooseEmbeddingOption,
  chooseSchemes,
  restrictHead,
} from "../src/quant/auto_scheme/select.ts";
import { assert, assertEquals, assertThrows } from "./assert.ts";

const opts = (s: string): AutoOption[] => resolveOptions(s).options;
/** A layer of n weights: Linear(n → 1), so with ignore_scale_zp_bits its cost is bits·n. */
const flat = (name: string, n: number): AutoLayer => ({ name, inFeatures: n, outFeatures: 1 });
const scoreMap = (e: Record<string, number[]>) => new Map(Object.entries(e));

Deno.test("T3 DP path (test_auto_scheme.py:132-144)", () => {
  const r = knapsack([
    [{ option: 0, bits: 2, loss: 4.0 }, { option: 1, bits: 4, loss: 1.0 }],
    [{ option: 0, bits: 2, loss: 3.0 }, { option: 1, bits: 4, loss: 0.5 }],
  ], 6);
  assertEquals(r, { loss: 4.0, bits: 6, options: [1, 0] });
  assertEquals(knapsack([[{ option: 0, bits: 7, loss: 0 }]], 6), undefined);
});

Deno.test("T4 knapsack beats greedy: A=4, B=4, C=2 at P = 1170", () => {
  const s = chooseSchemes({
    layers: [flat("A", 100), flat("B", 100), flat("C", 160)],
    options: opts("W2A16,W4A16"),
    scores: scoreMap({ A: [12, 0], B: [12, 0], C: [20, 0] }),
    target: 3.25,
    ignoreScaleZpBits: true,
  });
  assertEquals(s.budget, 1170); // int(360 · 3.25)
  assertEquals([...s.choice], [["A", 1], ["B", 1], ["C", 0]]);
  assertEquals([s.dpBits, s.dpLoss], [1120, 20]);
  // Greedy by Δloss/Δbits upgrades C first (0.0625 > 0.06), reaching 1040 bits and loss 24, and
  // then cannot afford A (1240 > 1170): the DP's 20 is strictly better.
  assert(s.dpLoss < 24);
});

Deno.test("T5 tie-break: equal cost and loss → the later layer is upgraded", () => {
  const s = chooseSchemes({
    layers: [flat("A", 100), flat("B", 100)],
    options: opts("W2A16,W4A16"),
    scores: scoreMap({ A: [5, 0], B: [5, 0] }),
    target: 3,
    ignoreScaleZpBits: true,
  });
  assertEquals(s.budget, 600);
  assertEquals([...s.choice], [["A", 0], ["B", 1]]);
  assertEquals([s.dpBits, s.dpLoss], [600, 5]);
});

Deno.test("T6 § 2.4 assignment: q=W4A16, mlp=W2A16, with and without ignore_scale_zp_bits", () => {
  for (const ignore of [false, true]) {
    const s = chooseSchemes({
      layers: [
        { name: "q", inFeatures: 256, outFeatures: 256 },
        { name: "mlp", inFeatures: 256, outFeatures: 768 },
      ],
      options: opts("W2A16,W4A16"),
      scores: scoreMap({ q: [5.0, 1.0], mlp: [2.0, 0.5] }),
      target: 3.0,
      ignoreScaleZpBits: ignore,
    });
    assertEquals(s.budget, 786432);
    assertEquals([s.choice.get("q"), s.choice.get("mlp")], [1, 0]);
    assertEquals([s.dpBits, s.dpLoss], [ignore ? 655360 : 693248, 3.0]);
    assertEquals(s.layerConfig.get("q"), RAW_PRESET_FIELDS.W4A16);
  }
});

Deno.test("T7 shared group [q, k, v]: one option, scores and bits summed", () => {
  const layers = ["q", "k", "v", "o"].map((n) => flat(n, 100));
  const scores = scoreMap({ q: [1, 0], k: [10, 0], v: [1, 0], o: [5, 0] });
  const base = { layers, options: opts("W2A16,W4A16"), scores, target: 3, ignoreScaleZpBits: true };
  // Ungrouped: upgrade k and o (P = 1200, 800 + 400), loss 1 + 1 = 2.
  const free = chooseSchemes(base);
  assertEquals([free.dpBits, free.dpLoss], [1200, 2]);
  // Grouped: q,k,v cost 600 more bits together, which does not fit; only o is upgraded, loss 12.
  const g = chooseSchemes({ ...base, sharedLayers: [["q", "k", "v"]] });
  assertEquals([...g.choice], [["q", 0], ["k", 0], ["v", 0], ["o", 1]]);
  assertEquals([g.dpBits, g.dpLoss], [1000, 12]);
});

const expertNames = (block: number) =>
  [0, 1].flatMap((e) =>
    ["gate_proj", "up_proj", "down_proj"].map((p) => `model.layers.${block}.mlp.experts.${e}.${p}`)
  );

Deno.test("T7 MoE: two blocks × 2 experts × 3 projections → 2 groups of 6; fixed experts → none", () => {
  const blocks = ["model.layers.0", "model.layers.1"];
  const names = [...expertNames(0), ...expertNames(1), "model.layers.0.self_attn.q_proj"];
  const groups = buildExpertGroups(names, blocks);
  assertEquals(groups.length, 2);
  assertEquals(groups.map((g) => g.length), [6, 6]);
  assert(groups[0].every((n) => n.startsWith("model.layers.0.mlp.experts.")));
  assertEquals(buildExpertGroups(["model.layers.0.self_attn.q_proj"], blocks), []);
});

Deno.test("T7 inactive expert gets the mean of the active experts' means (4.5)", () => {
  const p = "model.layers.0.mlp.experts.";
  const scores = new Map<string, number>([
    [p + "0.gate_proj", 2],
    [p + "0.up_proj", 4],
    [p + "1.gate_proj", 0],
    [p + "1.up_proj", 0],
    [p + "2.gate_proj", 6],
    [p + "2.up_proj", 0],
  ]);
  fillInactiveExperts(scores, ["model.layers.0"]);
  assertEquals([scores.get(p + "1.gate_proj"), scores.get(p + "1.up_proj")], [4.5, 4.5]);
  assertEquals([scores.get(p + "2.up_proj"), scores.get(p + "0.gate_proj")], [0, 2]);
});

/** A head with one choice per option at the given costs, with zero loss. */
const headChoices = (bits: number[]): KnapsackChoice[] =>
  bits.map((b, i) => ({ option: i, bits: b, loss: 0 }));
const allowed = (c: KnapsackChoice[]) => c.map((x) => x.option);

Deno.test("T8 lm_head rule: ≥ 6-bit options, highest above target 6, relaxed when infeasible", () => {
  const big = 1e12;
  const w248 = opts("W2A16,W4A16,W8A16");
  assertEquals(allowed(restrictHead(headChoices([2, 4, 8]), [], w248, [0, 1, 2], 3, big)), [2]);
  const w468 = opts("W4A16,W6A16,W8A16");
  assertEquals(allowed(restrictHead(headChoices([4, 6, 8]), [], w468, [0, 1, 2], 7, big)), [2]);
  assertEquals(allowed(restrictHead(headChoices([4, 6, 8]), [], w468, [0, 1, 2], 5, big)), [1, 2]);
  const w24 = opts("W2A16,W4A16");
  assertEquals(allowed(restrictHead(headChoices([2, 4]), [], w24, [1, 0], 3, big)), [1]); // lowest total loss
  // Budget 10 with another group of min cost 4: W8 alone needs 12 > 10; add options in loss order
  // (sorted [1, 0]: W4 first) until min head + 4 ≤ 10 → W4 fits (8), so {W4, W8}.
  const others = [headChoices([4, 8])];
  assertEquals(allowed(restrictHead(headChoices([2, 4, 8]), others, w248, [1, 0, 2], 3, 10)), [1, 2]);
  // End to end: the head gets W8A16 even though its W2 score is 0.
  const s = chooseSchemes({
    layers: [flat("a", 100), flat("lm_head", 100)],
    options: w248,
    scores: scoreMap({ a: [1, 0.5, 0], lm_head: [0, 0, 0] }),
    target: 6,
    lmHead: "lm_head",
    ignoreScaleZpBits: true,
  });
  assertEquals([s.choice.get("lm_head"), s.choice.get("a")], [2, 1]);
});

Deno.test("T9 embedding rule: untied floor/next width, tied ≤ 6 bits, budget fallbacks", () => {
  const o = opts("W2A16,W4A16,W8A16");
  const sorted = [2, 0, 1]; // by total loss
  const all = () => true;
  assertEquals(chooseEmbeddingOption(o, sorted, 3.5, false, all), 1); // ⌊3.5⌋ = 3 absent → 4-bit
  // W4 does not fit: the next candidate by total loss that fits (W8 is first in loss order).
  assertEquals(chooseEmbeddingOption(o, sorted, 3.5, false, (x) => x.name !== "W4A16"), 2);
  // Nothing fits: the cheapest option.
  assertEquals(chooseEmbeddingOption(o, sorted, 3.5, false, () => false), 0);
  // Tied, target 3: lowest loss with bits ≤ 6 (W8 excluded) → W2.
  assertEquals(chooseEmbeddingOption(o, sorted, 3, true, all), 0);
  assertEquals(chooseEmbeddingOption(o, sorted, 7, true, all), 2);
});

Deno.test("§ 2.5 budget: embedding bits are subtracted before the DP", () => {
  const s = chooseSchemes({
    layers: [{ ...flat("embed", 100), embedding: true }, flat("a", 100)],
    options: opts("W2A16,W4A16,W8A16"),
    scores: scoreMap({ a: [3, 1, 0] }),
    target: 5,
    ignoreScaleZpBits: true,
  });
  // P = int(200·5) = 1000; untied ⌊5⌋ = 5 absent → 8-bit candidates first: 1000 − 800 ≥ 200 fits.
  assertEquals([s.choice.get("embed"), s.budget], [2, 200]);
  assertEquals(s.choice.get("a"), 0);
});

Deno.test("§ 4.6 GGUF fallback and extra_config", () => {
  const cfg = new Map([
    ["a", { ...opts("GGUF:Q2_K_S")[0].fields }],
    ["b", { ...opts("GGUF:Q4_K_S")[0].fields }],
    ["c", { ...opts("GGUF:Q6_K")[0].fields }],
    ["d", { ...opts("GGUF:Q2_K_S")[0].fields }],
    ["e", { ...opts("GGUF:Q2_K_S")[0].fields }],
  ]);
  const inF = new Map([["a", 288], ["b", 288], ["c", 288], ["d", 100], ["e", 512]]);
  const fb = applyGgufFallback(cfg, inF, new Set());
  assertEquals([...fb], [["a", "gguf:q5_0"], ["b", "gguf:q4_1"], ["c", "gguf:q8_0"], ["d", "gguf:bf16"]]);
  assertEquals([cfg.get("a")!.bits, cfg.get("a")!.super_bits, cfg.get("d")!.bits], [5, null, 16]);
  const s = chooseSchemes({
    layers: [flat("model.layers.0.q", 100), flat("model.layers.0.k", 100)],
    options: opts("W2A16,W4A16"),
    scores: scoreMap({ "model.layers.0.q": [5, 0], "model.layers.0.k": [1, 0] }),
    target: 3,
    ignoreScaleZpBits: true,
    blocks: ["model.layers.0"],
  });
  assertEquals([...s.extraConfig], [["model.layers.0.q", { bits: 4 }]]);
});

Deno.test("out-of-range targets raise the range error", () => {
  // Linear(100→1): W2A16 = (200 + 18)/100 = 2.18, W4A16 = (400 + 20)/100 = 4.2 bits per weight.
  const base = { layers: [flat("a", 100)], options: opts("W2A16,W4A16"), scores: scoreMap({ a: [1, 0] }) };
  assertThrows(() => chooseSchemes({ ...base, target: 1.5 }), UsageError, "outside the achievable range");
  assertThrows(() => chooseSchemes({ ...base, target: 4.3 }), UsageError, "outside the achievable range");
});

/** mulberry32: a small seeded PRNG so failures reproduce. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("knapsack equals the exhaustive optimum on random ≤ 6 × 3 tables", () => {
  const r = rng(12345);
  for (let trial = 0; trial < 2000; trial++) {
    const nItems = 1 + Math.floor(r() * 6);
    const nOpts = 1 + Math.floor(r() * 3);
    const items = Array.from({ length: nItems }, () =>
      Array.from({ length: nOpts }, (_, o) => ({
        option: o,
        bits: 1 + Math.floor(r() * 20),
        // Some exact ties and zeros, as real tables have.
        loss: r() < 0.2 ? 0 : Math.floor(r() * 8) / 2,
      })));
    const budget = Math.floor(r() * 20 * nItems);
    let best = Infinity;
    const idx = new Array(nItems).fill(0);
    for (;;) {
      let bits = 0;
      let loss = 0;
      for (let i = 0; i < nItems; i++) {
        bits += items[i][idx[i]].bits;
        loss += items[i][idx[i]].loss;
      }
      if (bits <= budget && loss < best) best = loss;
      let k = 0;
      while (k < nItems && ++idx[k] === nOpts) idx[k++] = 0;
      if (k === nItems) break;
    }
    const got = knapsack(items, budget);
    if (best === Infinity) {
      assertEquals(got, undefined, `trial ${trial}`);
      continue;
    }
    assert(got !== undefined, `trial ${trial}: feasible but no result`);
    assertEquals(got.loss, best, `trial ${trial}`);
    const bits = got.options.reduce((a, o, i) => a + items[i][o].bits, 0);
    const loss = got.options.reduce((a, o, i) => a + items[i][o].loss, 0);
    assertEquals([bits, loss], [got.bits, got.loss], `trial ${trial}: path`);
    assert(bits <= budget, `trial ${trial}: over budget`);
  }
});
