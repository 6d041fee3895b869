/**
 * The tensors of one Linear quantized with a float or activation-quantized scheme
 * ({@link FloatQuantizedLinear}), both directions, as auto-round's llm_compressor and auto_round
 * exporters write them (spec/SCHEMES.md § 10.2–10.7; auto-round export_to_llmcompressor/qlinear_fp.py,
 * export_to_autoround/qlinear_int.py, export_to_autoround/export_to_fp8.py) and as the serving
 * engines dequantize them (NV `code·s8/gs`, MX `code·2^(u8−127)`, FP8 `fp8·scale` in the stored dtype,
 * INT8 `q·scale`). Both formats store the same tensors except the FP8 `weight_scale` shape
 * (`[out, 1]` in compressed-tensors, `[out]` in auto_round, § 10.7) and the FPW8A16 scale dtype.
 */
import { FormatError } from "../errors.ts";
import { floatGroups, type FloatQuantizedLinear, type FloatScheme } from "../qmath/quantized.ts";
import { decodeFloats, encodeFloats, type FloatDType, roundToDType, type StDType } from "../tensor/dtype.ts";
import { E2M1_VALUES, e4m3Byte, packMxfp4, packMxfp8, packNibbles, packNvfp4 } from "./fp4_pack.ts";
import type { PackedReader, PackedTensors } from "./layout.ts";

/** The tensor layouts of the float schemes (one per auto-round `QuantLinear` kind). */
export type FloatLayout = "nvfp4" | "mxfp4" | "mxfp8" | "mxint4" | "fp8" | "int8";

/**
 * The layout that stores scheme `s`, or undefined when no packed layout does (MXFP6, FP8 with
 * groups > 0 or blocks, other bit widths: § 10.1 "fake only" / not implemented).
 */
export function floatLayout(s: FloatScheme): FloatLayout | undefined {
  if (s.dataType === "nv_fp" && s.bits === 4 && s.groupSize === 16) return "nvfp4";
  if (s.dataType === "mx_fp" && s.groupSize === 32 && s.bits === 4) return "mxfp4";
  if (s.dataType === "mx_fp" && s.groupSize === 32 && s.bits === 8) return "mxfp8";
  if (s.dataType === "mx_int" && s.groupSize === 32 && s.bits === 4) return "mxint4";
  if (s.dataType === "fp" && s.bits === 8 && (s.groupSize === 0 || s.groupSize === -1)) return "fp8";
  if (s.dataType === "int" && s.bits === 8 && s.groupSize === -1) return "int8";
  return undefined;
}

/** Input features a layout needs per row: 16 for NV, 32 for MX (whole groups, § 10.2–10.3). */
export function layoutGroup(layout: FloatLayout): number {
  return layout === "nvfp4" ? 16 : layout === "fp8" || layout === "int8" ? 1 : 32;
}

/** One tensor to write: name suffix after the layer name, safetensors dtype, shape, bytes. */
export interface FloatTensor {
  suffix: string;
  dtype: StDType;
  shape: number[];
  bytes: Uint8Array;
}

/** Where the two formats differ. */
export interface FloatTensorOptions {
  /** The checkpoint dtype (FP8 scales, input_scale and bias are stored in it, § 10.4, § 12.5). */
  modelDType: FloatDType;
  /** The FP8 per-channel `weight_scale` as `[out, 1]` (compressed-tensors) or `[out]` (auto_round). */
  fp8ScaleColumn: boolean;
  /** Dtype of a per-tensor FP8 weight scale (FPW8A16); default the model dtype. */
  fp8TensorScaleDType?: FloatDType;
}

/** E0M4 (MXINT4) magnitudes by code (§ 2.1; qlinear_int.py:48-57). */
export const E0M4_VALUES: readonly number[] = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75];

/** The E0M4 code of `v`: nearest magnitude (first on ties), bit 3 from the sign bit (−0 included). */
export function e0m4Code(v: number): number {
  const a = Math.abs(v);
  let best = 0;
  for (let i = 1; i < E0M4_VALUES.length; i++) {
    if (Math.abs(E0M4_VALUES[i] - a) < Math.abs(E0M4_VALUES[best] - a)) best = i;
  }
  return (v < 0 || Object.is(v, -0) ? 8 : 0) | best;
}

