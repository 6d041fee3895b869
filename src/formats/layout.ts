/**
 * What the packed safetensors formats share: the group geometry of one Linear as the loader reads it
 * back, the tensors a format's reader reads ({@link PackedTensors}) and what it provides
 * ({@link PackedReader}), the per-layer settings of a quantization_config, the check of a
 * `[groups, outputs]` scales tensor, and the transposition between our `[N, G]` per-row order and
 * the formats' `[G, N]` one.
 */
import { FormatError, quote } from "../errors.ts";
import { boundedRegExp, SlowRegexError } from "../std/regex.ts";

/** How one packed layer is laid out. */
export interface PackedLayer {
  bits: number;
  groupSize: number;
  /** Stored zero points are the true ones minus one (GPTQ convention). */
  zeroPlusOne: boolean;
  n: number;
  k: number;
}

/** The effective group size g (−1 or g > K: the whole row) and the groups per row G. */
export function groupsOf(p: { groupSize: number; k: number }): { g: number; G: number } {
  const g = p.groupSize <= 0 || p.groupSize > p.k ? p.k : p.groupSize;
  return { g, G: Math.ceil(p.k / g) };
}

/**
 * The tensors of a quantized folder as a format's reader reads them (io/safetensors' reader is
 * one); names are full tensor names such as `model.layers.0.mlp.up_proj.qweight`.
 */
export interface PackedTensors {
  has(name: string): boolean;
  info(name: string): { shape: number[]; dtype: string };
  readBytes(name: string): Promise<Uint8Array>;
  readInt32(name: string): Promise<Int32Array>;
  readF32(name: string): Promise<Float32Array>;
}

/** One packed format read back: the tensor that marks a packed Linear, its geometry and its W̃. */
export interface PackedReader<P extends PackedLayer = PackedLayer> {
  /** Suffix of the tensor every packed Linear has (`.qweight`, `.weight_packed`). */
  readonly marker: string;
  /** Geometry of Linear `layer` (its name without the suffix); FormatError when tensors are missing. */
  layer(t: PackedTensors, layer: string, origin: string): P;
  /** W̃ `[N, K]` of Linear `layer` in f32, as the format's loaders dequantize it. */
  dequantize(t: PackedTensors, layer: string, p: P, origin: string): Promise<Float32Array>;
}

/** A config number: a number as it is, a numeric string converted, anything else NaN (refused later). */
export function numberOf(v: unknown): number {
  return typeof v === "number" ? v : typeof v === "string" ? Number(v) : NaN;
}

/** A quantization_config field that must be an object when present (`extra_config`, `dynamic`). */
function objectField(qc: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = qc[key] ?? {};
  if (typeof v !== "object" || Array.isArray(v)) {
    throw new FormatError(`quantization_config.${key} is ${quote(v, 40)}, not an object`);
  }
  return v as Record<string, unknown>;
}

/**
 * Per-layer bits/group_size of a quantization_config, defaulting to its global keys: auto-round's
 * `bits`/`group_size` and `extra_config`, GPTQ's `dynamic` rules, AutoAWQ's `w_bit`/`q_group_size`.
 */
export function layerSettings(
  qc: Record<string, unknown>,
  layer: string,
): { bits: number; groupSize: number } {
  const extra = objectField(qc, "extra_config");
  let bits = numberOf(qc.bits ?? qc.w_bit), groupSize = numberOf(qc.group_size ?? qc.q_group_size);
  const apply = (o: unknown) => {
    const { bits: b, group_size: g } = (o ?? {}) as Record<string, unknown>;
    if (typeof b === "number") bits = b;
    if (typeof g === "number") groupSize = g;
  };
  for (const [key, o] of Object.entries(extra)) {
    if (key === layer) continue;
    // auto-round also writes regex keys; match them like its loaders do (search semantics).
    if (/[.*^$|()[\]?+]/.test(key) && configRegex(key, "extra_config")?.test(layer)) apply(o);
  }
  if (extra[layer]) apply(extra[layer]);
  // GPTQ "dynamic": "+:regex" → these settings, "-:regex" → not quantized (gptqmodel semantics).
  const dynamic = objectField(qc, "dynamic");
  for (const [key, o] of Object.entries(dynamic)) {
    const m = /^([+-]):(.*)$/.exec(key) ?? [key, "+", key];
    if (m[1] === "+" && configRegex(m[2], "dynamic")?.test(layer)) apply(o);
  }
  return { bits, groupSize };
}

