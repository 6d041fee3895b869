/**
 * Float-scheme Linears built from known values (spec/SCHEMES.md § 11 worked examples and hand-encoded
 * E4M3/int8/E0M4 values) and the export → read-back helper of tests/export_float_test.ts.
 */
import { assert, assertEquals } from "./assert.ts";
import type { ExportContext } from "../src/export/exporter.ts";
import { createExporters } from "../src/export/registry.ts";
import type { LayerPlan, RunInfo } from "../src/formats/run.ts";
import { openCheckpoint } from "../src/io/checkpoint.ts";
import { openQuantizedSource, withActivationQuant } from "../src/io/quantized_loader.ts";
import { SafetensorsReader } from "../src/io/safetensors/reader.ts";
import type { FloatQuantizedLinear, FloatScheme, QuantScheme } from "../src/qmath/quantized.ts";
import { f32ToBf16, f32ToF16 } from "../src/tensor/dtype.ts";
import { STORIES } from "./consumers/helpers.ts";
import { join } from "./consumers/path.ts";

export const Q = "model.layers.0.self_attn.q_proj";
export const DOWN = "model.layers.0.mlp.down_proj";

export const NVFP4: FloatScheme = {
  bits: 4,
  groupSize: 16,
  sym: true,
  dataType: "nv_fp",
  act: { bits: 4, groupSize: 16, sym: true, dataType: "nv_fp", dynamic: true },
};
export const mx = (dataType: "mx_fp" | "mx_int", bits: number): FloatScheme => ({
  bits,
  groupSize: 32,
  sym: true,
  dataType,
  act: { bits, groupSize: 32, sym: true, dataType, dynamic: true },
});
export const FP8_STATIC: FloatScheme = {
  bits: 8,
  groupSize: -1,
  sym: true,
  dataType: "fp",
  act: { bits: 8, groupSize: 0, sym: true, dataType: "fp", dynamic: false },
};
export const FPW8A16: FloatScheme = { bits: 8, groupSize: 0, sym: true, dataType: "fp" };
export const INT8: FloatScheme = {
  bits: 8,
  groupSize: -1,
  sym: true,
  dataType: "int",
  act: { bits: 8, groupSize: -1, sym: true, dataType: "int", dynamic: true },
};

/** § 11.3: NVFP4 [2, 16], gs 896, s8 = 448 (row 0) and 60 (row 1); elements = the q column. */
export const nvLinear: FloatQuantizedLinear = {
  name: Q,
  n: 2,
  k: 16,
  scheme: NVFP4,
  elements: Float32Array.of(
    ...[6, -2, 1, 0.5, ...Array(12).fill(0)],
    ...[6, -6, 3, 1.5, -0.5, 4, 0, -0, 4, 2, -6, 0, 1, 2, -3, 4],
  ),
  scales: Float32Array.of(448, 60),
  globalScale: 896,
  inputGlobalScale: 512, // 2688 / 5.25
  bias: Float32Array.of(0.1, -0.2),
};

/** § 11.1: one MXFP4 row of 32, shared exponent −7. */
export const mxfp4Linear: FloatQuantizedLinear = {
  name: Q,
  n: 1,
  k: 32,
  scheme: mx("mx_fp", 4),
  elements: Float32Array.of(6, -0, 2, 0, -1, 4, 3, -1.5, ...Array(24).fill(0)),
  scales: Float32Array.of(-7),
};

/** MXFP8: E4M3 elements 448 (0x7E), −0.5 (0xB0), 2^−9 (0x01), −3.5 (0xC6), −0 (0x80); exponent −3 (E8M0 124). */
export const mxfp8Linear: FloatQuantizedLinear = {
  name: Q,
  n: 1,
  k: 32,
  scheme: mx("mx_fp", 8),
  elements: Float32Array.of(448, -0.5, 2 ** -9, -3.5, -0, ...Array(27).fill(0)),
  scales: Float32Array.of(-3),
};

/** MXINT4: E0M4 elements 1.75 (0x7), −0.25 (0x9), 0, −0 (0x8), 1 (0x4); exponent 2 (E8M0 129). */
export const mxint4Linear: FloatQuantizedLinear = {
  name: Q,
  n: 1,
  k: 32,
  scheme: mx("mx_int", 4),
  elements: Float32Array.of(1.75, -0.25, 0, -0, 1, ...Array(27).fill(0)),
  scales: Float32Array.of(2),
};

