// The double quantization of the K-quants' sub-block scales and mins per super-block
// (src/qmath/gguf/search.ts makeQpQuants, doubleQuant, doubleQuantSym; quantize.ts searchKAsym /
// searchKSym after the group searches). Host and device code (see gguf_math.cuh); the same algorithm
// as wgsl/gguf_super.wgsl.
//
// Layout: par holds the super-block's SGS groups, 3 floats each (scale, wmin, Σ importance); their
// scale and wmin are replaced by the double-quantized d·L; sup gets (d, dmin). sgrid: make_qp_quants'
// divisors nmax + 0.1·is (is = −4..4, is ≠ 0), formed in float64 on the host.
#pragma once
#include "gguf_math.cuh"

/** Σ qw·(data − s·l)² with l = round(is·data), clamped above at nmax when `clip`. */
template <int SGS>
GG_FN float gg_qp_mse(const float* data, const float* qw, float s, float is, bool clip, float nmax) {
  float t[SGS];
#pragma unroll
  for (int i = 0; i < SGS; i++) {
    float l = rintf(gmul(is, data[i]));
    if (clip) l = fminf(l, nmax);
    const float d = gsub(data[i], gmul(s, l));
    t[i] = gmul(gmul(qw[i], d), d);
  }
  return lane_sum<SGS>(t);
}

/** make_qp_quants: returns d, writes the levels L (as Int16Array values). */
template <int SGS>
GG_FN float gg_make_qp(const float* data, const float* qw, float* L, float nmax, const float* sgrid) {
  float gmax = -INFINITY;
#pragma unroll
  for (int i = 0; i < SGS; i++)
    if (data[i] > gmax) gmax = data[i];
  const float scale0 = gdiv(gmax, nmax);
  float iscale = grecip(scale0), best = gg_qp_mse<SGS>(data, qw, scale0, iscale, false, nmax);
  for (int j = 0; j < 8; j++) {
    const float s = gdiv(gmax, sgrid[j]), iss = grecip(s);
    const float e = gg_qp_mse<SGS>(data, qw, s, iss, true, nmax);
    if (e < best) best = e, iscale = iss;
  }
  float t[SGS], u[SGS];
#pragma unroll
  for (int i = 0; i < SGS; i++) {
    L[i] = (float)to_i16(fminf(rintf(gmul(iscale, data[i])), nmax));
    t[i] = gmul(gmul(qw[i], data[i]), L[i]);
    u[i] = gmul(gmul(qw[i], L[i]), L[i]);
  }
  const float sumlx = lane_sum<SGS>(t), suml2 = lane_sum<SGS>(u);
  return suml2 > 0.0f ? gdiv(sumlx, suml2) : gdiv(gmax, nmax);
}

/** double_quant_tensor: d = max/maxq, L = min(round(x·maxq/max), maxq). */
template <int SGS>
GG_FN float gg_double_quant(const float* data, float* L, float maxq) {
  float wmax = 0.0f;
#pragma unroll
  for (int i = 0; i < SGS; i++)
    if (data[i] > wmax) wmax = data[i];
  const float inv = fmaxf(gmul(maxq, grecip(wmax)), 0.0f);
#pragma unroll
  for (int i = 0; i < SGS; i++) L[i] = (float)to_i16(fminf(rintf(gmul(data[i], inv)), maxq));
  return gdiv(wmax, maxq);
}

/** Q2_K, Q4_K, Q5_K: scales and mins on superBits bits (make_qp_quants with an imatrix). */
template <int SGS>
GG_FN void gg_super_asym(float* par, float* sup, int superBits, int flags, const float* sgrid) {
  const float maxq = (float)((1 << superBits) - 1);
  const bool im = flags & GG_IMATRIX;
  float sc[SGS], mn[SGS], qw[SGS], ls[SGS], lm[SGS];
#pragma unroll
  for (int j = 0; j < SGS; j++) {
    sc[j] = par[3 * j];
    // The mins are flushed to 0 below 1e-30 on the no-imatrix branch only (as AutoRound has it).
    mn[j] = !im && fabsf(par[3 * j + 1]) < r30() ? 0.0f : par[3 * j + 1];
    qw[j] = par[3 * j + 2];
  }
  const float d = im ? gg_make_qp<SGS>(sc, qw, ls, maxq, sgrid) : gg_double_quant<SGS>(sc, ls, maxq);
  const float dm = im ? gg_make_qp<SGS>(mn, qw, lm, maxq, sgrid) : gg_double_quant<SGS>(mn, lm, maxq);
#pragma unroll
  for (int j = 0; j < SGS; j++) {
    par[3 * j] = gmul(d, ls[j]);
    par[3 * j + 1] = gmul(dm, lm[j]);
  }
  sup[0] = d;
  sup[1] = dm;
}

/** Q3_K, Q6_K: double_quant_tensor_sym_rtn of the 16 scales on superBits signed bits. */
GG_FN void gg_super_sym(float* par, float* sup, int superBits) {
  const float nmax = (float)(1 << (superBits - 1));
  float m = 0.0f, a = -1.0f;
#pragma unroll
  for (int j = 0; j < 16; j++) {
    if (fabsf(par[3 * j]) > a) a = fabsf(par[3 * j]), m = par[3 * j];
  }
  const float d = gmul(m, -1.0f / nmax), inv = grecip(d);
#pragma unroll
  for (int j = 0; j < 16; j++) par[3 * j] = gmul(d, gclamp(rintf(gmul(par[3 * j], inv)), -nmax, nmax - 1.0f));
  sup[0] = d;
  sup[1] = 0.0f;
}
