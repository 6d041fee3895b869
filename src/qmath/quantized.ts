/**
 * What a quantized weight is, as data every layer above shares: the integer scheme of a Linear, its
 * integer codes, scales and zero points, and their dequantization W̃ = scale·(code − zero). The
 * backends produce {@link QuantizedWeights}, the pipeline wraps them into {@link QuantizedLinear}s,
 * and the formats (src/formats/) pack them into their tensors and unpack them again.
 */

/** Weight-only integer scheme of a layer (act_bits 16). */
export interface QuantScheme {
  bits: number;
  /** Group size: positive, or -1 for one group per output row. */
  groupSize: number;
  sym: boolean;
  dataType: "int";
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
