// AutoRound's integer fake-quantizer with straight-through gradients (spec ALGORITHM.md § Integer
// quantizers; src/qmath/int_quant.ts is the reference and these kernels mirror it line by line).
//
// Layout: W, V, Ŵ, dŴ, dV [N, K] row-major; α, β, wMin, wMax, initScale, dα, dβ f32 [N·G] with
// G = ceil(K/g) groups per row (a short last group is allowed).
// Tiling, streaming path (g ∈ {8, 16, 32, 64, 128, 256} dividing K, K % 8 == 0, aligned; AutoRound's
// usual layouts): fq_group_params computes each group's scale once (one thread per group, f64);
// fq_forward_stream / fq_backward_stream give each thread 8 consecutive elements (16-byte loads,
// coalesced across the warp), the g/8 threads of a group reduce the backward's f64 partial sums with
// xor-shuffles, and fq_finalize turns them into dα, dβ (one thread per group).
// Tiling, general path (any g, short last groups, unaligned views): `tpg` consecutive threads (a
// power of two ≤ 32, about g/32) own one group and handle 4 consecutive elements at a time.
// Exactness: the reference computes in f64 (JavaScript numbers). Group scales are computed in f64
// the same way; the per-element code round(W/s + V) is computed in f32 and recomputed in f64 only
// when the f32 value lies within its error bound of a rounding tie (about 1 element in 10⁵), so the
// codes, Ŵ and dV equal the reference's bit for bit at f32 speed. The scale-gradient pieces are
// summed in f64 and rounded to the scale dtype the way the reference emulates autograd. An opt-RTN
// initial scale (initScale·β) divides W unrounded and multiplies the codes rounded to the scale
// dtype, without the threshold clamp (int_quant.ts groupScale's divScale); the backward divides by
// the rounded scale, as the reference does.
// Measured on the H100 (tests/cuda_quant_test.ts, 2026-11-23): Ŵ, dV, codes, scales, zeros and
// dα/dβ identical to the reference in every tested layout (both paths, opt-RTN initial scales and
// bf16 outputs from f32/bf16 weights included). 14336×4096, g 128: forward
// 0.19 ms (2.5 TB/s, 85% of copy bandwidth), backward 0.37 ms (2.3 TB/s, 75%).
#include "common.cuh"

#define SCALE_F16 0
#define SCALE_BF16 1
#define SCALE_F32 2

/** Round an f64 value the way the reference's roundScale does for the scale dtype. */
__device__ __forceinline__ double round_scale(double x, int mode) {
  if (mode == SCALE_F32) return (double)(float)x;  // Math.fround
  if (mode == SCALE_BF16) return (double)__bfloat162float(__float2bfloat16_rn((float)x));  // f64→f32→bf16
  // Math.f16round: one rounding from f64 to f16 (11 significant bits, subnormals below 2^-14).
  if (isnan(x)) return x;
  const double a = fabs(x);
  if (a >= 65520.0) return copysign(INFINITY, x);
  if (a == 0.0) return x;
  int e;
  frexp(a, &e);  // a = m·2^e, m ∈ [0.5, 1)
  int ex = e - 1;
  if (ex < -14) ex = -14;
  const double q = ldexp(1.0, ex - 10);
  return copysign(rint(a / q) * q, x);
}

/**
 * round(w/s + v) as the reference's f64 arithmetic rounds it: f32 fast path, f64 when the f32 value
 * is within its error bound (two roundings of ≤ 2⁻²⁴ relative each) of a tie.
 */
__device__ __forceinline__ float round_code(float w, float v, float s32, double s) {
  const float qf = w / s32;
  const float z = qf + v;
  const float r = rintf(z);
  const float tol = (fabsf(qf) + fabsf(z)) * 2.4e-7f + 1e-30f;
  if (fabsf(fabsf(z - r) - 0.5f) > tol) return r;
  return (float)rint((double)w / s + (double)v);
}

