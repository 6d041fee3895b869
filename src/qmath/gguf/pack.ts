/**
 * Step 3 of quantize.ts: the ggml blocks of a tensor, as auto_round/export/export_to_gguf/packing.py
 * (v0.15) builds them — {@link packParams} from W̃ and the searched parameters (the "scale is not
 * None" branches), {@link packWithoutScales} for the 32-wide types quantized only at export (llama.cpp's
 * `quantize_row_*_ref` rules as packing.py ports them). Arithmetic is float32 in torch's order
 * (torch_f32.ts) except where packing.py itself works in float64 (Q4_0/Q5_0 codes).
 *
 * One deliberate difference: packing.py's q5_k_quant_block ORs the even sub-block's 5-bit code into
 * the low nibble unmasked (`all_L[:, ::2] | (all_L[:, 1::2] << 4)`), which corrupts bit 0 of the odd
 * sub-block's code whenever the even code is ≥ 16; the bytes here are masked as llama.cpp's
 * quantize_row_q5_K_ref writes them (qmath/gguf/blocks.ts).
 */
import { allocBlocks, type GgmlBlocks } from "./blocks.ts";
import { GGML_TYPES } from "./types.ts";
import type { GgufParams, QuantGgmlType } from "./params.ts";
import { fr, recip, RNE } from "./torch_f32.ts";

/** Clamp of an integer code (NaN stays NaN, and an Int16Array stores it as 0, as torch's int cast does). */
function clampCode(q: number, lo: number, hi: number): number {
  return q < lo ? lo : q > hi ? hi : q;
}

/**
 * Step 3: the ggml blocks of the `len` weights of W̃ `wq` (whole blocks) under `p` (packing.py with
 * stored scales) into `b`: codes re-derived from W̃; d, m and dmin rounded to fp16 by the packer.
 * The codes are stored in Int16Arrays, so the sign of a zero code never matters and `torch.round`
 * can be the branch-free {@link RNE} sum.
 */
export function packParamsInto(
  type: QuantGgmlType,
  wq: Float32Array,
  len: number,
  p: GgufParams,
  b: GgmlBlocks,
): void {
  const nb = len / GGML_TYPES[type].blockSize;
  const f16 = Math.f16round, q = b.q;
  switch (type) {
    case "Q4_0":
    case "Q5_0": {
      // trunc(x·id + 8.5) (Q4_0) or + 16.5 (Q5_0) in float64, clamped.
      const sc = (p as Extract<GgufParams, { kind: "sym" }>).scale;
      const half = type === "Q4_0" ? 8.5 : 16.5, top = type === "Q4_0" ? 15 : 31;
      for (let i = 0, at = 0; i < nb; i++) {
        const d = sc[i], id = fr(recip(d));
        b.d[i] = d;
        for (const end = at + 32; at < end; at++) q[at] = clampCode(Math.trunc(wq[at] * id + half), 0, top);
      }
      break;
    }
    case "Q8_0": {
      // torch_roundf: round half away from zero; clamp to int8.
      const sc = (p as Extract<GgufParams, { kind: "sym" }>).scale;
      for (let i = 0, at = 0; i < nb; i++) {
        const d = sc[i], id = fr(recip(d));
        b.d[i] = d;
        for (const end = at + 32; at < end; at++) {
          const t = fr(wq[at] * id);
          q[at] = clampCode(Math.trunc(t < 0 ? t - 0.5 : t + 0.5), -128, 127);
        }
      }
      break;
    }
    case "Q4_1":
    case "Q5_1": {
      const { scale, zp } = p as Extract<GgufParams, { kind: "asym" }>;
      const top = type === "Q4_1" ? 15 : 31;
      for (let i = 0, at = 0; i < nb; i++) {
        const d = scale[i], m = fr(-fr(zp[i] * d)), id = fr(recip(d));
        b.d[i] = d;
        b.m![i] = m;
        for (const end = at + 32; at < end; at++) {
          q[at] = clampCode(Math.trunc(fr(fr(fr(wq[at] - m) * id) + 0.5)), 0, top);
        }
      }
      break;
    }
    case "Q2_K": {
      const { scale, wmin, dScale, dWmin } = p as Extract<GgufParams, { kind: "kasym" }>;
      for (let i = 0; i < nb; i++) {
        b.d[i] = dScale[i];
        b.m![i] = dWmin[i];
        const idd = recip(dScale[i]), idm = recip(dWmin[i]);
        for (let g = i * 16; g < i * 16 + 16; g++) {
          b.sc![g] = clampCode(fr(scale[g] * idd) + RNE - RNE, 0, 15);
          b.mn![g] = clampCode(fr(wmin[g] * idm) + RNE - RNE, 0, 15);
          const s = scale[g], m = wmin[g];
          for (let at = g * 16; at < g * 16 + 16; at++) {
            // (W̃ + min) / scale with the unrounded float32 scale and min (a 0 scale gives code 0).
            const a = fr(fr(wq[at] + m) / s);
            q[at] = Number.isFinite(a) ? clampCode(a + RNE - RNE, 0, 3) : 0;
          }
        }
      }
      break;
    }
    case "Q4_K":
    case "Q5_K": {
      const { scale, wmin, dScale, dWmin } = p as Extract<GgufParams, { kind: "kasym" }>;
      const top = type === "Q4_K" ? 15 : 31;
      for (let i = 0; i < nb; i++) {
        const idd = recip(dScale[i]), idm = recip(dWmin[i]);
        b.d[i] = dScale[i];
        b.m![i] = dWmin[i];
        const d16 = f16(dScale[i]), m16 = f16(dWmin[i]);
        for (let g = i * 8; g < i * 8 + 8; g++) {
          const ls = clampCode(fr(scale[g] * idd) + RNE - RNE, 0, 63);
          const lm = clampCode(fr(wmin[g] * idm) + RNE - RNE, 0, 63);
          b.sc![g] = ls;
          b.mn![g] = lm;
          let dt = fr(d16 * ls);
          const mt = fr(m16 * lm);
          if (dt === 0) dt = 1;
          const idt = recip(dt);
          for (let at = g * 32; at < g * 32 + 32; at++) {
            q[at] = clampCode(fr(fr(wq[at] + mt) * idt) + RNE - RNE, 0, top);
          }
        }
      }
      break;
    }
    case "Q3_K": {
      const { scale, dScale } = p as Extract<GgufParams, { kind: "ksym" }>;
      for (let i = 0; i < nb; i++) {
        b.d[i] = dScale[i];
        const idd = recip(dScale[i]);
        for (let g = i * 16; g < i * 16 + 16; g++) {
          // Codes from the float32 sub-block scale; the 6-bit scale offset by 32 (packing.py q3_k).
          b.sc![g] = clampCode(fr(scale[g] * idd) + RNE - RNE, -32, 31);
          const is = recip(scale[g]);
          for (let at = g * 16; at < g * 16 + 16; at++) {
            q[at] = clampCode(fr(wq[at] * is) + RNE - RNE, -4, 3) + 4;
          }
        }
      }
      break;
    }
    case "Q6_K": {
      const { scale, dScale } = p as Extract<GgufParams, { kind: "ksym" }>;
      for (let i = 0; i < nb; i++) {
        b.d[i] = dScale[i];
        const idd = recip(dScale[i]), d16 = f16(dScale[i]);
        for (let g = i * 16; g < i * 16 + 16; g++) {
          // q6_k: int8 scale (only clamped above), codes against the fp16 d times that scale.
          const r = fr(scale[g] * idd) + RNE - RNE, ls = r > 127 ? 127 : r;
          b.sc![g] = ls;
          let dt = fr(d16 * ls); // the unclamped value, not the int16 stored
          if (dt === 0) dt = 1;
          const idt = recip(dt);
          for (let at = g * 16; at < g * 16 + 16; at++) {
            q[at] = clampCode(fr(wq[at] * idt) + 32 + RNE - RNE, 0, 63);
          }
        }
      }
      break;
    }
  }
}

