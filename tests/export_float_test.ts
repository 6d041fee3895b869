/**
 * Float and activation-quantized schemes through llm_compressor, auto_round and fake (issue 17,
 * spec/SCHEMES.md § 10): Linears built from known values (the § 11 worked examples, whose packed bytes
 * the spec gives, and hand-encoded FP8/INT8/E0M4 values) are exported, and the test checks the stored
 * bytes/dtypes/shapes against those hand values, the config keys against § 10.2–10.7, the loader's
 * dequantization against dequantizeFloatLinear (with the stored-scale-dtype rounding of § 12.5
 * computed here), the activation quantizer it reports, and the UsageError of unsupported pairs.
 */
import { assert, assertEquals, assertThrows } from "./assert.ts";
import { UsageError } from "../src/errors.ts";
import { checkFloatFormats, checkFormats, parseFormats } from "../src/export/registry.ts";
import { dequantizeFloatLinear, type FloatScheme, type QuantScheme } from "../src/qmath/quantized.ts";
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16, roundBf16 } from "../src/tensor/dtype.ts";
import {
  assertSame,
  bf16Bytes,
  context,
  DOWN,
  f16Bytes,
  f32Bytes,
  FP8_BYTES,
  FP8_STATIC,
  fp8Elements,
  fp8Linear,
  FPW8A16,
  fpw8Linear,
  INT8,
  int8Linear,
  mx,
  mxfp4Linear,
  mxfp8Linear,
  mxint4Linear,
  NVFP4,
  nvLinear,
  roundTrip,
} from "./float_export_fixtures.ts";

Deno.test("NVFP4 llm_compressor: § 11.3 bytes, E4M3 scales, global scales, fp16 bias, § 10.2 config, loader", async () => {
  const w = await roundTrip("llm_compressor", nvLinear);
  assertEquals(w.tensors.weight_packed, {
    dtype: "U8",
    shape: [2, 8],
    // row 0: codes 6→0x7, −2→0xC, 1→0x2, 0.5→0x1; row 1 as § 11.3 (−0 packs 0x0, § 12.4).
    bytes: [0xc7, 0x12, 0, 0, 0, 0, 0, 0, 0xf7, 0x35, 0x69, 0x00, 0x46, 0x0f, 0x42, 0x6d],
  });
  assertEquals(w.tensors.weight_scale, { dtype: "F8_E4M3", shape: [2, 1], bytes: [0x7e, 0x67] });
  assertEquals(w.tensors.weight_global_scale, { dtype: "F32", shape: [1], bytes: f32Bytes(896) });
  assertEquals(w.tensors.input_global_scale, { dtype: "F32", shape: [1], bytes: f32Bytes(512) });
  assertEquals(w.tensors.bias, { dtype: "F16", shape: [2], bytes: f16Bytes([0.1, -0.2]) });
  const e4m3 = "torch.float8_e4m3fn";
  const args = (dynamic: boolean | string, observer: string) => ({
    num_bits: 4,
    type: "float",
    symmetric: true,
    group_size: 16,
    strategy: "tensor_group",
    block_structure: null,
    dynamic,
    actorder: null,
    scale_dtype: e4m3,
    zp_dtype: null,
    observer,
    observer_kwargs: {},
  });
  assertEquals(w.qc, {
    config_groups: {
      group_0: {
        targets: ["Linear"],
        weights: args(false, "memoryless_minmax"),
        input_activations: args("local", "static_minmax"),
        output_activations: null,
        format: null,
      },
    },
    quant_method: "compressed-tensors",
    kv_cache_scheme: null,
    format: "nvfp4-pack-quantized",
    quantization_status: "compressed",
    global_compression_ratio: null,
    ignore: ["lm_head", DOWN],
    provider: "auto-round",
  });
  // Dequant: code·s8/gs (§ 11.3: code 0x7 of row 1 → 6·60/896); zeros come back +0.
  assertEquals(w.dequant[16], Math.fround(6 * (60 / 896)));
  assertSame(w.dequant, dequantizeFloatLinear(nvLinear), false, "NVFP4 W̃");
  assertEquals(w.act, { act: NVFP4.act, inputGlobalScale: 512 });
});