struct GroupScale {
  /** `scale` multiplies the codes; `div` divides W (the same value except for an opt-RTN initial
   *  scale, whose codes use the unrounded initScale·β: int_quant.ts groupScale's divScale). */
  double scale, div, zp, sign;
  int passes;
  int side;  // 0 = max (β's side), 1 = min (α's side), 2 = tie
  double lo;
};

__device__ __forceinline__ double clamp01(double x) { return x < 0.0 ? 0.0 : x > 1.0 ? 1.0 : x; }

/** groupScale() of int_quant.ts. */
__device__ GroupScale group_scale(i64 idx, const float* minS, const float* maxS, const float* wMin,
                                  const float* wMax, const float* initScale, int bits, int sym, int mode,
                                  double thr) {
  const double alpha = minS ? clamp01((double)minS[idx]) : 1.0;
  const double beta = maxS ? clamp01((double)maxS[idx]) : 1.0;
  GroupScale gs;
  gs.sign = 1.0;
  gs.side = 0;
  gs.lo = 0.0;
  if (sym) {
    const double maxq = ldexp(1.0, bits - 1);
    double raw;
    if (initScale) {
      // Already clamped to ±thresh by the search: no threshold clamp, the gradient always passes.
      const double exact = (double)initScale[idx] * beta;
      gs.scale = round_scale(exact, mode);
      gs.div = exact;
      gs.passes = 1;
      gs.zp = maxq;
      return gs;
    } else {
      const double minAbs = -((double)wMin[idx] * alpha), maxAbs = (double)wMax[idx] * beta;
      gs.sign = maxAbs < minAbs ? 1.0 : -1.0;
      gs.side = maxAbs > minAbs ? 0 : maxAbs < minAbs ? 1 : 2;
      raw = round_scale((gs.sign * fmax(maxAbs, minAbs)) / maxq, mode);
    }
    gs.scale = raw;
    gs.passes = 1;
    if (raw < 0.0 ? raw > -thr : raw < thr) {
      gs.scale = raw < 0.0 ? -thr : thr;
      gs.passes = 0;
    }
    gs.zp = maxq;
    gs.div = gs.scale;
  } else {
    const double maxq = ldexp(1.0, bits) - 1.0;
    const double lo = (double)wMin[idx] * alpha, hi = (double)wMax[idx] * beta;
    const double raw = round_scale((hi - lo) / maxq, mode);
    gs.scale = raw < thr ? thr : raw;
    gs.zp = rint(-lo / gs.scale);
    gs.passes = raw >= thr;
    gs.lo = lo;
    gs.div = gs.scale;
  }
  return gs;
}

/** The per-group tail of the backward: scale-gradient pieces → dα, dβ (fakeQuantizeBackward's end). */
__device__ void finish_group_grads(const GroupScale& gs, double gProd, double gQuot, double gZp, i64 grp, u64 minS,
                                   u64 maxS, u64 wMin, u64 wMax, u64 initScale, int bits, int sym, int mode,
                                   float* da, float* db) {
  const double s = gs.scale;
  // Autograd sums the scale's gradient pieces in the scale's dtype (int_quant.ts emulates it).
  double gScale = round_scale(round_scale(gProd, mode) + round_scale(gQuot, mode), mode);
  double a = 0.0, b = 0.0;
  const double wmaxv = (double)((const float*)wMax)[grp], wminv = (double)((const float*)wMin)[grp];
  if (gs.passes) {
    if (sym) {
      if (initScale) {
        b = gScale * (double)((const float*)initScale)[grp];
      } else {
        const double maxq = ldexp(1.0, bits - 1);
        const double gMaxV = gs.sign * gScale / maxq;
        const double share = gs.side == 0 ? 1.0 : gs.side == 2 ? 0.5 : 0.0;
        b = gMaxV * share * wmaxv;
        a = gMaxV * (1.0 - share) * -wminv;
      }
    } else {
      const double maxq = ldexp(1.0, bits) - 1.0;
      gScale = round_scale(gScale + round_scale(gZp * gs.lo / (s * s), mode), mode);
      const double gHi = gScale / maxq;
      const double gLo = -gScale / maxq - gZp / s;
      b = gHi * wmaxv;
      a = gLo * wminv;
    }
  } else if (!sym) {
    a = (-gZp / s) * wminv;
  }
  const double alpha = minS ? (double)((const float*)minS)[grp] : 1.0;
  const double beta = maxS ? (double)((const float*)maxS)[grp] : 1.0;
  *da = (float)(alpha >= 0.0 && alpha <= 1.0 ? a : 0.0);
  *db = (float)(beta >= 0.0 && beta <= 1.0 ? b : 0.0);
}

