// The llama.cpp block bytes of a quantized tensor: W̃ from the searched parameters
// (src/qmath/gguf/quantize.ts fakeQuant), codes re-derived from W̃ (pack.ts packParams; with
// GG_EXPORT the raw weights and packWithoutScales' rules), laid out as qmath/gguf/blocks.ts packBlocks
// does. Host and device code (see gguf_math.cuh); the same algorithm as wgsl/gguf_pack.wgsl.
//
// Layout: `x(j)` reads weight j of the block; par the block's groups (3 floats each: final scale,
// wmin / zero point / export min, −), sup the block's (d, dmin). Each byte is computed on its own
// from the few codes and scales it holds.
#pragma once
#include "gguf_math.cuh"

struct GgBlock {
  int type, flags, gs;
  const float* par;
  const float* sup;
};

/** W̃ of element j (the raw weight with GG_EXPORT). */
template <class Src>
GG_FN float gg_wq(const Src& x, const GgBlock& b, int j) {
  const float v = x(j);
  if (b.flags & GG_EXPORT) return v;
  const int g = j / b.gs, bits = gg_bits(b.type);
  const float s = b.par[3 * g], nmax = (float)(1 << (bits - 1)), maxq = (float)((1 << bits) - 1);
  switch (b.type) {
    case 0: case 2: case 4:  // int.py: round(w / scale)
      return gmul(gclamp(rintf(gdiv(v, s)), -nmax, nmax - 1.0f), s);
    case 1: case 3: {
      const float z = b.par[3 * g + 1], q = gclamp(gadd(rintf(gmul(v, grecip(s))), z), 0.0f, maxq);
      return gmul(gsub(q, z), s);
    }
    case 5: case 7: case 8: {
      const float m = b.par[3 * g + 1];
      return gsub(gmul(gclamp(rintf(gmul(gadd(v, m), grecip(s))), 0.0f, maxq), s), m);
    }
    default:
      return gmul(gclamp(rintf(gmul(v, grecip(s))), -nmax, nmax - 1.0f), s);
  }
}

/** Quantized sub-block scale (mn false) or min (true) of group g, as packParams stores it. */
GG_FN float gg_sub_scale(const GgBlock& b, int g, bool mn) {
  const float l = rintf(gmul(b.par[3 * g + (mn ? 1 : 0)], grecip(b.sup[mn ? 1 : 0])));
  if (b.type == 5) return gclamp(l, 0.0f, 15.0f);
  if (b.type == 6) return gclamp(l, -32.0f, 31.0f);
  if (b.type == 9) return fminf(l, 127.0f);
  return gclamp(l, 0.0f, 63.0f);
}

/** The stored code of element j, in the type's unsigned byte pattern. */
template <class Src>
GG_FN uint32_t gg_code(const Src& x, const GgBlock& b, int j) {
  const float v = gg_wq(x, b, j);
  const int g = j / b.gs, bits = gg_bits(b.type);
  const float maxq = (float)((1 << bits) - 1), s = b.par[3 * g];
  switch (b.type) {
    case 0: case 2:  // trunc(x·id + 8.5) in float64 (16.5 for Q5_0), clamped
      return (uint32_t)gclamp(floor_prod_plus(v, grecip(s), (float)(1 << (bits - 1)) + 0.5f), 0.0f, maxq);
    case 4: {  // torch_roundf: half away from zero, in float64
      const float t = gmul(v, grecip(s));
      const float r = (t > 0.0f ? 1.0f : t < 0.0f ? -1.0f : 0.0f) * floor_sum(fabsf(t), 0.5f);
      return (uint32_t)(int)gclamp(r, -128.0f, 127.0f) & 0xffu;
    }
    case 1: case 3: {
      const float m = (b.flags & GG_EXPORT) ? b.par[3 * g + 1] : -gmul(b.par[3 * g + 1], s);
      return (uint32_t)gclamp(truncf(gadd(gmul(gsub(v, m), grecip(s)), 0.5f)), 0.0f, maxq);
    }
    case 5: {  // (W̃ + min) / scale; a 0 scale (or an overflow) gives code 0
      const float r = gdiv(gadd(v, b.par[3 * g + 1]), s);
      return s != 0.0f && gfinite(r) ? (uint32_t)gclamp(rintf(r), 0.0f, 3.0f) : 0u;
    }
    case 6:
      return (uint32_t)(gclamp(rintf(gmul(v, grecip(s))), -4.0f, 3.0f) + 4.0f);
    case 9: {
      float dt = gmul(f16round(b.sup[0]), gg_sub_scale(b, g, false));
      if (dt == 0.0f) dt = 1.0f;
      return (uint32_t)gclamp(round_sum(gmul(v, grecip(dt)), 32.0f), 0.0f, 63.0f);
    }
    default: {  // Q4_K, Q5_K: against the fp16 d and dmin times the 6-bit scale and min
      float dt = gmul(f16round(b.sup[0]), gg_sub_scale(b, g, false));
      const float mt = gmul(f16round(b.sup[1]), gg_sub_scale(b, g, true));
      if (dt == 0.0f) dt = 1.0f;
      return (uint32_t)gclamp(rintf(gmul(gadd(v, mt), grecip(dt))), 0.0f, maxq);
    }
  }
}

