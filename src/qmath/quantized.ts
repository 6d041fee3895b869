/**
 * What a quantized weight is, as data every layer above shares: the integer scheme of a Linear, its
 * integer codes, scales and zero points, and their dequantization W̃ = scale·(code − zero). The
 * backends produce {@link QuantizedWeights}, the pipeline wraps them into {@link QuantizedLinear}s,
 * and the formats (src/formats/) pack them into their tensors and unpack them again.
 */

/**
 * The quantization scheme of a layer: integer weights (W2…W8A16: `dataType` "int", no `act`), or one of
 * auto-round's float / activation-quantized presets ({@link FloatScheme}: MX, NV, FP8, INT8_W8A8).
 */
export interface QuantScheme {
  bits: number;
  /** Group size: positive, −1 for one group per output row, 0 for one per tensor (FP8 only). */
  groupSize: number;
  sym: boolean;
  dataType: "int" | FloatWeightDataType;
  /** Activation quantizer of the layer's input; absent for weight-only schemes (act_bits 16). */
  act?: ActQuant;
}

/**
 * True for the schemes the integer quantizer runs (int weights, no activation quantization); the
 * others are {@link FloatScheme}s.
 */
export function isIntWeightOnly(s: QuantScheme): boolean {
  return s.dataType === "int" && s.act === undefined;
}

/** Integer codes, scales and zero points of a quantized Linear, on the host. */
export interface QuantizedWeights {
  /** Codes q + zp in [0, 2^bits − 1], `[N, K]` row-major. */
  codes: Uint8Array;
  /** Scales `[N, G]` (already rounded to the scale dtype). */
  scales: Float32Array;
  /** Zero points `[N, G]` (2^(bits−1) for symmetric schemes). */
  zeros: Int32Array;
}

/** One quantized Linear as the exporters and formats see it. */
export interface QuantizedLinear {
  /** Layer name without `.weight`, e.g. `model.layers.0.self_attn.q_proj`. */
  name: string;
  /** Output features N and input features K. */
  n: number;
  k: number;
  bits: number;
  /** Group size as configured (-1 allowed); the effective group is min(g, K). */
  groupSize: number;
  sym: boolean;
  q: QuantizedWeights;
  /** Bias values when the layer has one. */
  bias?: Float32Array;
}

/** W̃ = scale · (code − zero) of a packed Linear, `[N, K]`. */
export function dequantizeLinear(l: QuantizedLinear): Float32Array {
  const g = l.groupSize <= 0 || l.groupSize > l.k ? l.k : l.groupSize;
  const G = Math.ceil(l.k / g);
  const w = new Float32Array(l.n * l.k);
  for (let r = 0; r < l.n; r++) {
    for (let c = 0; c < l.k; c++) {
      const gi = r * G + Math.floor(c / g);
      w[r * l.k + c] = l.q.scales[gi] * (l.q.codes[r * l.k + c] - l.q.zeros[gi]);
    }
  }
  return w;
}

// ---------------------------------------------------------------------------------------------
// Floating-point and activation-quantized schemes (issue 17; spec/SCHEMES.md). The integer path
// above is unchanged; these types describe the rest of auto-round's presets.

/** Weight data types of auto-round's presets besides plain int (SCHEMES.md § 1.2). */
export type FloatWeightDataType = "mx_fp" | "mx_int" | "nv_fp" | "fp";

/**
 * Activation quantizer of a scheme (SCHEMES.md § 1.3, § 8): applied to the input of every quantized
 * Linear, in the tuning forward and at inference. `groupSize` 0 = one scale per tensor, −1 = one per
 * row (token), n = groups of n along the last dim.
 */
export interface ActQuant {
  bits: number;
  groupSize: number;
  sym: boolean;
  /**
   * `mx_fp` (floor exponent), `mx_fp_rceil`, `mx_int`, `nv_fp` (auto-round's nv_fp4_with_static_gs:
   * E4M3 scales per 16 with a calibrated global scale), `fp` (FP8 E4M3), `int` (int_sym).
   */
  dataType: "mx_fp" | "mx_fp_rceil" | "mx_int" | "nv_fp" | "fp" | "int";
  /** false: one calibrated (static) scale; true: scales from each input. */
  dynamic: boolean;
}

/**
 * A float (or activation-quantized) weight scheme: auto-round's MXFP*, MXINT4, NVFP4, FP8_*, INT8_W8A8.
 * `groupSize`: MX 32, NV 16, FP8 0 (tensor) or −1 (channel); INT8 −1.
 */
export interface FloatScheme {
  bits: number;
  groupSize: number;
  sym: true;
  dataType: FloatWeightDataType | "int";
  /** Absent for weight-only schemes (act_bits 16). */
  act?: ActQuant;
}

/**
 * A Linear quantized with a {@link FloatScheme}, on the host, as the exporters see it. Values are
 * exact: W̃ = element · scale per group, where the scale is
 * - `mx_fp`/`mx_int`: 2^scales[g] (scales hold the shared exponents, integers in [−127, 127]);
 * - `nv_fp`: scales[g] / globalScale (scales hold the E4M3 group scales s8, globalScale gs is the
 *   divisor of SCHEMES.md § 5.1);
 * - `fp`: scales[g] (float32 FP8 scale; per tensor: one group, per channel: one per row);
 * - `int` (INT8_W8A8): scales[g] (float16 value, may be negative, SCHEMES.md § 7).
 */
export interface FloatQuantizedLinear {
  name: string;
  n: number;
  k: number;
  scheme: FloatScheme;
  /** Element values on the format's grid, `[N, K]` (E2M1 ±{0..6}, E4M3, E0M4, or int8 codes as floats); −0 kept. */
  elements: Float32Array;
  /** Per-group scales, `[N·G]` row-major (G = groups per row; 1 per tensor for group 0). */
  scales: Float32Array;
  /** NVFP4 weight global scale (a divisor). */
  globalScale?: number;
  /** Static activation parameters: FP8 `input_scale`, NVFP4 `input_global_scale`. */
  inputScale?: number;
  inputGlobalScale?: number;
  bias?: Float32Array;
}

/** Groups per row of a float scheme on a `[n, k]` weight: 1 per tensor (reported as 1 row group). */
export function floatGroups(s: FloatScheme, n: number, k: number): { perRow: number; total: number } {
  if (s.groupSize === 0) return { perRow: 0, total: 1 };
  const g = s.groupSize < 0 || s.groupSize > k ? k : s.groupSize;
  const perRow = Math.ceil(k / g);
  return { perRow, total: n * perRow };
}

/** W̃ of a {@link FloatQuantizedLinear}, `[N, K]` (the value a serving engine dequantizes to). */
export function dequantizeFloatLinear(l: FloatQuantizedLinear): Float32Array {
  const { n, k, scheme: s } = l;
  const w = new Float32Array(n * k);
  const g = s.groupSize <= 0 || s.groupSize > k ? k : s.groupSize;
  const perRow = Math.ceil(k / g);
  for (let r = 0; r < n; r++) {
    for (let c = 0; c < k; c++) {
      const gi = s.groupSize === 0 ? 0 : r * perRow + Math.floor(c / g);
      const sc = l.scales[gi];
      const scale = s.dataType === "mx_fp" || s.dataType === "mx_int"
        ? 2 ** sc
        : s.dataType === "nv_fp"
        ? (l.globalScale ? sc / l.globalScale : 0)
        : sc;
      w[r * k + c] = Math.fround(l.elements[r * k + c] * scale);
    }
  }
  return w;
}