/**
 * The 32-wide types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) of `w` `[n, k]` without searched scales:
 * packing.py's branches for tensors quantized only at export (llama.cpp's reference rules).
 */
export function packWithoutScales(type: QuantGgmlType, w: Float32Array, n: number, k: number): GgmlBlocks {
  const bs = 32, nb = (n * k) / bs;
  const b = allocBlocks(type, nb);
  for (let i = 0; i < nb; i++) {
    const x = w.subarray(i * bs, (i + 1) * bs);
    let amax = 0, max = 0, lo = Infinity, hi = -Infinity;
    for (const v of x) {
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    switch (type) {
      case "Q4_0":
      case "Q5_0": {
        const d = fr(max / (type === "Q4_0" ? -8 : -16)), id = recip(d);
        const half = type === "Q4_0" ? 8.5 : 16.5, top = type === "Q4_0" ? 15 : 31;
        b.d[i] = d;
        for (let j = 0; j < bs; j++) {
          b.q[i * bs + j] = Math.min(Math.max(Math.trunc(x[j] * id + half), 0), top);
        }
        break;
      }
      case "Q4_1":
      case "Q5_1": {
        const top = type === "Q4_1" ? 15 : 31;
        const d = fr(fr(hi - lo) / top), id = recip(d);
        b.d[i] = d;
        b.m![i] = fr(lo);
        for (let j = 0; j < bs; j++) {
          b.q[i * bs + j] = Math.min(Math.max(Math.trunc(fr(fr(fr(x[j] - lo) * id) + 0.5)), 0), top);
        }
        break;
      }
      case "Q8_0": {
        const d = fr(amax / 127), id = recip(d);
        b.d[i] = d;
        for (let j = 0; j < bs; j++) {
          const t = fr(x[j] * id);
          b.q[i * bs + j] = Math.min(Math.max(Math.sign(t) * Math.floor(Math.abs(t) + 0.5), -128), 127);
        }
        break;
      }
    }
  }
  return b;
}