#define FQ_PARAMS                                                                                             \
  u64 w, int dtw, u64 v, u64 minS, u64 maxS, u64 wMin, u64 wMax, u64 initScale, i64 N, i64 K, int g, int G, \
      int bits, int sym, int mode, double thr, int tpg, int vec

/**
 * Ŵ = s·q (sym) or s·(q − zp) (asym), q = clamp(round(W/s + V) [+ zp]). With codes/scales/zeros
 * set, also writes the export codes (q + zp for sym, q for asym), f32 scales and i32 zero points.
 */
extern "C" __global__ void fq_forward(u64 out, int dto, u64 codes, u64 scales, u64 zeros, FQ_PARAMS) {
  const i64 gt = gtid();
  const i64 grp = gt / tpg;
  const int t = (int)(gt % tpg);
  if (grp >= N * (i64)G) return;
  const i64 r = grp / G, gi = grp % G;
  const GroupScale gs = group_scale(grp, (const float*)minS, (const float*)maxS, (const float*)wMin,
                                    (const float*)wMax, (const float*)initScale, bits, sym, mode, thr);
  const float qlo = sym ? -ldexpf(1.0f, bits - 1) : 0.0f;
  const float qhi = sym ? ldexpf(1.0f, bits - 1) - 1.0f : ldexpf(1.0f, bits) - 1.0f;
  const int glen = (int)min((i64)g, K - gi * g);
  const i64 base = r * K + gi * g;
  for (int c = t * 4; c < glen; c += tpg * 4) {
    float wv[4], vv[4] = {0, 0, 0, 0}, o[4];
    const bool full = vec && c + 4 <= glen;
    if (full) {
      ld4(CPTR(w), dtw, base + c, wv);
      if (v) ld4(CPTR(v), DT_F32, base + c, vv);
    } else {
      for (int j = 0; j < 4; j++) {
        if (c + j < glen) {
          wv[j] = ldf(CPTR(w), dtw, base + c + j);
          if (v) vv[j] = ((const float*)v)[base + c + j];
        } else {
          wv[j] = 0.0f;
        }
      }
    }
    const float s32 = (float)gs.scale, zpf = (float)gs.zp, d32 = (float)gs.div;
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const float rq = round_code(wv[j], vv[j], d32, gs.div);
      float q;
      if (sym) {
        q = fminf(fmaxf(rq, qlo), qhi);
        o[j] = s32 * q;  // one rounding of the exact product, like (float)(s·q) in f64
      } else {
        q = fminf(fmaxf(rq + zpf, qlo), qhi);
        o[j] = s32 * (q - zpf);
      }
      if (codes && c + j < glen) ((unsigned char*)codes)[base + c + j] = (unsigned char)(int)(sym ? q + zpf : q);
    }
    if (full) {
      st4(PTR(out), dto, base + c, o);
    } else {
      for (int j = 0; j < 4; j++) {
        if (c + j < glen) stf(PTR(out), dto, base + c + j, o[j]);
      }
    }
  }
  if (t == 0 && scales) {
    ((float*)scales)[grp] = (float)gs.scale;
    ((int*)zeros)[grp] = (int)gs.zp;
  }
}

/**
 * fakeQuantizeBackward() of int_quant.ts: dV = dŴ·s on unclamped elements; dα, dβ through the
 * scale (and zero point), blocked by the threshold clamp and by α/β's own [0, 1] clamp.
 */