/**
 * A regex key of a quantization_config (`extra_config`, `dynamic`, `re:` targets): undefined when it
 * is not a regular expression (then it matches nothing, as before); FormatError when it is one whose
 * matching could take exponential time (std/regex.ts).
 */
export function configRegex(key: string, where: string): RegExp | undefined {
  try {
    return boundedRegExp(key);
  } catch (e) {
    if (e instanceof SlowRegexError) {
      throw new FormatError(`quantization_config ${where} key ${quote(key)} is refused: ${e.message}`);
    }
    return undefined;
  }
}

/** GPTQ and AWQ store scales as [groups, outputs]. */
export function checkScalesShape(shape: number[], G: number, n: number, origin: string): void {
  if (shape[0] !== G || shape[1] !== n) {
    throw new FormatError(`scales shape [${shape}] does not match ${G} groups × ${n} outputs`, origin);
  }
}

/** Transpose a `[rows, cols]` array. */
export function transpose<T extends Float32Array | Int32Array>(a: T, rows: number, cols: number): T {
  const out = new (a.constructor as new (n: number) => T)(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = a[r * cols + c];
  return out;
}

/** Bit widths the packed formats store (the packers and unpackers of src/formats/). */
export const PACKED_BITS: readonly number[] = [2, 3, 4, 8];

/**
 * The settings and geometry of one packed layer, checked before anything is allocated from them:
 * bits the format stores, an integer group size, and a weight of positive integer size.
 */
export function checkPackedLayer(
  p: { bits: number; groupSize: number; n: number; k: number },
  layer: string,
  origin: string,
  bits: readonly number[] = PACKED_BITS,
): void {
  if (!bits.includes(p.bits)) {
    throw new FormatError(`${layer}: bits ${quote(p.bits)} is not one of ${bits.join(", ")}`, origin);
  }
  if (!Number.isInteger(p.groupSize)) {
    throw new FormatError(`${layer}: group_size ${quote(p.groupSize)} is not an integer`, origin);
  }
  if (![p.n, p.k].every((d) => Number.isSafeInteger(d) && d > 0)) {
    throw new FormatError(`${layer}: the packed tensors give a weight of [${p.n}, ${p.k}]`, origin);
  }
}

/** A tensor's shape must be `expected`; FormatError naming both otherwise. */
export function checkTensorShape(t: PackedTensors, name: string, expected: number[], origin: string): void {
  if (!t.has(name)) throw new FormatError(`${name} is missing`, origin);
  const shape = t.info(name).shape;
  if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) {
    throw new FormatError(`${name}: shape [${shape}] where [${expected}] is expected`, origin);
  }
}

/**
 * The checks of a GPTQ/AWQ `qweight`/`qzeros`/`scales` trio: the codes fill whole int32 words, the
 * settings and geometry are ones the format stores, and `qzeros` has the shape `qzerosShape` gives
 * for the layer's groups and outputs.
 */
export function checkQweightTrio(
  t: PackedTensors,
  layer: string,
  p: { bits: number; groupSize: number; n: number; k: number },
  origin: string,
  qzerosShape: (G: number) => number[],
  bits: readonly number[] = PACKED_BITS,
): void {
  const shape = t.info(`${layer}.qweight`).shape;
  if (shape.length !== 2) throw new FormatError(`${layer}.qweight: shape [${shape}] is not 2-D`, origin);
  if (!Number.isInteger(p.k) || !Number.isInteger(p.n)) {
    throw new FormatError(
      `${layer}.qweight: shape [${shape}] does not fit ${quote(p.bits)}-bit codes`,
      origin,
    );
  }
  checkPackedLayer(p, layer, origin, bits);
  if (!t.has(`${layer}.scales`)) throw new FormatError(`${layer}.scales is missing`, origin);
  checkTensorShape(t, `${layer}.qzeros`, qzerosShape(groupsOf(p).G), origin);
}
