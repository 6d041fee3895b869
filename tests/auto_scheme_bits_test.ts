/**
 * AutoScheme bits accounting and option parsing (spec/AUTOSCHEME.md § 9 T1, T2, T12): every number is
 * the one the spec derives by hand.
 */
import { UsageError } from "../src/errors.ts";
import { QuantizeError } from "../src/errors.ts";
import { averageBits, bitsRange, checkTarget, layerBits } from "../src/quant/auto_scheme/bits.ts";
import { ggufFields, RAW_PRESET_FIELDS } from "../src/quant/auto_scheme/fields.ts";
import {
  defaultOptionIndex,
  joinCliOptions,
  parseSharedLayersCli,
  resolveOptions,
} from "../src/quant/auto_scheme/options.ts";
import { assertEquals, assertThrows } from "./assert.ts";

const lin = (inF: number, outF: number, name = "l") => ({ name, inFeatures: inF, outFeatures: outF });
const L8x4 = lin(8, 4); // Linear(8→4), n = 32

Deno.test("T1 compute_layer_bits on Linear(8→4) (test_auto_scheme_helpers.py:85-177)", () => {
  assertEquals(layerBits(L8x4, {}), 512);
  assertEquals(layerBits(L8x4, { bits: 16 }, true), 512);
  assertEquals(layerBits(L8x4, { bits: 4, group_size: 4, data_type: "int", sym: true }), 288);
  assertEquals(layerBits(L8x4, { bits: 4, group_size: 4, data_type: "int", sym: false }), 288);
  assertEquals(layerBits(L8x4, { bits: 4, group_size: 4, data_type: "mx_fp4", sym: true }), 192);
  assertEquals(layerBits(L8x4, { bits: 4, group_size: 0, data_type: "int", sym: true }), 148);
  assertEquals(layerBits(L8x4, { bits: 4, group_size: -1, data_type: "int", sym: true }), 208);
  assertThrows(
    () => layerBits(L8x4, { bits: 4, group_size: -99, data_type: "int" }),
    QuantizeError,
    "Invalid group_size",
  );
  assertEquals(
    layerBits(L8x4, {
      bits: 4,
      group_size: 4,
      data_type: "int",
      sym: true,
      super_group_size: 2,
      super_bits: 6,
    }),
    480,
  );
  // An offloaded (emptied) weight priced by its cached numel.
  assertEquals(
    layerBits({ ...L8x4, numel: 32 }, { bits: 4, group_size: 4, data_type: "int", sym: true }),
    288,
  );
  assertEquals(layerBits(L8x4, { bits: 16, super_bits: 4 }), 1024); // 32·n quirk (§ 7.7)
});

Deno.test("T1 per-option costs on Linear(256→256) (§ 2.1 table)", () => {
  const l = lin(256, 256);
  const n = 65536;
  assertEquals(layerBits(l, RAW_PRESET_FIELDS.MXFP4), 278528);
  assertEquals(layerBits(l, ggufFields("Q4_K")), 303104);
  assertEquals(layerBits(l, ggufFields("Q2_K")), 180224);
  assertEquals(layerBits(l, ggufFields("Q6_K")), 475136);
  assertEquals(layerBits(l, RAW_PRESET_FIELDS.MXINT4), 303104);
  const per = (f: Parameters<typeof layerBits>[1]) => layerBits(l, f) / n;
  assertEquals(per(RAW_PRESET_FIELDS.W2A16), 2.140625);
  assertEquals(per(RAW_PRESET_FIELDS.W4A16), 4.15625);
  assertEquals(per(RAW_PRESET_FIELDS.W8A16), 8.1875);
  assertEquals(per(RAW_PRESET_FIELDS.W2A16G64), 2.28125);
  assertEquals(per(RAW_PRESET_FIELDS.W2A16G32), 2.5625);
  assertEquals(per(RAW_PRESET_FIELDS.MXFP8), 8.25);
  assertEquals(per(RAW_PRESET_FIELDS.NVFP4), 4.5);
  assertEquals(per(ggufFields("Q4_0")), 4.625);
  assertEquals(per(ggufFields("Q8_0")), 8.75);
  assertEquals(per(RAW_PRESET_FIELDS.BF16), 16);
  assertEquals(layerBits(l, RAW_PRESET_FIELDS.FPW8A16), 8 * n + 16);
  assertEquals(layerBits(l, RAW_PRESET_FIELDS.INT8_W8A8), 8 * n + 24 * 256);
  // ignore_scale_zp_bits: exactly `bits` per weight.
  assertEquals(layerBits(l, ggufFields("Q4_K"), true), 4 * n);
  assertEquals(layerBits(l, RAW_PRESET_FIELDS.BF16, true), 16 * n);
  // Embedding(vocab 1000, dim 64): groups along the vocabulary axis, 64·⌈1000/128⌉ = 512 groups.
  assertEquals(layerBits(lin(1000, 64), RAW_PRESET_FIELDS.W4A16), 4 * 64000 + 512 * 20);
});