Deno.test("NVFP4 in a bf16 model: the packer re-derives the same codes from the bf16 fake weight (§ 11.3)", async () => {
  const w = await roundTrip("llm_compressor", nvLinear, "bfloat16");
  assertEquals(w.tensors.weight_packed.bytes.slice(8), [0xf7, 0x35, 0x69, 0x00, 0x46, 0x0f, 0x42, 0x6d]);
  assertEquals(w.tensors.bias.dtype, "F16");
});

Deno.test("MXFP4/MXFP8 llm_compressor: § 11.1 bytes (−0 packs 0x8), E8M0 scales, § 10.3 config, loader keeps −0", async () => {
  const w4 = await roundTrip("llm_compressor", mxfp4Linear);
  assertEquals(w4.tensors.weight_packed, {
    dtype: "U8",
    shape: [1, 16],
    bytes: [0x87, 0x04, 0x6a, 0xb5, ...Array(12).fill(0)],
  });
  assertEquals(w4.tensors.weight_scale, { dtype: "U8", shape: [1, 1], bytes: [0x78] });
  assertEquals(w4.qc.format, "mxfp4-pack-quantized");
  const g = (w4.qc.config_groups as Record<string, Record<string, Record<string, unknown>>>).group_0;
  assertEquals(
    [g.weights.num_bits, g.weights.type, g.weights.strategy, g.weights.group_size, g.weights.scale_dtype],
    [4, "float", "group", 32, "torch.uint8"],
  );
  assertEquals([g.input_activations.dynamic, g.weights.dynamic], [true, false]);
  assertSame(w4.dequant, dequantizeFloatLinear(mxfp4Linear), true, "MXFP4 W̃");
  assert(Object.is(w4.dequant[1], -0));
  assertEquals(w4.act, { act: mxfp4Linear.scheme.act });

  const w8 = await roundTrip("llm_compressor", mxfp8Linear);
  assertEquals(w8.tensors.weight, {
    dtype: "F8_E4M3",
    shape: [1, 32],
    bytes: [0x7e, 0xb0, 0x01, 0xc6, 0x80, ...Array(27).fill(0)],
  });
  assertEquals(w8.tensors.weight_scale, { dtype: "U8", shape: [1, 1], bytes: [124] });
  assertEquals(w8.qc.format, "mxfp8-quantized");
  assertSame(w8.dequant, dequantizeFloatLinear(mxfp8Linear), true, "MXFP8 W̃");
});