extern "C" __global__ void fq_backward(u64 dv, u64 dmin, u64 dmax, u64 dwq, int dtd, FQ_PARAMS) {
  const i64 gt = gtid();
  const i64 grp = gt / tpg;
  const int t = (int)(gt % tpg);
  const bool active = grp < N * (i64)G;  // inactive lanes still join the shuffles below
  double gProd = 0.0, gQuot = 0.0, gZp = 0.0;
  GroupScale gs;
  gs.scale = 1.0;
  i64 r = 0, gi = 0;
  if (active) {
    r = grp / G, gi = grp % G;
    gs = group_scale(grp, (const float*)minS, (const float*)maxS, (const float*)wMin, (const float*)wMax,
                     (const float*)initScale, bits, sym, mode, thr);
    const float qlo = sym ? -ldexpf(1.0f, bits - 1) : 0.0f;
    const float qhi = sym ? ldexpf(1.0f, bits - 1) - 1.0f : ldexpf(1.0f, bits) - 1.0f;
    const double s = gs.scale, rs = 1.0 / s;
    const float s32 = (float)s, zpf = (float)gs.zp;
    const int glen = (int)min((i64)g, K - gi * g);
    const i64 base = r * K + gi * g;
    for (int c = t * 4; c < glen; c += tpg * 4) {
      float wv[4], vv[4] = {0, 0, 0, 0}, gv[4], o[4];
      const bool full = vec && c + 4 <= glen;
      if (full) {
        ld4(CPTR(w), dtw, base + c, wv);
        if (v) ld4(CPTR(v), DT_F32, base + c, vv);
        ld4(CPTR(dwq), dtd, base + c, gv);
      } else {
        for (int j = 0; j < 4; j++) {
          const bool in = c + j < glen;
          wv[j] = in ? ldf(CPTR(w), dtw, base + c + j) : 0.0f;
          if (v) vv[j] = in ? ((const float*)v)[base + c + j] : 0.0f;
          gv[j] = in ? ldf(CPTR(dwq), dtd, base + c + j) : 0.0f;
        }
      }
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float rz = round_code(wv[j], vv[j], s32, s) + (sym ? 0.0f : zpf);
        const bool inRange = rz >= qlo && rz <= qhi;
        const float q = fminf(fmaxf(rz, qlo), qhi);
        o[j] = gv[j] * s32 * (inRange ? 1.0f : 0.0f);  // (float)(g·s·inRange)
        // Ŵ = s·(q − zp) with q depending on W/s: ∂/∂s = (q − zp) [product] − inRange·W/s [quotient].
        gProd += (double)gv[j] * (double)(sym ? q : q - zpf);
        if (inRange) gQuot -= (double)gv[j] * (double)wv[j] * rs;
        else if (!sym) gZp -= (double)gv[j] * s;
      }
      if (full) {
        st4(PTR(dv), DT_F32, base + c, o);
      } else {
        for (int j = 0; j < 4; j++) {
          if (c + j < glen) ((float*)dv)[base + c + j] = o[j];
        }
      }
    }
  }
  for (int off = tpg >> 1; off > 0; off >>= 1) {
    gProd += __shfl_xor_sync(0xffffffffu, gProd, off);
    gQuot += __shfl_xor_sync(0xffffffffu, gQuot, off);
    gZp += __shfl_xor_sync(0xffffffffu, gZp, off);
  }
  if (!active || t != 0) return;
  float a, b;
  finish_group_grads(gs, gProd, gQuot, gZp, grp, minS, maxS, wMin, wMax, initScale, bits, sym, mode, &a, &b);
  ((float*)dmin)[grp] = a;
  ((float*)dmax)[grp] = b;
}

// ------------------------------------------------------------------------------------------------
// Streaming path for the common layouts (g ∈ {8, …, 256} dividing 32·8 and K, aligned, K % 8 == 0):
// the group scales are computed once per call by fq_group_params (one thread per group, f64), so
// the per-element kernels do f32 work only and read 16-byte chunks coalesced across whole warps;
// the backward writes per-group f64 partial sums that fq_finalize turns into dα, dβ.
// ------------------------------------------------------------------------------------------------

