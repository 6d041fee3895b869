// float32 arithmetic as torch does it on a CPU, for the GGUF searches and packers (gguf_search.cuh,
// gguf_pack.cuh, launched from gguf.cu). Host and device code: tests/cuda_gguf_host_test.ts compiles
// the same functions for the CPU (ffi/cuda/gguf_host_check.cu) and checks them against the host
// reference where no GPU is present.
//
// Layout: none of its own. Exactness: the reference (src/qmath/gguf/torch_f32.ts) rounds every
// operation to float32 in torch's order. On the device every + − × ÷ √ is an explicit _rn intrinsic,
// which nvcc never contracts into an FMA; on the host, plain SSE float operations compiled with
// -ffp-contract=off. Row sums follow torch's CPU kernel (8 lanes, element i in lane i mod 8, lanes
// added left to right). Measured: see gguf.cu.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

#define GG_FN __host__ __device__ __forceinline__

/** Mode flags of the GGUF kernels (src/backend/cuda/gguf.ts). */
#define GG_IMATRIX 1
#define GG_HAS_ZERO 2
#define GG_OPT_RTN 4
#define GG_MAD 8
#define GG_EXPORT 16

GG_FN float gmul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
GG_FN float gadd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
GG_FN float gsub(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
GG_FN float gdiv(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
GG_FN float gsqrt(float a) {
#ifdef __CUDA_ARCH__
  return __fsqrt_rn(a);
#else
  return sqrtf(a);
#endif
}
/** a·b − p exactly (p = a·b rounded): the error term of a product, by one fused multiply-add. */
GG_FN float gprod_err(float a, float b, float p) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, -p);
#else
  return fmaf(a, b, -p);
#endif
}

GG_FN uint32_t fbits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}
GG_FN float bitsf(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}
GG_FN bool gfinite(float x) { return (fbits(x) & 0x7f800000u) != 0x7f800000u; }

/** Smallest float ≥ 1e-30 (0x0da24260): the host's float64 tests |x| ≥ 1e-30, |x| < 1e-30, x ≤ 1e-30. */
GG_FN float r30() { return bitsf(0x0da24260u); }
/** float32(1e-8), AutoRound's scale threshold for float32 scales. */
GG_FN float thr8() { return bitsf(0x322bcc77u); }

/** auto_round get_reciprocal: 1/x for |x| ≥ 1e-30, else 0 (NaN too). */
GG_FN float grecip(float x) { return fabsf(x) >= r30() ? gdiv(1.0f, x) : 0.0f; }

GG_FN float gclamp(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

/** a + b = s + e exactly (Knuth's two-sum). */
GG_FN void two_sum(float a, float b, float* s, float* e) {
  *s = gadd(a, b);
  const float bb = gsub(*s, a);
  *e = gadd(gsub(a, gsub(*s, bb)), gsub(b, bb));
}

/** floor(a + b) of the exact sum, for |a + b| < 2^23. */
GG_FN float floor_sum(float a, float b) {
  float s, e;
  two_sum(a, b, &s, &e);
  const float f = floorf(s);
  return f == s && e < 0.0f ? f - 1.0f : f;
}

/** floor(x·y + h) of the exact value (as float64 computes trunc(x·id + 8.5) of packing.py, ≥ 0 part). */
GG_FN float floor_prod_plus(float x, float y, float h) {
  const float p = gmul(x, y), pe = gprod_err(x, y, p);
  float a, ae, b, be, c, ce;
  two_sum(p, h, &a, &ae);
  two_sum(ae, pe, &b, &be);
  two_sum(a, b, &c, &ce);
  const float f = floorf(c);
  return f == c && gadd(ce, be) < 0.0f ? f - 1.0f : f;
}

/** round-half-even(a + b) of the exact sum, for |a + b| < 2^22. */
GG_FN float round_sum(float a, float b) {
  float s, e;
  two_sum(a, b, &s, &e);
  const float n = rintf(s), d = gsub(s, n);
  if (e == 0.0f || fabsf(d) != 0.5f) return n;
  return (d > 0.0f) == (e > 0.0f) ? n + (d > 0.0f ? 1.0f : -1.0f) : n;
}

/** JavaScript's ToInt16 (an Int16Array store) of an integral float: NaN and ±∞ give 0, others wrap. */
GG_FN int to_i16(float v) {
  if (!gfinite(v)) return 0;
  const float a = fabsf(v);
  uint32_t m = 0;
  if (a < 2147483648.0f) {
    m = (uint32_t)a;
  } else {
    const uint32_t u = fbits(a);
    const int sh = (int)((u >> 23) & 0xffu) - 150;
    if (sh < 16) m = ((u & 0x7fffffu) | 0x800000u) << sh;
  }
  m &= 0xffffu;
  if (v < 0.0f) m = (0x10000u - m) & 0xffffu;
  return m >= 32768u ? (int)m - 65536 : (int)m;
}

/** Math.f16round: nearest even, subnormals on the 2^-24 grid, |x| ≥ 65520 to ±∞. */
GG_FN float f16round(float x) {
  const float a = fabsf(x);
  if (!gfinite(x)) return x;
  if (a < 6.103515625e-5f) return rintf(x * 16777216.0f) * 5.9604644775390625e-8f;
  const uint32_t u = fbits(x);
  const float r = bitsf((u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u);
  return fabsf(r) > 65504.0f ? (x < 0.0f ? -INFINITY : INFINITY) : r;
}

/** f16 bits of x (nearest even, overflow to ±∞, NaN to 0x7e00), as a Float16Array stores it. */
GG_FN uint32_t f16_bits(float x) {
  const uint32_t sgn = (fbits(x) >> 16) & 0x8000u;
  if (x != x) return 0x7e00u;
  const float r = fabsf(f16round(x));
  if (r == INFINITY) return sgn | 0x7c00u;
  if (r < 6.103515625e-5f) return sgn | (uint32_t)(r * 16777216.0f);
  const uint32_t u = fbits(r);
  return sgn | ((((u >> 23) & 0xffu) - 112u) << 10) | ((u >> 13) & 0x3ffu);
}

/** The signed value of the largest magnitude (the first on ties), as torch.argmax picks it. */
template <int N>
GG_FN float signed_abs_max(const float* x) {
  float m = 0.0f, a = -1.0f;
#pragma unroll
  for (int i = 0; i < N; i++) {
    if (fabsf(x[i]) > a) {
      a = fabsf(x[i]);
      m = x[i];
    }
  }
  return m;
}

/** torch.sum of N (8, 16 or 32) floats: lanes ((t[l] + t[l+8]) + t[l+16]) + t[l+24], left to right. */
template <int N>
GG_FN float lane_sum(const float* t) {
  float s = 0.0f;
#pragma unroll
  for (int l = 0; l < 8; l++) {
    float lane = t[l];
#pragma unroll
    for (int j = 1; j < N / 8; j++) lane = gadd(lane, t[l + 8 * j]);
    s = gadd(s, lane);
  }
  return s;
}
