/**
 * Host reference of auto-round's floating-point weight quantizers (issue 17), value for value: the
 * MX formats (auto_round/data_type/mxfp.py: a power-of-two E8M0 scale per group of 32 and FP4/FP6/FP8
 * or INT elements, floor and RCEIL scale rules) and NVFP4 (auto_round/data_type/nvfp.py: E2M1
 * elements, an FP8 E4M3 scale per group of 16 and a per-tensor global scale), plus the FP8 E4M3
 * rounding both rely on. Backend kernels for these types are to be checked against these functions
 * (not yet written: the pipeline quantizes integer schemes only so far).
 *
 * Arithmetic follows torch's float32 where it changes a result: log2 is rounded to f32 before the
 * floor/ceil (so a group maximum a hair below a power of two takes that power, as in torch), and
 * every product is rounded to f32. Scaling by powers of two is exact in both.
 */

/** An MX element format: auto-round's MXFP_FORMAT_CACHE entry (ebits, mbits, emax, max/min normal). */
export interface MxElementFormat {
  ebits: number;
  /** Mantissa bits plus 2 (sign and implicit bit), as the cache stores them. */
  mbits: number;
  emax: number;
  maxNorm: number;
  minNorm: number;
}

/** auto-round mxfp.py MXFP_FORMAT_CACHE. */
export const MX_FORMATS: Readonly<Record<string, MxElementFormat>> = {
  mx_int8: { ebits: 0, mbits: 8, emax: 0, maxNorm: 1.984375, minNorm: 0 },
  mx_int4: { ebits: 0, mbits: 4, emax: 0, maxNorm: 1.75, minNorm: 0 },
  mx_int2: { ebits: 0, mbits: 2, emax: 0, maxNorm: 1.0, minNorm: 0 },
  mx_fp8e5m2: { ebits: 5, mbits: 4, emax: 15, maxNorm: 57344.0, minNorm: 6.103515625e-05 },
  mx_fp8: { ebits: 4, mbits: 5, emax: 8, maxNorm: 448.0, minNorm: 0.015625 },
  mx_fp8e4m3: { ebits: 4, mbits: 5, emax: 8, maxNorm: 448.0, minNorm: 0.015625 },
  mx_fp6e3m2: { ebits: 3, mbits: 4, emax: 4, maxNorm: 28.0, minNorm: 0.25 },
  mx_fp6: { ebits: 2, mbits: 5, emax: 2, maxNorm: 7.5, minNorm: 1.0 },
  mx_fp6e2m3: { ebits: 2, mbits: 5, emax: 2, maxNorm: 7.5, minNorm: 1.0 },
  mx_fp4: { ebits: 2, mbits: 3, emax: 2, maxNorm: 6.0, minNorm: 1.0 },
  mx_fp4e2m1: { ebits: 2, mbits: 3, emax: 2, maxNorm: 6.0, minNorm: 1.0 },
};

/** The format auto-round uses for a data type name and bit width (`"mx_fp" + bits` when unknown). */
export function mxFormat(dataType: string, bits: number): MxElementFormat {
  const f = Object.hasOwn(MX_FORMATS, dataType) ? MX_FORMATS[dataType] : MX_FORMATS[`mx_fp${bits}`];
  if (!f) throw new RangeError(`no MX element format for ${dataType} with ${bits} bits`);
  return f;
}

const f32 = Math.fround;

/** torch.log2 of a float32 value, as a float32. */
function log2f(x: number): number {
  return f32(Math.log2(x));
}

/**
 * mxfp.py quant_element with mantissa_rounding "even": the value on the element grid of `fmt`
 * (private exponent floor(log2|x|) clipped below at 2 − 2^(ebits−1); 2^(mbits−2) steps per binade;
 * ties to the even step: `floor(|t| + 0.5) − [(|t| − 0.5) mod 2 = 0]`), clamped to ±maxNorm.
 */
export function quantElement(x: number, fmt: MxElementFormat): number {
  const m = 2 ** (fmt.mbits - 2);
  let scale = m; // multiplier into the integer grid
  if (fmt.ebits !== 0) {
    const minExp = -(2 ** (fmt.ebits - 1)) + 2;
    const pe = Math.max(Math.floor(log2f(Math.abs(x) + (x === 0 ? 1 : 0))), minExp);
    scale = m / 2 ** pe;
  }
  const t = f32(x * scale);
  const a = Math.abs(t);
  const tie = f32(a - 0.5) % 2 === 0 ? 1 : 0;
  const r = Math.sign(t) * (Math.floor(f32(a + 0.5)) - tie);
  const back = f32(r / scale);
  return Math.min(Math.max(back, -fmt.maxNorm), fmt.maxNorm);
}

/** Options of {@link mxQuantize}. */
export interface MxOptions {
  /** RCEIL: shared exponent ceil(log2(max / maxNorm)) instead of floor(log2(max)) − emax. */
  rceil?: boolean;
  /** SignRound's rounding offsets, added after the division by the scale (`[n·k]`). */
  v?: Float32Array;
  /** Per-group multiplier of the group maximum (`[groups]`; SignRound's max_scale). */
  maxScale?: Float32Array;
}

/**
 * MX fake quantization of `w` `[n, k]` in groups of `groupSize` along rows (quant_mx / quant_mx_rceil):
 * returns the dequantized weights and each group's shared exponent (the E8M0 scale is 2^exp).
 * `k` must be a multiple of the group size (auto-round pads; no checkpoint Linear needs it).
 */