Deno.test("FP8_STATIC / FPW8A16 / INT8_W8A8 llm_compressor: E4M3 and int8 bytes, scale dtypes and shapes, configs", async () => {
  const s = await roundTrip("llm_compressor", fp8Linear, "bfloat16");
  assertEquals(s.tensors.weight, { dtype: "F8_E4M3", shape: [2, 4], bytes: FP8_BYTES });
  assertEquals(s.tensors.weight_scale, { dtype: "BF16", shape: [2, 1], bytes: bf16Bytes([0.0123, 0.3]) });
  assertEquals(s.tensors.input_scale, { dtype: "BF16", shape: [1], bytes: bf16Bytes([0.03]) });
  assertEquals(s.tensors.bias, { dtype: "BF16", shape: [2], bytes: bf16Bytes([0.25, -1]) });
  assertEquals(s.qc.format, "float-quantized");
  const g = (s.qc.config_groups as Record<string, Record<string, Record<string, unknown>>>).group_0;
  assertEquals([g.weights.strategy, g.weights.type, g.weights.num_bits, g.weights.dynamic], [
    "channel",
    "float",
    8,
    false,
  ]);
  assertEquals([g.input_activations.strategy, g.input_activations.dynamic], ["tensor", false]);
  // § 12.5: the engine multiplies by the bf16 scale.
  const bf = [0.0123, 0.3].map((x) => roundBf16(Math.fround(x)));
  assertSame(s.dequant, fp8Elements.map((v, i) => Math.fround(v * bf[i >> 2])), true, "FP8_STATIC W̃");
  assertEquals(s.act, { act: FP8_STATIC.act, inputScale: bf16ToF32(f32ToBf16(0.03)) });

  const w = await roundTrip("llm_compressor", fpw8Linear, "bfloat16");
  assertEquals(w.tensors.weight_scale, { dtype: "F32", shape: [1], bytes: f32Bytes(0.0123) });
  assertEquals(
    (w.qc.config_groups as Record<string, Record<string, unknown>>).group_0.input_activations,
    null,
  );
  assertSame(w.dequant, dequantizeFloatLinear(fpw8Linear), true, "FPW8A16 W̃");
  assertEquals(w.act, undefined);

  const i = await roundTrip("llm_compressor", int8Linear, "bfloat16");
  assertEquals(i.tensors.weight, { dtype: "I8", shape: [2, 4], bytes: [0x80, 0x7f, 0, 5, 3, 0xfd, 1, 0xff] });
  assertEquals(i.tensors.weight_scale, { dtype: "F16", shape: [2, 1], bytes: f16Bytes([-0.0123, 0.5]) });
  assertEquals(f16ToF32(f32ToF16(-0.0123)) < 0, true); // the negative scale is kept (§ 12.7)
  assertEquals(i.qc.format, "int-quantized");
  const gi = (i.qc.config_groups as Record<string, Record<string, Record<string, unknown>>>).group_0;
  assertEquals([gi.weights.type, gi.weights.strategy, gi.input_activations.strategy], [
    "int",
    "channel",
    "token",
  ]);
  assertEquals(gi.input_activations.dynamic, true);
  assertSame(i.dequant, dequantizeFloatLinear(int8Linear), true, "INT8 W̃");
  assertEquals(i.act, { act: INT8.act });
});

Deno.test("auto_round: MX/NV tensors as llm_compressor, MXINT4 E0M4 codes, FP8 scale [out], § 10.7 config keys", async () => {
  const nv = await roundTrip("auto_round", nvLinear);
  assertEquals(nv.tensors.weight_packed.bytes.slice(8), [0xf7, 0x35, 0x69, 0x00, 0x46, 0x0f, 0x42, 0x6d]);
  assertEquals(nv.tensors.weight_scale.bytes, [0x7e, 0x67]);
  assertEquals(
    [nv.qc.quant_method, nv.qc.packing_format, nv.qc.data_type, nv.qc.bits, nv.qc.group_size],
    ["auto-round", "auto_round:llm_compressor", "nv_fp", 4, 16],
  );
  assertEquals([nv.qc.act_bits, nv.qc.act_group_size, nv.qc.act_data_type, nv.qc.act_dynamic], [
    4,
    16,
    "nv_fp4_with_static_gs",
    true,
  ]);
  assertEquals((nv.qc.extra_config as Record<string, unknown>)[DOWN], { bits: 16, data_type: "fp" });
  assertSame(nv.dequant, dequantizeFloatLinear(nvLinear), false, "auto_round NVFP4 W̃");
  assertEquals(nv.act, { act: NVFP4.act, inputGlobalScale: 512 });

  const mi = await roundTrip("auto_round", mxint4Linear);
  assertEquals(mi.tensors.weight_packed.bytes, [0x97, 0x80, 0x04, ...Array(13).fill(0)]);
  assertEquals(mi.tensors.weight_scale, { dtype: "U8", shape: [1, 1], bytes: [129] });
  assertEquals([mi.qc.packing_format, mi.qc.data_type, mi.qc.act_data_type], [
    "auto_round",
    "mx_int",
    "mx_int",
  ]);
  assertSame(mi.dequant, dequantizeFloatLinear(mxint4Linear), true, "MXINT4 W̃");

  const f8 = await roundTrip("auto_round", fp8Linear, "bfloat16");
  assertEquals(f8.tensors.weight_scale, { dtype: "BF16", shape: [2], bytes: bf16Bytes([0.0123, 0.3]) });
  assertEquals(f8.tensors.weight.bytes, FP8_BYTES);
  assertEquals([f8.qc.packing_format, f8.qc.fmt, f8.qc.activation_scheme], [
    "auto_round:fp8_static",
    "e4m3",
    "static",
  ]);
  assertEquals(f8.config.torch_dtype, "bfloat16");
  assertEquals(f8.act, { act: FP8_STATIC.act, inputScale: bf16ToF32(f32ToBf16(0.03)) });

  const w8 = await roundTrip("auto_round", fpw8Linear, "bfloat16");
  assert(!("packing_format" in w8.qc) && !("act_bits" in w8.qc));
  assertEquals([w8.qc.fmt, w8.qc.activation_scheme, w8.qc.data_type], ["e4m3", "dynamic", "fp"]);
  assertEquals(w8.tensors.weight_scale, { dtype: "BF16", shape: [1], bytes: bf16Bytes([0.0123]) });
  const b = roundBf16(Math.fround(0.0123));
  assertSame(w8.dequant, fp8Elements.map((v) => Math.fround(v * b)), true, "auto_round FPW8A16 W̃");
});

