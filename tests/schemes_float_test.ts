/**
 * auto-round's float and activation-quantized presets resolve to its exact fields (schemes.py
 * PRESET_SCHEMES after _override_scheme_with_user_specify; spec/SCHEMES.md § 1.2–1.3), flags override
 * them as auto-round's do, and impossible combinations are refused with the field named.
 */
import { assertEquals, assertThrows } from "./assert.ts";
import { QuantizeError, UsageError } from "../src/errors.ts";
import { resolveScheme } from "../src/quant/scheme.ts";
import { resolveLayerConfig } from "../src/quant/layer_config.ts";
import type { ModelSpec } from "../src/model/config.ts";

const act = (bits: number, groupSize: number, dataType: string, dynamic = true) => ({
  bits,
  groupSize,
  sym: true,
  dataType,
  dynamic,
});

Deno.test("float presets: the fields of auto-round's schemes.py, resolved", () => {
  // Columns of SCHEMES.md § 1.2 with § 1.3's resolution applied (act_dynamic None → true).
  const want: Record<string, unknown> = {
    MXFP4: { bits: 4, groupSize: 32, sym: true, dataType: "mx_fp", act: act(4, 32, "mx_fp") },
    MXFP6: { bits: 6, groupSize: 32, sym: true, dataType: "mx_fp", act: act(6, 32, "mx_fp") },
    MXFP8: { bits: 8, groupSize: 32, sym: true, dataType: "mx_fp", act: act(8, 32, "mx_fp") },
    MXFP4_RCEIL: { bits: 4, groupSize: 32, sym: true, dataType: "mx_fp", act: act(4, 32, "mx_fp_rceil") },
    MXFP8_RCEIL: { bits: 8, groupSize: 32, sym: true, dataType: "mx_fp", act: act(8, 32, "mx_fp_rceil") },
    MXINT4: { bits: 4, groupSize: 32, sym: true, dataType: "mx_int", act: act(4, 32, "mx_int") },
    NVFP4: { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp", act: act(4, 16, "nv_fp") },
    FPW8A16: { bits: 8, groupSize: 0, sym: true, dataType: "fp" },
    FP8_STATIC: { bits: 8, groupSize: -1, sym: true, dataType: "fp", act: act(8, 0, "fp", false) },
    INT8_W8A8: { bits: 8, groupSize: -1, sym: true, dataType: "int", act: act(8, -1, "int") },
  };
  for (const [name, s] of Object.entries(want)) assertEquals(resolveScheme(name), s, name);
  assertEquals(resolveScheme("int8"), want.INT8_W8A8, "INT8 is INT8_W8A8");
  assertEquals(resolveScheme("nvfp4"), want.NVFP4, "names are case-insensitive");
});

Deno.test("float presets: --data_type carries its bits and drops a foreign preset's activations", () => {
  // _reconcile_bits_and_dtype: mx_fp8 → bits 8; W4A16 has act_bits 16, so no activation quantizer.
  assertEquals(resolveScheme("W4A16", { dataType: "mx_fp8", groupSize: 32 }), {
    bits: 8,
    groupSize: 32,
    sym: true,
    dataType: "mx_fp",
  });
  // Same data type as the preset: its activation quantizer follows the new bits.
  assertEquals(resolveScheme("MXFP4", { dataType: "mx_fp8" }).act, act(8, 32, "mx_fp"));
  assertEquals(resolveScheme("FP8_STATIC", { groupSize: 0 }).groupSize, 0);
});

Deno.test("float presets: refused combinations name the field", () => {
  assertThrows(() => resolveScheme("MXFP4", { sym: false }), QuantizeError, "symmetric only");
  assertThrows(
    () => resolveScheme("NVFP4", { groupSize: 32 }),
    QuantizeError,
    "group_size 32 is invalid for nv_fp",
  );
  assertThrows(() => resolveScheme("MXFP4", { bits: 5 }), QuantizeError, "mx_fp has no 5-bit format");
  assertThrows(
    () => resolveScheme("MXFP4", { groupSize: 0 }),
    QuantizeError,
    "group_size 0 is invalid for mx_fp",
  );
  assertThrows(() => resolveScheme("W4A16", { dataType: "float8" }), UsageError, 'data_type "float8"');
  for (const n of ["NVFP4_E5M3", "FP8_BLOCK", "BF16"]) {
    assertThrows(() => resolveScheme(n), UsageError, "not supported by this build yet");
  }
});

Deno.test("float presets: a layer whose input is not a multiple of the MX/NV group stays 16-bit", () => {
  const spec = {
    nLayers: 1,
    hidden: 64,
    intermediate: 48, // down_proj's input: 48 % 32 ≠ 0, 48 % 16 = 0
    nHeads: 4,
    nKvHeads: 4,
    headDim: 16,
    vocab: 32,
    tieEmbeddings: true,
    textPrefix: "model.",
  } as unknown as ModelSpec;
  const mx = resolveLayerConfig(spec, resolveScheme("MXFP4")).layers;
  assertEquals(mx.get("model.layers.0.mlp.down_proj")?.quantize, false);
  assertEquals(mx.get("model.layers.0.mlp.up_proj")?.quantize, true);
  const nv = resolveLayerConfig(spec, resolveScheme("NVFP4")).layers;
  assertEquals(nv.get("model.layers.0.mlp.down_proj")?.quantize, true);
  const fp8 = resolveLayerConfig(spec, resolveScheme("FP8_STATIC")).layers;
  const down = fp8.get("model.layers.0.mlp.down_proj");
  assertEquals(down?.quantize && down.scheme, resolveScheme("FP8_STATIC"));
});

Deno.test("float presets: --act_bits/--act_group_size/--act_data_type/--disable_act_dynamic as auto-round's flags", () => {
  // act_bits 16: weights only.
  assertEquals(resolveScheme("MXFP4", { actBits: 16 }).act, undefined);
  // FPW8A16 with --act_bits 8 --disable_act_dynamic: static per-tensor FP8 activations (act_group_size
  // would default to the weight's 0, as auto-round's does).
  assertEquals(resolveScheme("FPW8A16", { actBits: 8, actDynamic: false }).act, act(8, 0, "fp", false));
  // NVFP4 weights with auto-round's activation type name; MXFP4 with RCEIL activations.
  assertEquals(resolveScheme("NVFP4", { actDataType: "nv_fp4_with_static_gs" }).act, act(4, 16, "nv_fp"));
  assertEquals(resolveScheme("MXFP4", { actDataType: "mx_fp_rceil" }).act, act(4, 32, "mx_fp_rceil"));
  // Combinations without an implemented quantizer are refused with the quantizer named.
  assertThrows(
    () => resolveScheme("MXFP4", { actBits: 8, actDataType: "nv_fp" }),
    QuantizeError,
    "nv_fp 8-bit",
  );
  assertThrows(() => resolveScheme("INT8_W8A8", { actGroupSize: 32 }), QuantizeError, "int 8-bit group 32");
  assertThrows(
    () => resolveScheme("W4A16", { actBits: 8, actDataType: "bfloat" }),
    UsageError,
    "act_data_type",
  );
});
