/**
 * GGML block layouts: packing integer codes and quantized scales into the bytes llama.cpp reads,
 * unpacking them again, and dequantizing. Every layout below is the struct of
 * `ggml/src/ggml-common.h` filled the way `ggml/src/ggml-quants.c` `quantize_row_*_ref` fills it and
 * read the way `dequantize_row_*` reads it (llama.cpp); auto-round's `export_to_gguf/packing.py`
 * writes the same bytes.
 *
 * {@link GgmlBlocks} holds a block's integers (codes L in the type's unsigned range; K-quants' sub-block
 * scales and mins); `d` and `m`/`dmin` are f32 values rounded to fp16 when packed.
 */
import { dequantizeMxfp4 } from "./mxfp4.ts";
import { FormatError } from "../../errors.ts";
import { f16ToF32, f32ToF16 } from "../../tensor/dtype.ts";
import { GGML_TYPES, type GgmlTypeName, QK_K } from "./types.ts";

/** One tensor's blocks in integer form. `nb` blocks of `GGML_TYPES[type].blockSize` weights. */
export interface GgmlBlocks {
  type: GgmlTypeName;
  nb: number;
  /**
   * Code of every weight as stored: Q4_0 0..15 (value q − 8), Q4_1 0..15, Q5_0 0..31 (q − 16),
   * Q5_1 0..31, Q8_0 −128..127, Q2_K 0..3, Q3_K 0..7 (q − 4), Q4_K 0..15, Q5_K 0..31, Q6_K 0..63
   * (q − 32).
   */
  q: Int16Array;
  /** Per block: the (super-)block scale d. */
  d: Float32Array;
  /** Per block: the min m (Q4_1, Q5_1) or the super-block min scale dmin (Q2_K, Q4_K, Q5_K). */
  m?: Float32Array;
  /**
   * K-quants, per sub-block: quantized scale (Q2_K 0..15, Q3_K −32..31, Q4_K/Q5_K 0..63,
   * Q6_K −128..127).
   */
  sc?: Int16Array;
  /** Q2_K, Q4_K, Q5_K, per sub-block: quantized min (0..15 for Q2_K, 0..63 otherwise). */
  mn?: Int16Array;
}

/** Sub-blocks per super-block and their size, for the K-quants. */
export function subBlocks(type: GgmlTypeName): { count: number; size: number } {
  switch (type) {
    case "Q2_K":
    case "Q3_K":
    case "Q6_K":
      return { count: QK_K / 16, size: 16 };
    case "Q4_K":
    case "Q5_K":
      return { count: QK_K / 32, size: 32 };
    default:
      return { count: 1, size: GGML_TYPES[type].blockSize };
  }
}

/** An empty {@link GgmlBlocks} with the arrays a type needs. */
export function allocBlocks(type: GgmlTypeName, nb: number): GgmlBlocks {
  const bs = GGML_TYPES[type].blockSize;
  const b: GgmlBlocks = { type, nb, q: new Int16Array(nb * bs), d: new Float32Array(nb) };
  if (type === "Q4_1" || type === "Q5_1" || type === "Q2_K" || type === "Q4_K" || type === "Q5_K") {
    b.m = new Float32Array(nb);
  }
  if (type.endsWith("_K")) {
    const sub = subBlocks(type).count;
    b.sc = new Int16Array(nb * sub);
    if (type !== "Q3_K" && type !== "Q6_K") b.mn = new Int16Array(nb * sub);
  }
  return b;
}

const putF16 = (v: DataView, at: number, x: number) => v.setUint16(at, f32ToF16(x), true);
const getF16 = (v: DataView, at: number) => f16ToF32(v.getUint16(at, true));