Deno.test("fake: every float scheme writes W̃ in the model dtype and no quantization_config", async () => {
  for (const l of [nvLinear, mxfp4Linear, mxfp8Linear, mxint4Linear, fp8Linear, fpw8Linear, int8Linear]) {
    const w = await roundTrip("fake", l);
    assertEquals(w.config.quantization_config, undefined);
    const want = dequantizeFloatLinear(l);
    assertEquals(w.tensors.weight.dtype, "F32");
    assertSame(new Float32Array(Uint8Array.from(w.tensors.weight.bytes).buffer), want, true, "fake W̃");
    const b = await roundTrip("fake", l, "bfloat16");
    assertEquals(b.tensors.weight.bytes, bf16Bytes([...want]));
  }
});

Deno.test("unsupported format/scheme pairs are refused with one actionable line (§ 10.1)", async () => {
  const refuse = (formats: string, s: FloatScheme, hint: string) => {
    const e = assertThrows(() => checkFloatFormats(parseFormats(formats), s), UsageError);
    assert(e.message.includes(hint) && !e.message.includes("\n"), e.message);
  };
  refuse("auto_gptq", NVFP4, "--format llm_compressor or auto_round or fake");
  refuse("auto_awq", FP8_STATIC, "--format llm_compressor or auto_round or fake");
  refuse("gguf:q4_0", mx("mx_fp", 4), "--format llm_compressor or auto_round or fake");
  refuse("llm_compressor", mx("mx_int", 4), "--format auto_round or fake");
  refuse("auto_round", INT8, "--format llm_compressor or fake");
  refuse("auto_round", mx("mx_fp", 6), "--format fake");
  refuse("llm_compressor", mx("mx_fp", 6), "--format fake");
  for (const s of [NVFP4, mx("mx_fp", 4), mx("mx_fp", 8), FP8_STATIC, FPW8A16]) {
    checkFloatFormats(parseFormats("llm_compressor,auto_round,fake"), s);
  }
  // checkFormats routes float QuantSchemes through the same check.
  const ctx = await context(NVFP4, "float32");
  assertThrows(
    () => checkFormats(parseFormats("auto_gptq"), ctx.run.layers, NVFP4 as QuantScheme),
    UsageError,
  );
  assertEquals(checkFormats(parseFormats("llm_compressor"), ctx.run.layers, NVFP4 as QuantScheme), []);
});