/** The value of a float8_e4m3fn byte (0x7F/0xFF are NaN). */
export function e4m3Value(b: number): number {
  const sign = b & 0x80 ? -1 : 1, e = (b >> 3) & 15, m = b & 7;
  if (e === 15 && m === 7) return NaN;
  return sign * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}

const f32 = Math.fround;
const recip = (x: number) => (x === 0 ? 0 : f32(1 / x));
const scalar = (v: number, dt: FloatDType): FloatTensor["bytes"] => encodeFloats(Float32Array.of(v), dt);
const e8m0 = (e: Float32Array) => Uint8Array.from(e, (x) => Math.min(Math.max(x + 127, 0), 255));

/**
 * The NVFP4 fake-quantized weight auto-round leaves on the layer (nvfp.py ref_nvfp4_quant):
 * fl32(q · 1/os) with os = 1/fl32(s8 · 1/gs), stored in the model dtype; the packer recomputes the
 * codes from it (§ 10.2, qlinear_fp.py:154-162).
 */
function nvFakeWeight(l: FloatQuantizedLinear, dt: FloatDType): Float32Array {
  const gs = l.globalScale ?? 0, w = new Float32Array(l.n * l.k);
  for (let g = 0; g < (l.n * l.k) / 16; g++) {
    const d = recip(recip(f32(l.scales[g] * recip(gs))));
    for (let i = g * 16; i < (g + 1) * 16; i++) w[i] = f32(l.elements[i] * d);
  }
  return roundToDType(w, dt);
}

/** The tensors of `l` (weight, scales, static activation scales, bias), in write order. */
export function floatTensors(l: FloatQuantizedLinear, o: FloatTensorOptions): FloatTensor[] {
  const layout = floatLayout(l.scheme);
  if (!layout) throw new RangeError(`${l.name}: no packed layout stores this float scheme`);
  if (l.k % layoutGroup(layout) !== 0) {
    throw new RangeError(`${l.name}: ${l.k} input features are not whole groups of ${layoutGroup(layout)}`);
  }
  const { n, k } = l, out: FloatTensor[] = [];
  const add = (suffix: string, dtype: StDType, shape: number[], bytes: Uint8Array) =>
    out.push({ suffix, dtype, shape, bytes });
  const biasDType: FloatDType = layout === "fp8" || layout === "int8" ? o.modelDType : "F16";
  if (layout === "nvfp4") {
    // § 10.2: codes recomputed from the stored fake weight; zeros pack as 0x0 (§ 12.4).
    const gs = l.globalScale ?? 0;
    add("weight_packed", "U8", [n, k / 2], packNvfp4(nvFakeWeight(l, o.modelDType), l.scales, gs, n, k));
    add("weight_scale", "F8_E4M3", [n, k / 16], Uint8Array.from(l.scales, e4m3Byte));
    add("weight_global_scale", "F32", [1], scalar(gs, "F32"));
    if (l.inputGlobalScale !== undefined) {
      add("input_global_scale", "F32", [1], scalar(l.inputGlobalScale, "F32"));
    }
  } else if (layout === "mxfp4" || layout === "mxfp8") {
    // § 10.3: W / 2^e is exact (−0 packs 0x8, § 12.4); elements·2^e is exact in f32 for e ≥ −127.
    const w = Float32Array.from(l.elements, (v, i) => v * 2 ** l.scales[Math.floor(i / 32)]);
    if (layout === "mxfp4") {
      const p = packMxfp4(w, l.scales, n, k);
      add("weight_packed", "U8", [n, k / 2], p.weightPacked);
      add("weight_scale", "U8", [n, k / 32], p.weightScale);
    } else {
      const p = packMxfp8(w, l.scales);
      add("weight", "F8_E4M3", [n, k], p.weight);
      add("weight_scale", "U8", [n, k / 32], p.weightScale);
    }
  } else if (layout === "mxint4") {
    // § 10.7 MXINT4: E0M4 codes (argmin + signbit, qlinear_int.py:60-130), E8M0 scales.
    add("weight_packed", "U8", [n, k / 2], packNibbles(Uint8Array.from(l.elements, e0m4Code)));
    add("weight_scale", "U8", [n, k / 32], e8m0(l.scales));
  } else if (layout === "fp8") {
    // § 10.4/§ 10.7: clamp(W/scale, ±448).to(e4m3) gives back the element; scale in the model dtype.
    add("weight", "F8_E4M3", [n, k], Uint8Array.from(l.elements, e4m3Byte));
    const perTensor = l.scheme.groupSize === 0;
    const sdt = perTensor ? o.fp8TensorScaleDType ?? o.modelDType : o.modelDType;
    const shape = perTensor ? [1] : o.fp8ScaleColumn ? [n, 1] : [n];
    add("weight_scale", sdt, shape, encodeFloats(l.scales, sdt));
    if (l.inputScale !== undefined) add("input_scale", o.modelDType, [1], scalar(l.inputScale, o.modelDType));
  } else {
    // § 10.5 INT8: int8 codes, fp16 scale [out, 1] (negative scales kept, § 12.7), no zero point.
    add("weight", "I8", [n, k], Uint8Array.from(l.elements, (v) => v & 0xff));
    add("weight_scale", "F16", [n, 1], encodeFloats(l.scales, "F16"));
  }
  if (l.bias) add("bias", biasDType, [n], encodeFloats(l.bias, biasDType));
  return out;
}

