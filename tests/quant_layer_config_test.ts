/**
 * Layer selection rules (auto-round's layer_config resolver): default skips, --layer_config by name
 * and by pattern, --ignore_layers, scheme presets and flag overrides.
 */
import { UsageError } from "../src/errors.ts";
import { parseModelConfig } from "../src/model/config.ts";
import { compressLayerNames, parseLayerConfigArg, resolveLayerConfig } from "../src/quant/layer_config.ts";
import { toStandardRegex } from "../src/model/config.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { assert, assertEquals, assertRejects, assertThrows, fixture } from "./assert.ts";

const stories = parseModelConfig(
  JSON.parse(await Deno.readTextFile(fixture("stories260K/config.json"))),
  "c",
);
// A Llama-shaped toy where every Linear is a multiple of 32, except a group-size mismatch at K=96.
const toy = parseModelConfig({
  model_type: "llama",
  hidden_size: 128,
  intermediate_size: 96,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 100,
}, "toy");

Deno.test("stories260K W4G32: attention quantized, MLP kept in 16-bit for shapes not divisible by 32", () => {
  const r = resolveLayerConfig(stories, resolveScheme("W4A16", { groupSize: 32 }));
  const q = [...r.layers].filter(([, p]) => p.quantize).map(([n]) => n);
  const s = [...r.layers].filter(([, p]) => !p.quantize).map(([n]) => n);
  assertEquals(q.length, 20);
  assertEquals(compressLayerNames(s), [
    "model.layers.[0-4].mlp.gate_proj",
    "model.layers.[0-4].mlp.up_proj",
    "model.layers.[0-4].mlp.down_proj",
  ]);
  const p = r.layers.get("model.layers.0.mlp.gate_proj")!;
  assert(!p.quantize && p.reason.includes("not divisible by 32"));
});

Deno.test("group size that does not divide the input size keeps the layer in 16-bit", () => {
  const r = resolveLayerConfig(toy, resolveScheme("W4A16", { groupSize: 64 }));
  const down = r.layers.get("model.layers.0.mlp.down_proj")!; // K = 96
  assert(!down.quantize && down.reason.includes("not divisible by group_size 64"));
  assert(r.layers.get("model.layers.0.mlp.up_proj")!.quantize); // K = 128
  // per-channel (-1) and a group larger than K both mean one group per row: quantized
  assert(
    resolveLayerConfig(toy, resolveScheme("W4A16", { groupSize: -1 })).layers.get(
      "model.layers.0.mlp.down_proj",
    )!.quantize,
  );
});

Deno.test("layer_config by exact name, by substring and by regex; preset strings; ignore_layers", async () => {
  const user = await parseLayerConfigArg(
    `{"model.layers.0.self_attn.q_proj": {"bits": 8}, "mlp.gate": {"bits": 2, "group_size": 32}, "layers.1..*proj$": "W8A16"}`,
  );
  const r = resolveLayerConfig(toy, resolveScheme("W4A16"), user, ["layers.1.mlp.up_proj"]);
  const get = (n: string) => r.layers.get(`model.layers.${n}`)!;
  const q0 = get("0.self_attn.q_proj");
  assert(q0.quantize && q0.scheme.bits === 8 && q0.fromUser);
  const g0 = get("0.mlp.gate_proj");
  assert(g0.quantize && g0.scheme.bits === 2 && g0.scheme.groupSize === 32);
  const k1 = get("1.self_attn.k_proj");
  assert(k1.quantize && k1.scheme.bits === 8 && k1.scheme.groupSize === 128);
  const u1 = get("1.mlp.up_proj");
  assert(!u1.quantize && u1.reason === "--ignore_layers");
  const k0 = get("0.self_attn.k_proj");
  assert(k0.quantize && k0.scheme.bits === 4 && !k0.fromUser);
  assert(r.regexConfig.has("mlp.gate"));
});

Deno.test("layer_config bits ≥ 16 keeps a layer unquantized; unknown keys and non-matching names are errors", async () => {
  const r = resolveLayerConfig(toy, resolveScheme("W4A16"), { "o_proj": { bits: 16 } });
  assert(!r.layers.get("model.layers.1.self_attn.o_proj")!.quantize);
  await assertRejects(() => parseLayerConfigArg(`{"q_proj": {"bitz": 4}}`), UsageError, "unknown keys bitz");
  assertThrows(
    () => resolveLayerConfig(toy, resolveScheme("W4A16"), { nothing_here: { bits: 8 } }),
    UsageError,
    "matches no",
  );
  await assertRejects(
    () => parseLayerConfigArg(`/no/such/file.json`),
    UsageError,
    "neither a JSON object nor a readable file",
  );
});

Deno.test("to_standard_regex conversion as auto-round documents it", () => {
  assertEquals(toStandardRegex("model.embed_tokens"), ".*model\\.embed_tokens.*");
  assertEquals(toStandardRegex("mlp.gate$"), ".*mlp\\.gate$");
  assertEquals(toStandardRegex("mlp.*gate"), ".*mlp.*gate.*");
});

Deno.test("schemes: presets, flag overrides, and clear errors", () => {
  assertEquals(resolveScheme("W4A16"), { bits: 4, groupSize: 128, sym: true, dataType: "int" });
  assertEquals(resolveScheme("w2a16g32"), { bits: 2, groupSize: 32, sym: true, dataType: "int" });
  assertEquals(resolveScheme("W4A16", { bits: 3, groupSize: 64, sym: false }).groupSize, 64);
  assertThrows(() => resolveScheme("FP8_BLOCK"), UsageError, "not supported by this build yet");
  assertThrows(() => resolveScheme("W4A16", { groupSize: 0 }), Error, "group_size 0 is invalid");
});