/** 6-bit scale/min packing of Q4_K and Q5_K (quantize_row_q4_K_ref; get_scale_min_k4 reads it). */
function packScaleMinK4(out: Uint8Array, at: number, sc: Int16Array, mn: Int16Array, base: number): void {
  for (let j = 0; j < 8; j++) {
    const ls = sc[base + j], lm = mn[base + j];
    if (j < 4) {
      out[at + j] = ls;
      out[at + j + 4] = lm;
    } else {
      out[at + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      out[at + j - 4] |= (ls >> 4) << 6;
      out[at + j] |= (lm >> 4) << 6;
    }
  }
}

/** ggml-quants.c get_scale_min_k4. */
function scaleMinK4(j: number, q: Uint8Array, at: number): [number, number] {
  if (j < 4) return [q[at + j] & 63, q[at + j + 4] & 63];
  return [
    (q[at + j + 4] & 0xf) | ((q[at + j - 4] >> 6) << 4),
    (q[at + j + 4] >> 4) | ((q[at + j] >> 6) << 4),
  ];
}

/** Pack blocks into the bytes of the type (nb · typeSize), into `out` when given (it is zeroed first). */
export function packBlocks(b: GgmlBlocks, out?: Uint8Array): Uint8Array {
  const { blockSize: bs, typeSize: ts } = GGML_TYPES[b.type];
  if (out) {
    if (out.length !== b.nb * ts) {
      throw new FormatError(`packBlocks: ${out.length} bytes for ${b.nb} ${b.type} blocks`);
    }
    out.fill(0);
  } else out = new Uint8Array(b.nb * ts);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let i = 0; i < b.nb; i++) {
    const o = i * ts, q = b.q.subarray(i * bs, (i + 1) * bs);
    switch (b.type) {
      case "Q4_0":
      case "Q4_1": {
        let p = o;
        putF16(view, p, b.d[i]);
        p += 2;
        if (b.type === "Q4_1") {
          putF16(view, p, b.m![i]);
          p += 2;
        }
        for (let j = 0; j < 16; j++) out[p + j] = (q[j] & 0xf) | ((q[j + 16] & 0xf) << 4);
        break;
      }
      case "Q5_0":
      case "Q5_1": {
        let p = o;
        putF16(view, p, b.d[i]);
        p += 2;
        if (b.type === "Q5_1") {
          putF16(view, p, b.m![i]);
          p += 2;
        }
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          qh |= ((q[j] >> 4) & 1) << j;
          qh |= ((q[j + 16] >> 4) & 1) << (j + 16);
        }
        view.setUint32(p, qh >>> 0, true);
        p += 4;
        for (let j = 0; j < 16; j++) out[p + j] = (q[j] & 0xf) | ((q[j + 16] & 0xf) << 4);
        break;
      }
      case "Q8_0":
        putF16(view, o, b.d[i]);
        for (let j = 0; j < 32; j++) view.setInt8(o + 2 + j, q[j]);
        break;
      case "Q2_K": {
        const sc = b.sc!, mn = b.mn!;
        for (let j = 0; j < 16; j++) out[o + j] = (sc[i * 16 + j] & 0xf) | ((mn[i * 16 + j] & 0xf) << 4);
        packLow2(out, o + 16, q);
        putF16(view, o + 80, b.d[i]);
        putF16(view, o + 82, b.m![i]);
        break;
      }
      case "Q3_K": {
        // hmask: the high bit of the 1st 32 quants goes to bit 0, the next 32 to bit 1, ...
        for (let j = 0; j < QK_K; j++) if (q[j] > 3) out[o + (j % 32)] |= 1 << (j >> 5);
        const low = new Int16Array(QK_K);
        for (let j = 0; j < QK_K; j++) low[j] = q[j] & 3;
        packLow2(out, o + 32, low);
        const s = o + 96;
        for (let j = 0; j < 16; j++) {
          const l = b.sc![i * 16 + j] + 32;
          if (j < 8) out[s + j] = l & 0xf;
          else out[s + j - 8] |= (l & 0xf) << 4;
          out[s + 8 + (j % 4)] |= (l >> 4) << (2 * (j >> 2));
        }
        putF16(view, o + 108, b.d[i]);
        break;
      }
      case "Q4_K":
      case "Q5_K": {
        putF16(view, o, b.d[i]);
        putF16(view, o + 2, b.m![i]);
        packScaleMinK4(out, o + 4, b.sc!, b.mn!, i * 8);
        let qs = o + 16;
        if (b.type === "Q5_K") {
          const qh = o + 16;
          for (let c = 0; c < 4; c++) {
            for (let l = 0; l < 32; l++) {
              out[qh + l] |= ((q[c * 64 + l] >> 4) & 1) << (2 * c);
              out[qh + l] |= ((q[c * 64 + 32 + l] >> 4) & 1) << (2 * c + 1);
            }
          }
          qs = o + 48;
        }
        for (let c = 0; c < 4; c++) {
          for (let l = 0; l < 32; l++) {
            out[qs + c * 32 + l] = (q[c * 64 + l] & 0xf) | ((q[c * 64 + 32 + l] & 0xf) << 4);
          }
        }
        break;
      }
      case "Q6_K": {
        for (let c = 0; c < 2; c++) {
          const L = c * 128, ql = o + c * 64, qh = o + 128 + c * 32;
          for (let l = 0; l < 32; l++) {
            out[ql + l] = (q[L + l] & 0xf) | ((q[L + l + 64] & 0xf) << 4);
            out[ql + l + 32] = (q[L + l + 32] & 0xf) | ((q[L + l + 96] & 0xf) << 4);
            out[qh + l] = (q[L + l] >> 4) | ((q[L + l + 32] >> 4) << 2) | ((q[L + l + 64] >> 4) << 4) |
              ((q[L + l + 96] >> 4) << 6);
          }
        }
        for (let j = 0; j < 16; j++) view.setInt8(o + 192 + j, b.sc![i * 16 + j]);
        putF16(view, o + 208, b.d[i]);
        break;
      }
      default:
        throw new FormatError(`packBlocks: ${b.type} is not a block-quantized type`);
    }
  }
  return out;
}