Deno.test("§ 2.4 worked example: per-layer bits and the range", () => {
  const q = lin(256, 256, "q");
  const mlp = lin(256, 768, "mlp");
  assertEquals(layerBits(q, RAW_PRESET_FIELDS.W2A16), 140288);
  assertEquals(layerBits(q, RAW_PRESET_FIELDS.W4A16), 272384);
  assertEquals(layerBits(mlp, RAW_PRESET_FIELDS.W2A16), 420864);
  assertEquals(layerBits(mlp, RAW_PRESET_FIELDS.W4A16), 817152);
  assertEquals(layerBits(q, RAW_PRESET_FIELDS.W2A16, true), 131072);
  assertEquals(layerBits(mlp, RAW_PRESET_FIELDS.W4A16, true), 786432);
  assertEquals(averageBits([q, mlp], RAW_PRESET_FIELDS.W2A16), 2.140625);
});

Deno.test("T2 range check: snap within 1e-3, errors outside, fixed 16-bit layers raise the floor", () => {
  const layers = [lin(256, 256, "q"), lin(256, 768, "mlp")];
  const opts = [RAW_PRESET_FIELDS.W2A16, RAW_PRESET_FIELDS.W4A16];
  const r = bitsRange(layers, opts);
  assertEquals([r.min, r.max], [2.140625, 4.15625]);
  assertEquals(checkTarget(2.1410, r, ["W2A16", "W4A16"]), 2.140625);
  assertEquals(checkTarget(3.0, r, ["W2A16", "W4A16"]), 3.0);
  assertThrows(() => checkTarget(4.2, r, ["W2A16", "W4A16"]), UsageError, "outside the achievable range");
  const withK = [...layers, { ...lin(256, 256, "k"), fixed: { bits: 16 } }];
  const r2 = bitsRange(withK, opts);
  assertEquals([r2.min, r2.max], [4.9125, 6.525]);
  assertThrows(
    () => checkTarget(3.0, r2, ["W2A16", "W4A16"]),
    UsageError,
    "Target avg_bits=3.000 is outside the achievable range [4.912, 6.525]", // 4.9125 is 4.91249… in binary (Python prints 4.912 too)
  );
});

Deno.test("T12 option parsing: upper-case, spaces, dedup, GGUF aliases, errors", () => {
  assertEquals(resolveOptions("w2a16, W4A16 ,w2a16").options.map((o) => o.name), ["W2A16", "W4A16"]);
  const g = resolveOptions("gguf:q4_k_s,gguf:q4_k_m");
  assertEquals(g.options.map((o) => o.name), ["GGUF:Q4_K_S"]);
  assertEquals(g.dropped, ["GGUF:Q4_K_M"]);
  assertEquals(g.options[0].ggufBase, "Q4_K");
  assertEquals(resolveOptions("W4A16,W4A16_MIXED,INT8,INT8_W8A8").options.map((o) => o.name), [
    "W4A16",
    "INT8",
  ]);
  // "gguf:q2_k_mixed" in a string is upper-cased and passes (§ 7.2); in a list it is refused.
  assertEquals(resolveOptions("gguf:q2_k_mixed").options[0].ggufBase, "Q2_K");
  assertThrows(() => resolveOptions(["gguf:q2_k_mixed"]), UsageError, "Mixed option");
  assertThrows(() => resolveOptions("4"), UsageError, "no bits-only form");
  assertThrows(() => resolveOptions("W4A16,W9A16"), UsageError, '"W9A16" is not a preset');
  assertThrows(() => resolveOptions("GGUF:BF16"), UsageError, "is not a preset");
  assertThrows(() => resolveOptions("W4A16,"), UsageError, "is empty");
  assertThrows(() => resolveOptions("INT4"), UsageError, "W4A4");
  const bf = resolveOptions("BF16,W4A16").options;
  assertEquals([bf[0].keep16, bf[0].scheme, bf[1].keep16], [true, undefined, false]);
  assertEquals(defaultOptionIndex(bf), 0); // strings never win (schemes.py:517-525)
  assertEquals(joinCliOptions(["W2A16", "W4A16,W8A16"]), "W2A16,W4A16,W8A16");
  assertEquals(joinCliOptions(["W2A16,", " ", "W4A16"]), "W2A16,W4A16");
  assertEquals(parseSharedLayersCli([["a", "b"], ["c,d", "e"]]), [["a", "b"], ["c", "d"], ["e"]]);
});

Deno.test("T12 scheme overrides: applied to non-GGUF options, ignored by GGUF ones", () => {
  const r = resolveOptions("BF16,W2A16,GGUF:Q4_K_S", { groupSize: 64 });
  const [bf, w2, gg] = r.options;
  assertEquals([w2.fields.group_size, w2.fields.act_group_size, w2.fields.act_dynamic], [64, 64, true]);
  assertEquals(w2.scheme?.groupSize, 64);
  assertEquals([bf.keep16, bf.fields.group_size], [true, 64]);
  assertEquals(gg.fields.group_size, 32);
  assertEquals(r.warnings.length, 1);
  // An override-applied quantizing option becomes the default (first one with bits < 16).
  assertEquals(defaultOptionIndex(r.options), 1);
  assertThrows(() => resolveOptions("BF16,W4A16", { bits: 4 }), UsageError, "no longer 16-bit");
});