/** Per-group parameters of the streaming kernels (16 bytes). */
struct GroupParams {
  float scale, zp;  // exact in f32: scales are f16/bf16/f32 values
  double div;       // the forward's divisor (GroupScale::div)
};

/** params[grp] = (scale, zero point, divisor). */
extern "C" __global__ void fq_group_params(u64 params, u64 minS, u64 maxS, u64 wMin, u64 wMax, u64 initScale,
                                           i64 NG, int bits, int sym, int mode, double thr) {
  for (i64 grp = gtid(); grp < NG; grp += gstride()) {
    const GroupScale gs = group_scale(grp, (const float*)minS, (const float*)maxS, (const float*)wMin,
                                      (const float*)wMax, (const float*)initScale, bits, sym, mode, thr);
    GroupParams p;
    p.scale = (float)gs.scale;
    p.zp = (float)gs.zp;
    p.div = gs.div;
    ((GroupParams*)params)[grp] = p;
  }
}

#define FQS_PARAMS u64 w, int dtw, u64 v, u64 params, i64 N, int K, int g, int bits, int sym

/** Ŵ (and optionally the export codes): grid (ceil(K/8/256), rows), 8 elements per thread. */
extern "C" __global__ void fq_forward_stream(u64 out, int dto, u64 codes, FQS_PARAMS) {
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
  if (c >= K) return;
  const float qlo = sym ? -ldexpf(1.0f, bits - 1) : 0.0f;
  const float qhi = sym ? ldexpf(1.0f, bits - 1) - 1.0f : ldexpf(1.0f, bits) - 1.0f;
  const int G = K / g;
  for (i64 r = blockIdx.y; r < N; r += gridDim.y) {
    const GroupParams p = ((const GroupParams*)params)[r * G + c / g];
    const float s32 = p.scale, zpf = p.zp, d32 = (float)p.div;
    const i64 i = r * K + c;
    float wv[8], vv[8] = {0, 0, 0, 0, 0, 0, 0, 0}, o[8];
    ld8(CPTR(w), dtw, i, wv);
    if (v) ld8(CPTR(v), DT_F32, i, vv);
    uint32_t packed[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; j++) {
      const float rq = round_code(wv[j], vv[j], d32, p.div);
      const float q = fminf(fmaxf(sym ? rq : rq + zpf, qlo), qhi);
      o[j] = sym ? s32 * q : s32 * (q - zpf);
      packed[j >> 2] |= (uint32_t)(int)(sym ? q + zpf : q) << ((j & 3) * 8);
    }
    st8(PTR(out), dto, i, o);
    if (codes) *(uint2*)((unsigned char*)codes + i) = make_uint2(packed[0], packed[1]);
  }
}

/**
 * dV and the per-group f64 sums (Σ g·(q − zp), −Σ_in g·W/s, −Σ_out g·s) into partial[grp][3]; the
 * g/8 threads of a group are consecutive lanes of one warp and reduce with xor-shuffles.
 */