/** 2-bit codes of one super-block, four per byte, as Q2_K/Q3_K store them (L[l + 32·s] at bits 2s). */
function packLow2(out: Uint8Array, at: number, q: ArrayLike<number>): void {
  for (let c = 0; c < 2; c++) {
    for (let l = 0; l < 32; l++) {
      const j = c * 128 + l;
      out[at + c * 32 + l] = (q[j] & 3) | ((q[j + 32] & 3) << 2) | ((q[j + 64] & 3) << 4) |
        ((q[j + 96] & 3) << 6);
    }
  }
}

function unpackLow2(src: Uint8Array, at: number, q: Int16Array, qo: number): void {
  for (let c = 0; c < 2; c++) {
    for (let l = 0; l < 32; l++) {
      const byte = src[at + c * 32 + l];
      for (let s = 0; s < 4; s++) q[qo + c * 128 + s * 32 + l] = (byte >> (2 * s)) & 3;
    }
  }
}

/** Inverse of {@link packBlocks}: `bytes` holds `nb` blocks of `type`. d and m are the fp16 values. */
export function unpackBlocks(type: GgmlTypeName, bytes: Uint8Array): GgmlBlocks {
  const { blockSize: bs, typeSize: ts } = GGML_TYPES[type];
  if (bs === 1 || bytes.byteLength % ts !== 0) {
    throw new FormatError(`cannot unpack ${bytes.byteLength} bytes as ${type} blocks`);
  }
  const nb = bytes.byteLength / ts;
  const b = allocBlocks(type, nb);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < nb; i++) {
    const o = i * ts, qo = i * bs;
    switch (type) {
      case "Q4_0":
      case "Q4_1":
      case "Q5_0":
      case "Q5_1": {
        let p = o;
        b.d[i] = getF16(view, p);
        p += 2;
        if (type === "Q4_1" || type === "Q5_1") {
          b.m![i] = getF16(view, p);
          p += 2;
        }
        let qh = 0;
        if (type === "Q5_0" || type === "Q5_1") {
          qh = view.getUint32(p, true);
          p += 4;
        }
        for (let j = 0; j < 16; j++) {
          b.q[qo + j] = (bytes[p + j] & 0xf) | (((qh >>> j) & 1) << 4);
          b.q[qo + j + 16] = (bytes[p + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
        }
        break;
      }
      case "Q8_0":
        b.d[i] = getF16(view, o);
        for (let j = 0; j < 32; j++) b.q[qo + j] = view.getInt8(o + 2 + j);
        break;
      case "Q2_K":
        for (let j = 0; j < 16; j++) {
          b.sc![i * 16 + j] = bytes[o + j] & 0xf;
          b.mn![i * 16 + j] = bytes[o + j] >> 4;
        }
        unpackLow2(bytes, o + 16, b.q, qo);
        b.d[i] = getF16(view, o + 80);
        b.m![i] = getF16(view, o + 82);
        break;
      case "Q3_K": {
        unpackLow2(bytes, o + 32, b.q, qo);
        for (let j = 0; j < QK_K; j++) if (bytes[o + (j % 32)] & (1 << (j >> 5))) b.q[qo + j] |= 4;
        const s = o + 96;
        for (let j = 0; j < 16; j++) {
          const lo = j < 8 ? bytes[s + j] & 0xf : bytes[s + j - 8] >> 4;
          const hi = (bytes[s + 8 + (j % 4)] >> (2 * (j >> 2))) & 3;
          b.sc![i * 16 + j] = (lo | (hi << 4)) - 32;
        }
        b.d[i] = getF16(view, o + 108);
        break;
      }
      case "Q4_K":
      case "Q5_K": {
        b.d[i] = getF16(view, o);
        b.m![i] = getF16(view, o + 2);
        for (let j = 0; j < 8; j++) [b.sc![i * 8 + j], b.mn![i * 8 + j]] = scaleMinK4(j, bytes, o + 4);
        const qs = type === "Q5_K" ? o + 48 : o + 16;
        for (let c = 0; c < 4; c++) {
          for (let l = 0; l < 32; l++) {
            const byte = bytes[qs + c * 32 + l];
            b.q[qo + c * 64 + l] = byte & 0xf;
            b.q[qo + c * 64 + 32 + l] = byte >> 4;
            if (type === "Q5_K") {
              const h = bytes[o + 16 + l];
              b.q[qo + c * 64 + l] |= ((h >> (2 * c)) & 1) << 4;
              b.q[qo + c * 64 + 32 + l] |= ((h >> (2 * c + 1)) & 1) << 4;
            }
          }
        }
        break;
      }
      case "Q6_K": {
        for (let c = 0; c < 2; c++) {
          const L = qo + c * 128, ql = o + c * 64, qh = o + 128 + c * 32;
          for (let l = 0; l < 32; l++) {
            const h = bytes[qh + l];
            b.q[L + l] = (bytes[ql + l] & 0xf) | (((h >> 0) & 3) << 4);
            b.q[L + l + 32] = (bytes[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4);
            b.q[L + l + 64] = (bytes[ql + l] >> 4) | (((h >> 4) & 3) << 4);
            b.q[L + l + 96] = (bytes[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4);
          }
        }
        for (let j = 0; j < 16; j++) b.sc![i * 16 + j] = view.getInt8(o + 192 + j);
        b.d[i] = getF16(view, o + 208);
        break;
      }
    }
  }
  return b;
}

const fr = Math.fround;

/**
 * Dequantize blocks as ggml's `dequantize_row_*` does (f32 products of the fp16 d/m values, the
 * integer scales and the codes). `b.d`/`b.m` are used as given: pass unpacked blocks (fp16 values)
 * to get exactly what llama.cpp stores.
 */
export function dequantizeBlocks(b: GgmlBlocks, out = new Float32Array(b.nb * GGML_TYPES[b.type].blockSize)) {
  const bs = GGML_TYPES[b.type].blockSize;
  const { count: nsub, size: ssz } = subBlocks(b.type);
  for (let i = 0; i < b.nb; i++) {
    const d = b.d[i], qo = i * bs;
    switch (b.type) {
      case "Q4_0":
      case "Q5_0":
      case "Q8_0": {
        const off = b.type === "Q4_0" ? 8 : b.type === "Q5_0" ? 16 : 0;
        for (let j = 0; j < bs; j++) out[qo + j] = fr((b.q[qo + j] - off) * d);
        break;
      }
      case "Q4_1":
      case "Q5_1": {
        const m = b.m![i];
        for (let j = 0; j < bs; j++) out[qo + j] = fr(fr(b.q[qo + j] * d) + m);
        break;
      }
      default: {
        for (let s = 0; s < nsub; s++) {
          const sc = b.sc![i * nsub + s];
          const dl = fr(d * sc);
          const ml = b.mn ? fr(b.m![i] * b.mn[i * nsub + s]) : 0;
          const off = b.type === "Q3_K" ? 4 : b.type === "Q6_K" ? 32 : 0;
          for (let j = 0; j < ssz; j++) {
            const k = qo + s * ssz + j;
            out[k] = fr(fr(dl * (b.q[k] - off)) - ml);
          }
        }
      }
    }
  }
  return out;
}

/**
 * Dequantize a tensor's raw bytes of any supported type (float types included) to f32.
 *
 * @example
 * ```ts
 * const w = dequantizeBytes("Q4_K", bytes); // Float32Array of nb·256 weights
 * ```
 */
export function dequantizeBytes(type: GgmlTypeName, bytes: Uint8Array): Float32Array {
  const aligned = new Uint8Array(bytes);
  switch (type) {
    case "F32":
      return new Float32Array(aligned.buffer, 0, aligned.byteLength / 4);
    case "F16":
      return Float32Array.from(new Float16Array(aligned.buffer, 0, aligned.byteLength / 2));
    case "BF16":
      return new Float32Array(
        Uint32Array.from(new Uint16Array(aligned.buffer, 0, aligned.byteLength / 2), (x) => x << 16).buffer,
      );
    case "MXFP4": // its own layout (mxfp4.ts): not a GgmlBlocks type
      return dequantizeMxfp4(aligned);
    default:
      return dequantizeBlocks(unpackBlocks(type, aligned));
  }
}