/** FP8 per channel: E4M3 448 (0x7E), −1 (0xB8), 0.5 (0x30), 2^−9 (0x01) / −448 (0xFE), 3 (0x44), 0, −0.0625 = −2^−4 (biased exponent 3: 0x98). */
export const fp8Elements = Float32Array.of(448, -1, 0.5, 2 ** -9, -448, 3, 0, -0.0625);
export const FP8_BYTES = [0x7e, 0xb8, 0x30, 0x01, 0xfe, 0x44, 0x00, 0x98];
export const fp8Linear: FloatQuantizedLinear = {
  name: Q,
  n: 2,
  k: 4,
  scheme: FP8_STATIC,
  elements: fp8Elements,
  scales: Float32Array.of(Math.fround(0.0123), Math.fround(0.3)),
  inputScale: Math.fround(0.03),
  bias: Float32Array.of(0.25, -1),
};
export const fpw8Linear: FloatQuantizedLinear = {
  name: Q,
  n: 2,
  k: 4,
  scheme: FPW8A16,
  elements: fp8Elements,
  scales: Float32Array.of(Math.fround(0.0123)),
};
export const int8Linear: FloatQuantizedLinear = {
  name: Q,
  n: 2,
  k: 4,
  scheme: INT8,
  elements: Float32Array.of(-128, 127, 0, 5, 3, -3, 1, -1),
  scales: Float32Array.of(Math.f16round(-0.0123), Math.f16round(0.5)),
};

export async function context(
  scheme: FloatScheme,
  torchDtype: "float32" | "bfloat16",
): Promise<ExportContext> {
  using ck = await openCheckpoint(STORIES);
  const plan = (quantize: boolean): LayerPlan =>
    quantize ? { quantize, scheme: scheme as QuantScheme, fromUser: false } : {
      quantize,
      reason: "shape",
      fromUser: false,
    };
  const run: RunInfo = {
    scheme: scheme as QuantScheme,
    floatScheme: scheme,
    layers: { layers: new Map([[Q, plan(true)], [DOWN, plan(false)]]) },
    iters: 0,
    nsamples: 1,
    seqlen: 1,
    batchSize: 1,
    gradientAccumulateSteps: 1,
    enableMinmaxTuning: true,
    enableQuantedInput: false,
    lowGpuMemUsage: false,
    amp: false,
    dataset: "",
  };
  return { spec: { ...ck.spec, torchDtype }, sourceDir: ck.dir, config: ck.config, maxShardSize: 1e9, run };
}

export interface Written {
  tensors: Record<string, { dtype: string; shape: number[]; bytes: number[] }>;
  qc: Record<string, unknown>;
  config: Record<string, unknown>;
  dequant: Float32Array;
  act: unknown;
}

/** Export `l` in `format`, read the folder back (tensors, config, loader W̃, activation quantizer). */
export async function roundTrip(
  format: string,
  l: FloatQuantizedLinear,
  torchDtype: "float32" | "bfloat16" = "float32",
): Promise<Written> {
  const dir = await Deno.makeTempDir({ prefix: "export_float_" });
  try {
    const [e] = createExporters([format], dir, await context(l.scheme, torchDtype));
    await e.writeFloatQuantized!(l);
    await e.finish();
    const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
    using reader = await SafetensorsReader.open(dir);
    const tensors: Written["tensors"] = {};
    for (const name of reader.names()) {
      const i = reader.info(name);
      tensors[name.slice(Q.length + 1)] = {
        dtype: i.dtype,
        shape: i.shape,
        bytes: [...await reader.readBytes(name)],
      };
    }
    const qc = config.quantization_config ?? {};
    const src = config.quantization_config
      ? await withActivationQuant(openQuantizedSource(reader, qc, dir), reader, qc)
      : undefined;
    const dequant = src ? await src.readF32(`${Q}.weight`) : new Float32Array();
    return { tensors, qc, config, dequant, act: src?.activationQuant?.(Q) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

export const f32Bytes = (v: number) => [...new Uint8Array(Float32Array.of(v).buffer)];
export const f16Bytes = (v: number[]) => v.flatMap((x) => [f32ToF16(x) & 0xff, f32ToF16(x) >> 8]);
export const bf16Bytes = (v: number[]) => v.flatMap((x) => [f32ToBf16(x) & 0xff, f32ToBf16(x) >> 8]);

/** Element-wise identity (Object.is: −0 and +0 differ), or equality up to the sign of zero. */
export function assertSame(got: Float32Array, want: Float32Array, signedZero: boolean, what: string) {
  assertEquals(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    const ok = signedZero ? Object.is(got[i], want[i]) : got[i] === want[i];
    assert(ok, `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}
