/**
 * AutoScheme end to end on stories260K (spec/AUTOSCHEME.md § 1.3, § 2, § 4.6, § 5.3): a W2A16/W4A16
 * mix under an average-bits target, the exported extra_config, the range error, the CLI's nargs
 * parsing, and the scoring pass reading the checkpoint one block at a time.
 */
import { CpuBackend } from "../src/backend/cpu/cpu_backend.ts";
import { autoSchemeFromFlags, gatherNargs } from "../src/cli/auto_scheme_flags.ts";
import { QUANTIZE_FLAGS } from "../src/cli/quantize.ts";
import { UsageError } from "../src/errors.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { Tokenizer } from "../src/io/tokenizer.ts";
import { silentLog } from "../src/log.ts";
import type { WeightSource } from "../src/model/transformer.ts";
import { resolveAutoScheme, runAutoScheme } from "../src/quant/auto_scheme/run.ts";
import { parseFlags } from "../src/std/cli.ts";
import { assert, assertEquals, assertRejects, fixture } from "./assert.ts";
import { quantizeStories } from "./stories_quantize.ts";

const be = new CpuBackend();
const auto = (avgBits: number) => ({
  avgBits,
  options: "W2A16,W4A16",
  overrides: { groupSize: 32 },
  nsamples: 8,
  seqlen: 64,
  batchSize: 4,
});

/** § 2.1 compute_layer_bits for an int layer (zero point always charged) or a 16-bit one. */
function specBits(out: number, inF: number, bits: number, gs: number): number {
  if (bits >= 16) return 16 * out * inF;
  return bits * out * inF + out * Math.ceil(inF / gs) * (16 + bits);
}

Deno.test("AutoScheme on stories260K: a 2/4-bit mix within the target, written as extra_config", async () => {
  // Fixed 16-bit MLP layers (172 wide, § 2.3) count in the average: the range is [12.356, 12.915].
  const target = 12.6;
  const run = await quantizeStories(be, { autoScheme: auto(target), iters: 0 });
  try {
    const qc = JSON.parse(await Deno.readTextFile(`${run.dir}/config.json`)).quantization_config;
    assertEquals([qc.bits, qc.group_size, qc.sym], [2, 32, true]);
    const extra: Record<string, { bits?: number }> = qc.extra_config;
    const cfg = JSON.parse(await Deno.readTextFile(fixture("stories260K/config.json")));
    const H = cfg.hidden_size, I = cfg.intermediate_size, D = cfg.head_dim;
    const shapes: Record<string, [number, number]> = {
      "self_attn.q_proj": [cfg.num_attention_heads * D, H],
      "self_attn.k_proj": [cfg.num_key_value_heads * D, H],
      "self_attn.v_proj": [cfg.num_key_value_heads * D, H],
      "self_attn.o_proj": [H, cfg.num_attention_heads * D],
      "mlp.gate_proj": [I, H],
      "mlp.up_proj": [I, H],
      "mlp.down_proj": [H, I],
    };
    let bits = 0, n = 0;
    const perBits = new Map<number, number>();
    for (let i = 0; i < cfg.num_hidden_layers; i++) {
      for (const [l, [o, k]] of Object.entries(shapes)) {
        const b = extra[`model.layers.${i}.${l}`]?.bits ?? qc.bits;
        perBits.set(b, (perBits.get(b) ?? 0) + 1);
        bits += specBits(o, k, b, 32);
        n += o * k;
      }
    }
    const avg = bits / n;
    console.log(`  layers per bits ${JSON.stringify([...perBits])}; average ${avg.toFixed(4)} ≤ ${target}`);
    assert(avg <= target, `average ${avg} > ${target}`);
    assert((perBits.get(2) ?? 0) > 0 && (perBits.get(4) ?? 0) > 0, "a mix of 2- and 4-bit layers");
    assertEquals(perBits.get(16), 15); // the MLP Linears of the five blocks
    for (const [name, e] of Object.entries(extra)) assert(e.bits !== 2, `${name} repeats the default`);
  } finally {
    await run.cleanup();
  }
});

Deno.test("AutoScheme: a target outside the achievable range is a UsageError", async () => {
  await assertRejects(() => quantizeStories(be, { autoScheme: auto(3), iters: 0 }), UsageError, "outside");
  await assertRejects(
    () => quantizeStories(be, { autoScheme: { ...auto(12.6), options: "W4A16,MXFP4" }, iters: 0 }),
    UsageError,
    "MXFP4",
  );
});

Deno.test("AutoScheme CLI: nargs options and shared layers (§ 1.3, § 9 T12)", () => {
  const argv = ["--avg_bits", "3", "--options", "W2A16", "W4A16,W8A16", "--shared_layers", "a", "b"];
  const more = ["--shared_layers", "c,d", "e", "--model", "m"];
  const { values, positionals } = parseFlags(gatherNargs([...argv, ...more]), QUANTIZE_FLAGS);
  assertEquals(positionals, []);
  const c = autoSchemeFromFlags(values, { groupSize: 32 })!;
  assertEquals(c.options, "W2A16,W4A16,W8A16");
  assertEquals(c.sharedLayers, [["a", "b"], ["c", "d"], ["e"]]);
  assertEquals([c.avgBits, c.overrides], [3, { groupSize: 32 }]);
  const noOpts = parseFlags(["--avg_bits", "3"], QUANTIZE_FLAGS).values;
  let err: unknown;
  try {
    autoSchemeFromFlags(noOpts, {});
  } catch (e) {
    err = e;
  }
  assert(err instanceof UsageError && err.message === "please set --options for auto scheme");
});

Deno.test("AutoScheme scoring reads the checkpoint one block at a time (§ 5.3)", async () => {
  using ckpt = await openCheckpoint(fixture("stories260K"));
  const reads: string[] = [];
  const counting: WeightSource = {
    origin: ckpt.weights.origin,
    has: (n) => ckpt.weights.has(n),
    shape: (n) => ckpt.weights.shape(n),
    readF32: (n) => (reads.push(n), ckpt.weights.readF32(n)),
  };
  const cfg = auto(12.6);
  await runAutoScheme({
    be,
    ckpt,
    tok: await Tokenizer.fromDir(ckpt.dir),
    dataset: fixture("tinystories-calib.jsonl"),
    seed: 42,
    cfg,
    resolved: resolveAutoScheme(cfg),
    userLayers: {},
    ignoreLayers: [],
    log: silentLog,
    weights: counting,
  });
  // Block reads in consecutive groups of one whole block (9 tensors each), never interleaved.
  const blockOf = reads.map((n) => /^model\.layers\.(\d+)\./.exec(n)).filter((m) => m).map((m) =>
    Number(m![1])
  );
  const loads: number[] = [];
  for (let i = 0; i < blockOf.length; i += 9) {
    const g = blockOf.slice(i, i + 9);
    assert(g.length === 9 && g.every((b) => b === g[0]), `block reads interleave at read ${i}: ${g}`);
    loads.push(g[0]);
  }
  // 2 options × 2 batches × (forward 0..4, replay 4..0).
  const one = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0];
  assertEquals(loads, [...one, ...one, ...one, ...one]);
});