GG_FN uint32_t gg_f16_byte(float v, int i) { return (f16_bits(v) >> (8 * i)) & 0xffu; }

/** Four 2-bit codes per byte (Q2_K, Q3_K): L[l + 32·s] at bits 2s of byte c·32 + l. */
template <class Src>
GG_FN uint32_t gg_low2(const Src& x, const GgBlock& b, int at) {
  const int j = (at / 32) * 128 + at % 32;
  uint32_t v = 0;
  for (int s = 0; s < 4; s++) v |= (gg_code(x, b, j + 32 * s) & 3u) << (2 * s);
  return v;
}

/** The 12 scale/min bytes of Q4_K/Q5_K (quantize_row_q4_K_ref's packing). */
GG_FN uint32_t gg_scale_min_k4(const GgBlock& b, int p) {
  const auto q = [&](int g, bool mn) { return (uint32_t)gg_sub_scale(b, g, mn); };
  if (p < 4) return q(p, false) | ((q(p + 4, false) >> 4) << 6);
  if (p < 8) return q(p - 4, true) | ((q(p, true) >> 4) << 6);
  return (q(p - 4, false) & 0xfu) | ((q(p - 4, true) & 0xfu) << 4);
}

/** Byte o of the block. */
template <class Src>
GG_FN uint32_t gg_block_byte(const Src& x, const GgBlock& b, int o) {
  const int t = b.type;
  if (t <= 4) {
    if (o < 2) return gg_f16_byte(b.par[0], o);
    int p = 2;
    if (t == 1 || t == 3) {
      const float m = (b.flags & GG_EXPORT) ? b.par[1] : -gmul(b.par[1], b.par[0]);
      if (o < 4) return gg_f16_byte(m, o - 2);
      p = 4;
    }
    if (t == 4) return gg_code(x, b, o - 2);
    if (t == 2 || t == 3) {
      if (o < p + 4) {
        uint32_t v = 0;
        for (int i = 0; i < 8; i++) v |= ((gg_code(x, b, 8 * (o - p) + i) >> 4) & 1u) << i;
        return v;
      }
      p += 4;
    }
    return (gg_code(x, b, o - p) & 0xfu) | ((gg_code(x, b, o - p + 16) & 0xfu) << 4);
  }
  if (t == 5) {
    if (o < 16) return ((uint32_t)gg_sub_scale(b, o, false) & 0xfu) | (((uint32_t)gg_sub_scale(b, o, true) & 0xfu) << 4);
    if (o < 80) return gg_low2(x, b, o - 16);
    return gg_f16_byte(b.sup[o < 82 ? 0 : 1], (o - 80) & 1);
  }
  if (t == 6) {
    if (o < 32) {
      uint32_t v = 0;
      for (int s = 0; s < 8; s++) v |= gg_code(x, b, o + 32 * s) > 3u ? 1u << s : 0u;
      return v;
    }
    if (o < 96) return gg_low2(x, b, o - 32);
    if (o < 108) {
      const int s = o - 96;
      const auto l = [&](int g) { return (uint32_t)(gg_sub_scale(b, g, false) + 32.0f); };
      if (s < 8) return (l(s) & 0xfu) | ((l(s + 8) & 0xfu) << 4);
      uint32_t v = 0;
      for (int i = 0; i < 4; i++) v |= (l(s - 8 + 4 * i) >> 4) << (2 * i);
      return v;
    }
    return gg_f16_byte(b.sup[0], o - 108);
  }
  if (t == 9) {
    if (o < 128) {
      const int L = (o / 64) * 128, r = o % 64, a = L + r % 32 + (r >= 32 ? 32 : 0);
      return (gg_code(x, b, a) & 0xfu) | ((gg_code(x, b, a + 64) & 0xfu) << 4);
    }
    if (o < 192) {
      const int L = ((o - 128) / 32) * 128 + (o - 128) % 32;
      uint32_t v = 0;
      for (int s = 0; s < 4; s++) v |= (gg_code(x, b, L + 32 * s) >> 4) << (2 * s);
      return v;
    }
    if (o < 208) return (uint32_t)to_i16(gg_sub_scale(b, o - 192, false)) & 0xffu;
    return gg_f16_byte(b.sup[0], o - 208);
  }
  // Q4_K, Q5_K
  if (o < 4) return gg_f16_byte(b.sup[o / 2], o & 1);
  if (o < 16) return gg_scale_min_k4(b, o - 4);
  int qs = 16;
  if (t == 8) {
    if (o < 48) {
      const int l = o - 16;
      uint32_t v = 0;
      for (int c = 0; c < 4; c++) {
        v |= ((gg_code(x, b, c * 64 + l) >> 4) & 1u) << (2 * c);
        v |= ((gg_code(x, b, c * 64 + 32 + l) >> 4) & 1u) << (2 * c + 1);
      }
      return v;
    }
    qs = 48;
  }
  const int at = o - qs, j = (at / 32) * 64 + at % 32;
  return (gg_code(x, b, j) & 0xfu) | ((gg_code(x, b, j + 32) & 0xfu) << 4);
}