/** The geometry of a float-quantized Linear read back. */
export interface FloatLayer {
  layout: FloatLayout;
  /** Group size of the weight scales (FP8: 0 per tensor, −1 per channel). */
  groupSize: number;
  n: number;
  k: number;
  /** Fields of PackedLayer the loader shares with the integer formats. */
  bits: number;
  zeroPlusOne: false;
}

/** Shape check of one tensor. */
function expectShape(
  t: PackedTensors,
  name: string,
  ok: (s: number[]) => boolean,
  what: string,
  origin: string,
) {
  if (!t.has(name)) throw new FormatError(`${name} is missing`, origin);
  const s = t.info(name).shape;
  if (!ok(s)) throw new FormatError(`${name}: shape [${s}] where ${what} is expected`, origin);
}

/** The geometry of Linear `layer` stored in `layout`, from its tensors; FormatError when they disagree. */
export function readFloatLayer(
  t: PackedTensors,
  layer: string,
  layout: FloatLayout,
  origin: string,
): FloatLayer {
  const packed = layout === "nvfp4" || layout === "mxfp4" || layout === "mxint4";
  const wName = `${layer}.${packed ? "weight_packed" : "weight"}`;
  expectShape(t, wName, (s) => s.length === 2 && s[0] > 0 && s[1] > 0, "[out, in]", origin);
  const [n, w1] = t.info(wName).shape;
  const k = packed ? 2 * w1 : w1;
  const wantDType = packed ? "U8" : layout === "int8" ? "I8" : "F8_E4M3";
  if (t.info(wName).dtype !== wantDType) {
    throw new FormatError(`${wName} is ${t.info(wName).dtype}, not ${wantDType}`, origin);
  }
  const sName = `${layer}.weight_scale`;
  let groupSize: number;
  if (layout === "fp8" || layout === "int8") {
    const s = t.has(sName) ? t.info(sName).shape : [];
    const numel = s.reduce((a, b) => a * b, 1);
    groupSize = numel === 1 && n > 1 ? 0 : -1;
    expectShape(
      t,
      sName,
      (x) => numel === 1 || (numel === n && x[0] === n),
      `[${n}, 1], [${n}] or [1]`,
      origin,
    );
  } else {
    groupSize = layout === "nvfp4" ? 16 : 32;
    if (k % groupSize) throw new FormatError(`${wName}: ${k} inputs are not groups of ${groupSize}`, origin);
    expectShape(
      t,
      sName,
      (s) => s.length === 2 && s[0] === n && s[1] === k / groupSize,
      `[${n}, ${k / groupSize}]`,
      origin,
    );
  }
  const bits = layout === "mxfp8" || layout === "fp8" || layout === "int8" ? 8 : 4;
  return { layout, groupSize, n, k, bits, zeroPlusOne: false };
}

