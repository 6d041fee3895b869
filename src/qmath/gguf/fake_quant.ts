/**
 * Step 2 of quantize.ts: W̃, the quantize-dequantize result of searched parameters, as AutoRound's
 * `qdq_result` of each GGUF quantizer computes it (auto_round/data_type/int.py, gguf.py; v0.15), in
 * float32 torch order (torch_f32.ts). Works on any run of whole groups. `torch.round` is
 * {@link rne}; the clamps are written as comparisons with the sign of zero kept as `torch.clamp`
 * (Math.min/Math.max) leaves it.
 */
import { type GgufParams, type QuantGgmlType, TYPE_QUANT } from "./params.ts";
import { fr, recip, rne } from "./torch_f32.ts";

/**
 * W̃ of the `len` weights `w` (whole groups) under `p` into `out`, with an optional rounding offset
 * `v` (SignRound's V, same layout as w).
 */
export function fakeQuantInto(
  type: QuantGgmlType,
  w: Float32Array,
  len: number,
  p: GgufParams,
  out: Float32Array,
  v?: Float32Array,
): void {
  const { bits, group: gs } = TYPE_QUANT[type];
  const G = len / gs;
  switch (p.kind) {
    case "sym": {
      // int.py: round(w / scale + v)
      const lo = -(2 ** (bits - 1)), hi = -lo - 1;
      for (let g = 0, i = 0; g < G; g++) {
        const s = p.scale[g];
        for (const end = i + gs; i < end; i++) {
          const q = rne(fr(fr(w[i] / s) + (v ? v[i] : 0)));
          out[i] = fr((q < lo ? lo : q > hi ? hi : q) * s);
        }
      }
      return;
    }
    case "ksym": {
      // gguf.py quant_tensor_gguf_sym_dq: round(w · get_reciprocal(scale) + v)
      const lo = -(2 ** (bits - 1)), hi = -lo - 1;
      for (let g = 0, i = 0; g < G; g++) {
        const s = p.scale[g], is = recip(s);
        for (const end = i + gs; i < end; i++) {
          const q = rne(fr(fr(w[i] * is) + (v ? v[i] : 0)));
          out[i] = fr((q < lo ? lo : q > hi ? hi : q) * s);
        }
      }
      return;
    }
    case "asym": {
      // quant_tensor_asym_float_zp_rtn: ((round(w · get_reciprocal(scale)) + zp).clamp − zp) · scale
      const maxq = 2 ** bits - 1;
      for (let g = 0, i = 0; g < G; g++) {
        const s = p.scale[g], z = p.zp[g], is = recip(s);
        for (const end = i + gs; i < end; i++) {
          const q = fr(rne(fr(fr(w[i] * is) + (v ? v[i] : 0))) + z);
          out[i] = fr(fr((q <= 0 ? 0 : q > maxq ? maxq : q) - z) * s);
        }
      }
      return;
    }
    case "kasym": {
      const maxq = 2 ** bits - 1;
      for (let g = 0, i = 0; g < G; g++) {
        const s = p.scale[g], m = p.wmin[g], is = recip(s);
        for (const end = i + gs; i < end; i++) {
          const q = rne(fr(fr(fr(w[i] + m) * is) + (v ? v[i] : 0)));
          out[i] = fr(fr((q <= 0 ? 0 : q > maxq ? maxq : q) * s) - m);
        }
      }
      return;
    }
  }
}