extern "C" __global__ void fq_backward_stream(u64 dv, u64 partial, u64 dwq, int dtd, FQS_PARAMS) {
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
  const bool active = c < K;  // idle lanes still join the shuffles
  const float qlo = sym ? -ldexpf(1.0f, bits - 1) : 0.0f;
  const float qhi = sym ? ldexpf(1.0f, bits - 1) - 1.0f : ldexpf(1.0f, bits) - 1.0f;
  const int G = K / g, lanes = g / 8;
  for (i64 r = blockIdx.y; r < N; r += gridDim.y) {
    double gProd = 0.0, gQuot = 0.0, gZp = 0.0;
    if (active) {
      // The backward divides by the rounded scale, as int_quant.ts fakeQuantizeBackward does.
      const GroupParams p = ((const GroupParams*)params)[r * G + c / g];
      const float s32 = p.scale, zpf = p.zp;
      const double rs = 1.0 / (double)s32;
      const i64 i = r * K + c;
      float wv[8], vv[8] = {0, 0, 0, 0, 0, 0, 0, 0}, gv[8], o[8];
      ld8(CPTR(w), dtw, i, wv);
      if (v) ld8(CPTR(v), DT_F32, i, vv);
      ld8(CPTR(dwq), dtd, i, gv);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const float rz = round_code(wv[j], vv[j], s32, (double)s32) + (sym ? 0.0f : zpf);
        const bool inRange = rz >= qlo && rz <= qhi;
        const float q = fminf(fmaxf(rz, qlo), qhi);
        o[j] = gv[j] * s32 * (inRange ? 1.0f : 0.0f);
        gProd += (double)gv[j] * (double)(sym ? q : q - zpf);
        if (inRange) gQuot -= (double)gv[j] * (double)wv[j] * rs;
        else if (!sym) gZp -= (double)gv[j] * (double)s32;
      }
      st8(PTR(dv), DT_F32, i, o);
    }
    for (int off = lanes >> 1; off > 0; off >>= 1) {
      gProd += __shfl_xor_sync(0xffffffffu, gProd, off);
      gQuot += __shfl_xor_sync(0xffffffffu, gQuot, off);
      gZp += __shfl_xor_sync(0xffffffffu, gZp, off);
    }
    if (active && (c / 8) % lanes == 0) {
      double* out = (double*)partial + (r * G + c / g) * 3;
      out[0] = gProd, out[1] = gQuot, out[2] = gZp;
    }
  }
}

/** dα, dβ per group from fq_backward_stream's sums (the tail of fq_backward, one thread a group). */
extern "C" __global__ void fq_finalize(u64 dmin, u64 dmax, u64 partial, u64 minS, u64 maxS, u64 wMin, u64 wMax,
                                       u64 initScale, i64 NG, int bits, int sym, int mode, double thr) {
  for (i64 grp = gtid(); grp < NG; grp += gstride()) {
    const GroupScale gs = group_scale(grp, (const float*)minS, (const float*)maxS, (const float*)wMin,
                                      (const float*)wMax, (const float*)initScale, bits, sym, mode, thr);
    const double* p = (const double*)partial + grp * 3;
    float a, b;
    finish_group_grads(gs, p[0], p[1], p[2], grp, minS, maxS, wMin, wMax, initScale, bits, sym, mode, &a, &b);
    ((float*)dmin)[grp] = a;
    ((float*)dmax)[grp] = b;
  }
}

/**
 * AutoRound's weight_min / weight_max per group: one warp per group of `g` consecutive columns of a
 * row (the last group of a row may be short); min clamped ≤ 0 and max ≥ 0 like the host reference.
 * Output f32 [rows · groupsPerRow]. Memory-bound: one pass over W.
 */
extern "C" __global__ void group_minmax(u64 w, int dtw, i64 rows, i64 k, i64 g, i64 groupsPerRow, u64 wmin,
                                        u64 wmax) {
  const i64 group = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (group >= rows * groupsPerRow) return;  // whole warps leave together
  const i64 r = group / groupsPerRow, gi = group % groupsPerRow;
  const i64 c0 = gi * g, c1 = c0 + g < k ? c0 + g : k;
  float lo = 0.0f, hi = 0.0f;
  for (i64 c = c0 + lane; c < c1; c += 32) {
    const float v = ldf(CPTR(w), dtw, r * k + c);
    lo = fminf(lo, v);
    hi = fmaxf(hi, v);
  }
  for (int o = 16; o > 0; o >>= 1) {
    lo = fminf(lo, __shfl_xor_sync(0xffffffffu, lo, o));
    hi = fmaxf(hi, __shfl_xor_sync(0xffffffffu, hi, o));
  }
  if (lane == 0) {
    ((float*)wmin)[group] = lo;
    ((float*)wmax)[group] = hi;
  }
}

/**
 * Optimized-RTN scale search for symmetric int (src/qmath/int_quant.ts searchScalesSym with
 * float32 candidates, and importanceForWeight's zero handling): one warp per group; for each
 * candidate inverse scale −(nmax − step·i)/wmax_signed (i = −searchMin..searchMin, the absmax rule
 * first) the lanes sum the importance-weighted squared error of their elements in f64 and the warp
 * keeps the first strictly lowest. imatrix is f32 [K] (per input feature) or 0 for uniform weights.
 * Output: the scale 1/best clamped to ±thresh, f32 [rows · groupsPerRow].
 */
