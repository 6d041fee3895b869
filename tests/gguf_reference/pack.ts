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
 * quantize_row_q5_K_ref writes them (io/gguf_blocks.ts).
 */
import { allocBlocks, type GgmlBlocks } from "../../src/qmath/gguf/blocks.ts";
import { GGML_TYPES } from "../../src/qmath/gguf/types.ts";
import { roundHalfEven as rnd } from "../../src/tensor/dtype.ts";
import type { GgufParams, QuantGgmlType } from "./quantize.ts";
import { fr, recip } from "./torch_f32.ts";

/**
 * Step 3: the ggml blocks of W̃ `wq` under `p` (packing.py with stored scales): codes re-derived from
 * W̃; d, m and dmin rounded to fp16 by the packer.
 */
export function packParams(
  type: QuantGgmlType,
  wq: Float32Array,
  n: number,
  k: number,
  p: GgufParams,
): GgmlBlocks {
  const bs = GGML_TYPES[type].blockSize;
  const nb = (n * k) / bs;
  const b = allocBlocks(type, nb);
  const f16 = Math.f16round;
  switch (type) {
    case "Q4_0":
    case "Q5_0":
    case "Q8_0": {
      const sc = (p as Extract<GgufParams, { kind: "sym" }>).scale;
      for (let i = 0; i < nb; i++) {
        const d = sc[i], id = fr(recip(d));
        b.d[i] = d;
        for (let j = 0; j < bs; j++) {
          const x = wq[i * bs + j];
          if (type === "Q8_0") {
            // torch_roundf: round half away from zero; clamp to int8.
            const t = fr(x * id);
            b.q[i * bs + j] = Math.min(Math.max(Math.sign(t) * Math.floor(Math.abs(t) + 0.5), -128), 127);
          } else {
            // trunc(x·id + 8.5) (Q4_0) or + 16.5 (Q5_0) in float64, clamped.
            const half = type === "Q4_0" ? 8.5 : 16.5, top = type === "Q4_0" ? 15 : 31;
            b.q[i * bs + j] = Math.min(Math.max(Math.trunc(x * id + half), 0), top);
          }
        }
      }
      break;
    }
    case "Q4_1":
    case "Q5_1": {
      const { scale, zp } = p as Extract<GgufParams, { kind: "asym" }>;
      const top = type === "Q4_1" ? 15 : 31;
      for (let i = 0; i < nb; i++) {
        const d = scale[i], m = fr(-fr(zp[i] * d)), id = fr(recip(d));
        b.d[i] = d;
        b.m![i] = m;
        for (let j = 0; j < bs; j++) {
          const t = fr(fr(fr(wq[i * bs + j] - m) * id) + 0.5);
          b.q[i * bs + j] = Math.min(Math.max(Math.trunc(t), 0), top);
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
        for (let s = 0; s < 16; s++) {
          const g = i * 16 + s;
          b.sc![g] = Math.min(Math.max(rnd(fr(scale[g] * idd)), 0), 15);
          b.mn![g] = Math.min(Math.max(rnd(fr(wmin[g] * idm)), 0), 15);
          for (let j = 0; j < 16; j++) {
            const at = g * 16 + j;
            // (W̃ + min) / scale with the unrounded float32 scale and min (a 0 scale gives code 0).
            const q = rnd(fr(fr(wq[at] + wmin[g]) / scale[g]));
            b.q[at] = Number.isFinite(q) ? Math.min(Math.max(q, 0), 3) : 0;
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
        for (let s = 0; s < 8; s++) {
          const g = i * 8 + s;
          const ls = Math.min(Math.max(rnd(fr(scale[g] * idd)), 0), 63);
          const lm = Math.min(Math.max(rnd(fr(wmin[g] * idm)), 0), 63);
          b.sc![g] = ls;
          b.mn![g] = lm;
          let dt = fr(d16 * ls);
          const mt = fr(m16 * lm);
          if (dt === 0) dt = 1;
          const idt = recip(dt);
          for (let j = 0; j < 32; j++) {
            const at = g * 32 + j;
            b.q[at] = Math.min(Math.max(rnd(fr(fr(wq[at] + mt) * idt)), 0), top);
          }
        }
      }
      break;
    }
    case "Q3_K":
    case "Q6_K": {
      const { scale, dScale } = p as Extract<GgufParams, { kind: "ksym" }>;
      for (let i = 0; i < nb; i++) {
        b.d[i] = dScale[i];
        const idd = recip(dScale[i]);
        const d16 = f16(dScale[i]);
        for (let s = 0; s < 16; s++) {
          const g = i * 16 + s;
          if (type === "Q3_K") {
            // Codes from the float32 sub-block scale; the 6-bit scale offset by 32 (packing.py q3_k).
            b.sc![g] = Math.min(Math.max(rnd(fr(scale[g] * idd)), -32), 31);
            const is = recip(scale[g]);
            for (let j = 0; j < 16; j++) {
              const at = g * 16 + j;
              b.q[at] = Math.min(Math.max(rnd(fr(wq[at] * is)), -4), 3) + 4;
            }
          } else {
            // q6_k: int8 scale (only clamped above), codes against the fp16 d times that scale.
            const ls = Math.min(rnd(fr(scale[g] * idd)), 127);
            b.sc![g] = ls;
            let dt = fr(d16 * ls);
            if (dt === 0) dt = 1;
            const idt = recip(dt);
            for (let j = 0; j < 16; j++) {
              const at = g * 16 + j;
              b.q[at] = Math.min(Math.max(rnd(fr(wq[at] * idt) + 32), 0), 63);
            }
          }
        }
      }
      break;
    }
  }
  return b;
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