export function mxQuantize(
  w: Float32Array,
  n: number,
  k: number,
  groupSize: number,
  fmt: MxElementFormat,
  opts: MxOptions = {},
): { values: Float32Array; sharedExp: Float32Array } {
  if (k % groupSize !== 0) throw new RangeError(`k ${k} is not a multiple of the group size ${groupSize}`);
  const groups = (n * k) / groupSize;
  const values = new Float32Array(n * k), sharedExp = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    const at = g * groupSize;
    let max = 0;
    for (let i = 0; i < groupSize; i++) max = Math.max(max, Math.abs(w[at + i]));
    if (opts.maxScale) max = f32(max * opts.maxScale[g]);
    // A zero group takes log2 := 1 (torch.where(max_val == 0, 1, …)) in both rules.
    let e = opts.rceil
      ? (max === 0 ? 1 : Math.ceil(log2f(f32(max / fmt.maxNorm))))
      : Math.floor(max === 0 ? 1 : log2f(max)) - fmt.emax;
    e = Math.min(Math.max(e, -127), 127);
    sharedExp[g] = e;
    const scale = 2 ** e;
    for (let i = 0; i < groupSize; i++) {
      let t = f32(w[at + i] / scale);
      if (opts.v) t = f32(t + opts.v[at + i]);
      t = Math.min(Math.max(t, -fmt.maxNorm), fmt.maxNorm);
      values[at + i] = f32(quantElement(t, fmt) * scale);
    }
  }
  return { values, sharedExp };
}

// ---- FP8 E4M3 (float8_e4m3fn) and E2M1 -------------------------------------------------------------

/** Largest finite float8_e4m3fn. */
export const E4M3_MAX = 448;

/**
 * The float8_e4m3fn value nearest `x` (ties to even mantissa), as torch's `.to(torch.float8_e4m3fn)`
 * rounds: 3 mantissa bits, exponent bias 7, subnormals below 2^−6 in steps of 2^−9. Magnitudes above
 * 448 are not representable (callers clamp first, as auto-round does).
 */
export function roundE4M3(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 rounded up onto an integer just below a power of two
  e = Math.max(e, -6); // subnormals share exponent −6
  const step = 2 ** (e - 3);
  const q = a / step;
  let r = Math.round(q);
  if (Math.abs(q - Math.trunc(q) - 0.5) === 0 && r % 2 !== 0) r -= 1; // exact tie: even
  return Math.sign(x) * r * step;
}

/**
 * nvfp.py cast_to_fp4 (vLLM's reference): |x| < 2 → round(2|x|)/2, < 4 → round(|x|), else
 * 2·round(|x|/2), each `round` to nearest even as torch.round; clamped to ±6.
 */
export function castToFp4(x: number): number {
  const a = Math.abs(x);
  const rne = (v: number) => {
    const r = Math.round(v);
    return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  };
  const q = a < 2 ? rne(2 * a) / 2 : a < 4 ? rne(a) : 2 * rne(a / 2);
  return Math.sign(x) * Math.min(q, 6);
}

/** Options of {@link nvfp4Quantize}. */
export interface NvOptions {
  /** The per-tensor global scale; default 448·6 / max|w| (calculate_gparam). */
  globalScale?: number;
  /** SignRound's rounding offsets, added to the scaled values (`[n·k]`). */
  v?: Float32Array;
  /** Per-group multiplier of the group maximum (`[groups]`). */
  maxScale?: Float32Array;
}

/**
 * NVFP4 fake quantization (nv_fp4 / ref_nvfp4_quant) of `w` `[n, k]` in groups of 16: per group the
 * scale s = E4M3(clamp(gs · max/6, ±448)), elements cast_to_fp4(clamp(w / (s/gs) + v, ±6)) · (s/gs).
 * Returns the dequantized values, the E4M3 group scales and the global scale.
 */
export function nvfp4Quantize(
  w: Float32Array,
  n: number,
  k: number,
  opts: NvOptions = {},
): { values: Float32Array; scales: Float32Array; globalScale: number } {
  const G = 16;
  if (k % G !== 0) throw new RangeError(`k ${k} is not a multiple of 16`);
  let gs = opts.globalScale;
  if (gs === undefined) {
    let amax = 0;
    for (let i = 0; i < w.length; i++) amax = Math.max(amax, Math.abs(w[i]));
    gs = amax === 0 ? 0 : f32(f32(E4M3_MAX * 6) * f32(1 / amax));
  }
  const recip = (x: number) => (x === 0 ? 0 : f32(1 / x));
  const groups = (n * k) / G;
  const values = new Float32Array(n * k), scales = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    const at = g * G;
    let max = 0;
    for (let i = 0; i < G; i++) max = Math.max(max, Math.abs(w[at + i]));
    if (opts.maxScale) max = f32(max * opts.maxScale[g]);
    let s = f32(gs * f32(max * recip(6)));
    s = roundE4M3(Math.min(Math.max(s, -E4M3_MAX), E4M3_MAX));
    scales[g] = s;
    const out = recip(f32(s * recip(gs))); // output_scale
    for (let i = 0; i < G; i++) {
      let t = f32(w[at + i] * out);
      if (opts.v) t = f32(t + opts.v[at + i]);
      t = Math.min(Math.max(t, -6), 6);
      values[at + i] = f32(castToFp4(t) * recip(out));
    }
  }
  return { values, scales, globalScale: gs };
}