extern "C" __global__ void opt_rtn_search(u64 w, int dtw, u64 imatrix, i64 rows, i64 k, i64 g, i64 groupsPerRow,
                                          int bits, int searchMin, double step, double thresh, u64 out) {
  const i64 group = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const int lane = threadIdx.x & 31;
  if (group >= rows * groupsPerRow) return;  // whole warps leave together
  const i64 r = group / groupsPerRow, gi = group % groupsPerRow;
  const i64 c0 = gi * g, c1 = c0 + g < k ? c0 + g : k, base = r * k;
  const float* im = (const float*)imatrix;
  const double nmax = (double)(1 << (bits - 1));
  // Signed value of the largest magnitude (first on ties, like torch.argmax), and the group's
  // importance statistics (zeros count, sum, Σw² for the fallback).
  float gmax = 0.0f, best = -1.0f;
  i64 bestAt = c1;
  double zeros = 0.0, isum = 0.0, sq = 0.0;
  for (i64 c = c0 + lane; c < c1; c += 32) {
    const float v = ldf(CPTR(w), dtw, base + c);
    if (fabsf(v) > best || (fabsf(v) == best && c < bestAt)) {
      best = fabsf(v);
      gmax = v;
      bestAt = c;
    }
    sq += (double)v * v;
    if (im) {
      zeros += im[c] <= 1e-30f ? 1.0 : 0.0;
      isum += im[c];
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float ob = __shfl_xor_sync(0xffffffffu, best, o), og = __shfl_xor_sync(0xffffffffu, gmax, o);
    const i64 oa = __shfl_xor_sync(0xffffffffu, bestAt, o);
    if (ob > best || (ob == best && oa < bestAt)) {
      best = ob;
      gmax = og;
      bestAt = oa;
    }
  }
  zeros = warp_sum_d(zeros);
  isum = warp_sum_d(isum);
  sq = warp_sum_d(sq);
  const double len = (double)(c1 - c0), avx = sqrt(sq / 32.0);
  const bool fallback = im && zeros > (double)(g / 2);
  const float recipMax = fabsf(gmax) >= 1e-30f ? 1.0f / gmax : 0.0f;
  float bestIscale = (float)(-nmax * (double)recipMax);
  double bestLoss = 0.0;
  for (int is = -searchMin - 1; is <= searchMin; is++) {
    if (is == 0) continue;
    // is = −searchMin − 1 stands for the absmax rule, evaluated first.
    const float iscale = is < -searchMin ? bestIscale : (float)(-(nmax - step * is) * (double)recipMax);
    const float sc = fabsf(iscale) >= 1e-30f ? 1.0f / iscale : 0.0f;
    double loss = 0.0;
    for (i64 c = c0 + lane; c < c1; c += 32) {
      const float v = ldf(CPTR(w), dtw, base + c);
      const float q = fminf(fmaxf(rintf(iscale * v), (float)-nmax), (float)(nmax - 1.0));
      const double e = (double)(sc * q) - (double)v;
      double imp = 1.0;
      if (im) {
        imp = im[c];
        if (fallback) imp = bits <= 3 ? fabs((double)v) : fabs((double)v) + avx;
        else if (zeros > 0.0 && im[c] == 0.0f) imp = isum / (len - zeros);
      }
      loss += e * e * imp;
    }
    loss = warp_sum_d(loss);
    if (is < -searchMin || loss < bestLoss) {
      bestLoss = loss;
      bestIscale = iscale;
    }
  }
  if (lane == 0) {
    const double sc = fabsf(bestIscale) >= 1e-30f ? (double)(1.0f / bestIscale) : 0.0;
    ((float*)out)[group] = (float)(sc < 0 ? fmin(sc, -thresh) : fmax(sc, thresh));
  }
}