/** A float tensor of any stored float dtype (F8_E4M3 included) as f32 values. */
async function readFloats(t: PackedTensors, name: string): Promise<Float32Array> {
  const dt = t.info(name).dtype;
  if (dt === "F8_E4M3") return Float32Array.from(await t.readBytes(name), e4m3Value);
  if (dt === "F32" || dt === "F16" || dt === "BF16") return decodeFloats(await t.readBytes(name), dt);
  throw new FormatError(`${name} is ${dt}, not a float dtype`);
}

/** A stored scalar (`weight_global_scale`, `input_scale`, `input_global_scale`), or undefined. */
export async function readScalar(t: PackedTensors, name: string): Promise<number | undefined> {
  if (!t.has(name)) return undefined;
  const v = await readFloats(t, name);
  if (v.length !== 1) throw new FormatError(`${name} holds ${v.length} values, not 1`);
  return v[0];
}

/** Element values of the stored weight `[n, k]` (codes decoded; −0 kept where the code says so). */
async function readElements(t: PackedTensors, layer: string, p: FloatLayer): Promise<Float32Array> {
  if (p.layout === "mxfp8" || p.layout === "fp8") return readFloats(t, `${layer}.weight`);
  if (p.layout === "int8") {
    return Float32Array.from(new Int8Array((await t.readBytes(`${layer}.weight`)).slice().buffer));
  }
  const bytes = await t.readBytes(`${layer}.weight_packed`),
    table = p.layout === "mxint4" ? E0M4_VALUES : E2M1_VALUES;
  const el = new Float32Array(p.n * p.k);
  for (let i = 0; i < el.length; i++) {
    const c = (bytes[i >> 1] >> ((i & 1) * 4)) & 15;
    el[i] = (c & 8 ? -1 : 1) * table[c & 7];
  }
  return el;
}

/**
 * W̃ `[n, k]` of a stored float Linear as a serving engine computes it: NV `code · (s8 / gs)`
 * (qmodules/nvfp4.py:164-176), MX `code · 2^(u8 − 127)` (qmodules/mx.py:40-47), FP8 `fp8 · scale` and
 * INT8 `q · scale` with the scale as stored; each product rounded to f32 (as dequantizeFloatLinear).
 */
export async function dequantizeFloatTensors(
  t: PackedTensors,
  layer: string,
  p: FloatLayer,
): Promise<Float32Array> {
  const el = await readElements(t, layer, p);
  const sName = `${layer}.weight_scale`;
  // NV scales s8/gs are not f32 values: kept in double, as dequantizeFloatLinear does.
  const gs = p.layout === "nvfp4" ? (await readScalar(t, `${layer}.weight_global_scale`)) ?? NaN : 1;
  const scale = p.layout === "nvfp4" || p.layout === "fp8" || p.layout === "int8"
    ? Array.from(await readFloats(t, sName), (s) => (p.layout !== "nvfp4" ? s : gs ? s / gs : 0))
    : Array.from(await t.readBytes(sName), (u) => 2 ** (u - 127));
  const { perRow } = floatGroups(
    { bits: p.bits, groupSize: p.groupSize, sym: true, dataType: "fp" },
    p.n,
    p.k,
  );
  const g = p.groupSize <= 0 ? p.k : p.groupSize;
  const w = new Float32Array(p.n * p.k);
  for (let r = 0; r < p.n; r++) {
    for (let c = 0; c < p.k; c++) {
      const gi = p.groupSize === 0 ? 0 : r * perRow + Math.floor(c / g);
      w[r * p.k + c] = f32(el[r * p.k + c] * scale[gi]);
    }
  }
  return w;
}

/** The loader's reader of float-quantized Linears: every one has a `weight_scale` (§ 10.2–10.7). */
export function floatPackedReader(layout: FloatLayout): PackedReader<FloatLayer> {
  return {
    marker: ".weight_scale",
    layer: (t, layer, origin) => readFloatLayer(t, layer, layout, origin),
    dequantize: (t, layer, p) => dequantizeFloatTensors(t, layer, p),
  };
}
