// AutoRound's per-group GGUF parameter searches and the K-quants' double quantization
// (src/qmath/gguf/search.ts, search_sym.ts, quantize.ts searchParams), for one group or one
// super-block held in registers. Host and device code (see gguf_math.cuh); wgsl/gguf_search.wgsl and
// gguf_super.wgsl are the same algorithms line by line.
//
// Layout: x the group's GS weights, imp its GS importance values (the imatrix columns) or null;
// grid the host's float64-formed candidate factors (src/backend/gguf_plan.ts); par 3 floats per group
// (scale; wmin / zero point / export min; Σ importance), sup 2 per super-block (d, dmin).
#pragma once
#include "gguf_math.cuh"

/** Bits of each type index (GGUF_TYPE_CODE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K). */
GG_FN int gg_bits(int type) {
  switch (type) {
    case 0: case 1: case 7: return 4;
    case 2: case 3: case 8: return 5;
    case 4: return 8;
    case 5: return 2;
    case 6: return 3;
    default: return 6;
  }
}

/** AutoRound's importance without an imatrix for 4 and 5 bits: |x| + sqrt(Σx²/32). */
template <int GS>
GG_FN void gg_abs_plus_rms(const float* x, float* out) {
  float t[GS];
#pragma unroll
  for (int i = 0; i < GS; i++) t[i] = gmul(x[i], x[i]);
  const float av = gsqrt(gdiv(lane_sum<GS>(t), 32.0f));
#pragma unroll
  for (int i = 0; i < GS; i++) out[i] = gadd(fabsf(x[i]), av);
}

/** _imatrix_handle_zero on one group (search.ts handleZeroImportance). */
template <int GS>
GG_FN void gg_handle_zero(float* qw, const float* x, int half, int bits) {
  int zeros = 0;
#pragma unroll
  for (int i = 0; i < GS; i++) zeros += qw[i] < r30() ? 1 : 0;
  if (zeros == 0) return;
  if (zeros > half) {
    if (bits <= 3) {
#pragma unroll
      for (int i = 0; i < GS; i++) qw[i] = fabsf(x[i]);
    } else {
      gg_abs_plus_rms<GS>(x, qw);
    }
    return;
  }
  const float mean = zeros == GS ? 0.0f : gdiv(lane_sum<GS>(qw), (float)(GS - zeros));
#pragma unroll
  for (int i = 0; i < GS; i++) qw[i] = qw[i] == 0.0f ? mean : qw[i];
}

// ---- Q4_0, Q5_0, Q8_0, Q4_1, Q5_1 ----------------------------------------------------------------

/** Σ qw·(s·l − x)² of search_scales at inverse scale `is` (search_sym.ts searchScaleSym). */
template <int GS>
GG_FN float gg_sym_loss(const float* x, const float* qw, float is, float nmax) {
  const float s = grecip(is);
  float t[GS];
#pragma unroll
  for (int i = 0; i < GS; i++) {
    const float l = gclamp(rintf(gmul(is, x[i])), -nmax, nmax - 1.0f);
    const float d = gsub(gmul(s, l), x[i]);
    t[i] = qw ? gmul(gmul(d, d), qw[i]) : gmul(d, d);
  }
  return lane_sum<GS>(t);
}

/**
 * searchParams for the 32-wide types: out[0] the scale, out[1] the zero point (Q4_1/Q5_1) or the
 * export min; with GG_EXPORT packWithoutScales' d and m.
 */
template <int GS>
GG_FN void gg_legacy_group(const float* x, float* imp, int type, int flags, const float* grid, int ncand,
                           float* out) {
  const int bits = gg_bits(type);
  const float nmax = (float)(1 << (bits - 1)), maxq = (float)((1 << bits) - 1);
  const bool exp = flags & GG_EXPORT;
  float lo = exp ? INFINITY : 0.0f, hi = exp ? -INFINITY : 0.0f, amax = 0.0f, smax = 0.0f;
#pragma unroll
  for (int i = 0; i < GS; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    if (fabsf(x[i]) > amax) {
      amax = fabsf(x[i]);
      smax = x[i];
    }
  }
  float s = 0.0f, z = 0.0f;
  if (exp) {
    if (type == 0 || type == 2) s = gmul(smax, -1.0f / nmax);
    else if (type == 4) s = gdiv(amax, 127.0f);
    else s = gdiv(gsub(hi, lo), maxq), z = lo;
  } else if (type == 1 || type == 3) {
    // int_asym_float_zp: scale = (max − min)/maxq ≥ 1e-8, zp = −min/scale (not rounded).
    const float r = gdiv(gsub(hi, lo), maxq);
    s = r > thr8() ? r : thr8();
    z = gdiv(-lo, s);
  } else {
    if (flags & GG_OPT_RTN) {
      float* qw = (flags & GG_IMATRIX) ? imp : nullptr;
      if (qw && (flags & GG_HAS_ZERO)) gg_handle_zero<GS>(qw, x, GS / 2, bits);
      const float ig = grecip(signed_abs_max<GS>(x));
      float best_is = gmul(-nmax, ig), best = gg_sym_loss<GS>(x, qw, best_is, nmax);
      for (int j = 0; j < ncand; j++) {
        const float is = gmul(grid[j], ig), e = gg_sym_loss<GS>(x, qw, is, nmax);
        if (e < best) best = e, best_is = is;
      }
      s = grecip(best_is);
    } else {
      const float a = -lo;
      s = gmul((hi < a ? 1.0f : -1.0f) * fmaxf(a, hi), 1.0f / nmax);
    }
    s = s < 0.0f ? (s > -thr8() ? -thr8() : s) : (s < thr8() ? thr8() : s);
  }
  out[0] = s;
  out[1] = z;
}

// ---- Q2_K, Q4_K, Q5_K ------------------------------------------------------------------------------

/** Σ W·|s·q + m − x| (MAD) or Σ W·(s·q + m − x)² (search.ts wlsError). */
template <int GS>
GG_FN float gg_wls_error(const float* x, const float* w, float s, float m, float maxq, bool mad) {
  const float is = grecip(s);
  float t[GS];
#pragma unroll
  for (int i = 0; i < GS; i++) {
    const float q = gclamp(rintf(gmul(gsub(x[i], m), is)), 0.0f, maxq);
    const float d = gsub(gadd(gmul(q, s), m), x[i]);
    t[i] = mad ? gmul(w[i], fabsf(d)) : gmul(w[i], gmul(d, d));
  }
  return lane_sum<GS>(t);
}

/** Group search of Q2_K/Q4_K/Q5_K (iterative_wls_quant_search_chunk): out = scale, wmin, Σ qw. */
template <int GS>
GG_FN void gg_kasym_group(const float* x, float* imp, int bits, int flags, const float* grid, int ncand,
                          float* out) {
  const float maxq = (float)((1 << bits) - 1);
  float qw[GS];
  if (flags & GG_IMATRIX) {
#pragma unroll
    for (int i = 0; i < GS; i++) qw[i] = imp[i];
    // _imatrix_handle_zero's default group size: 16 for 2 bits, 32 otherwise.
    if (flags & GG_HAS_ZERO) gg_handle_zero<GS>(qw, x, bits == 2 ? 8 : 16, bits);
  } else if (bits == 2) {
#pragma unroll
    for (int i = 0; i < GS; i++) qw[i] = fabsf(x[i]);
  } else {
    gg_abs_plus_rms<GS>(x, qw);
  }
  float rmin = INFINITY, rmax = -INFINITY, t[GS], u[GS], z[GS];
#pragma unroll
  for (int i = 0; i < GS; i++) {
    if (x[i] < rmin) rmin = x[i];
    if (x[i] > rmax) rmax = x[i];
    t[i] = gmul(qw[i], x[i]);
  }
  const float sum_w = lane_sum<GS>(qw), sum_x = lane_sum<GS>(t);
  const bool mad = flags & GG_MAD;
  float scale = gdiv(gsub(rmax, rmin), maxq);
  float best = gg_wls_error<GS>(x, qw, scale, rmin, maxq, mad);
  for (int step = 0; step < ncand; step++) {
    const float is = grecip(gdiv(gsub(rmax, rmin), grid[step]));
#pragma unroll
    for (int i = 0; i < GS; i++) {
      const float q = gclamp(rintf(gmul(gsub(x[i], rmin), is)), 0.0f, maxq), tw = gmul(q, qw[i]);
      t[i] = tw;
      u[i] = gmul(tw, q);
      z[i] = gmul(tw, x[i]);
    }
    const float sl = lane_sum<GS>(t), sl2 = lane_sum<GS>(u), sxl = lane_sum<GS>(z);
    const float D = gsub(gmul(sum_w, sl2), gmul(sl, sl));
    // The host keeps a candidate only when D > 0; skipping the rest otherwise is the same.
    if (!(D > 0.0f)) continue;
    float ts = gdiv(gsub(gmul(sum_w, sxl), gmul(sum_x, sl)), D);
    float tm = gdiv(gsub(gmul(sl2, sum_x), gmul(sl, sxl)), D);
    if (tm > 0.0f) tm = 0.0f, ts = gdiv(sxl, sl2);
    const float e = gg_wls_error<GS>(x, qw, ts, tm, maxq, mad);
    if (e < best) best = e, scale = ts, rmin = tm;
  }
  out[0] = fabsf(scale) < r30() ? 0.0f : scale;
  out[1] = -rmin;
  out[2] = lane_sum<GS>(qw);
}

// ---- Q3_K, Q6_K -------------------------------------------------------------------------------------

/** (Σ W·x·l, Σ W·l²) with l = clamp(round(x·is)) (search_sym.ts makeQxQuants `sums`). */
template <int GS>
GG_FN void gg_qx_sums(const float* x, const float* w, float is, float nmax, float* slx, float* sl2) {
  float t[GS], u[GS];
#pragma unroll
  for (int i = 0; i < GS; i++) {
    const float l = gclamp(rintf(gmul(x[i], is)), -nmax, nmax - 1.0f);
    t[i] = gmul(gmul(w[i], x[i]), l);
    u[i] = gmul(gmul(w[i], l), l);
  }
  *slx = lane_sum<GS>(t);
  *sl2 = lane_sum<GS>(u);
}

/** make_qx_quants_chunk, rmse_type 1. */
template <int GS>
GG_FN float gg_make_qx(const float* x, const float* w, float nmax, const float* grid, int ncand) {
  const float gmax = signed_abs_max<GS>(x);
  float slx, sl2;
  gg_qx_sums<GS>(x, w, gmul(-nmax, grecip(gmax)), nmax, &slx, &sl2);
  float scale = gmul(slx, grecip(sl2)), best = gmul(scale, slx);
  // gmax = 0 makes every candidate NaN on the host, which never wins.
  if (gmax == 0.0f) return scale;
  const float ig = gdiv(1.0f, gmax);
  for (int j = 0; j < ncand; j++) {
    gg_qx_sums<GS>(x, w, gmul(ig, grid[j]), nmax, &slx, &sl2);
    if (sl2 > 0.0f && gmul(slx, slx) > gmul(best, sl2)) scale = gdiv(slx, sl2), best = gmul(scale, slx);
  }
  return scale;
}

/** make_q3_quants(do_rmse=True) as AutoRound has it (search_sym.ts makeQ3Quants). */
template <int GS>
GG_FN float gg_make_q3(const float* x, float nmax) {
  const float iscale = gmul(-nmax, grecip(signed_abs_max<GS>(x)));
  float L[GS], w[GS], t[GS], u[GS];
#pragma unroll
  for (int i = 0; i < GS; i++) {
    L[i] = gclamp(rintf(gmul(iscale, x[i])), -nmax, nmax - 1.0f);
    w[i] = gmul(x[i], x[i]);
    t[i] = gmul(gmul(w[i], x[i]), L[i]);
    u[i] = gmul(gmul(w[i], L[i]), L[i]);
  }
  float sumlx = lane_sum<GS>(t), suml2 = lane_sum<GS>(u);
  for (int round = 0; round < 5; round++) {
#pragma unroll
    for (int i = 0; i < GS; i++) {
      const float wx = gmul(w[i], x[i]);
      float slx = gsub(sumlx, gmul(wx, L[i])), sl2 = gsub(suml2, gmul(gmul(w[i], L[i]), L[i]));
      if (slx > 0.0f) {
        const float nl = gclamp(rintf(gdiv(gmul(x[i], sl2), slx)), -nmax, nmax - 1.0f);
        if (nl != L[i]) slx = gadd(slx, gmul(wx, nl)), sl2 = gadd(sl2, gmul(gmul(w[i], nl), nl));
        if (sl2 > 0.0f && gmul(gmul(slx, slx), suml2) > gmul(gmul(sumlx, sumlx), sl2)) L[i] = nl;
      }
      sumlx = slx;
      suml2 = sl2;
    }
  }
  return gmul(sumlx, grecip(suml2));
}

/** Group search of Q3_K/Q6_K: the sub-block scale. */
template <int GS>
GG_FN float gg_ksym_group(const float* x, float* imp, int bits, int flags, const float* grid, int ncand) {
  const float nmax = (float)(1 << (bits - 1));
  float s;
  if (flags & GG_IMATRIX) {
    // _imatrix_handle_zero with its default group size 32 on groups of 16.
    if (flags & GG_HAS_ZERO) gg_handle_zero<GS>(imp, x, 16, bits);
    s = gg_make_qx<GS>(x, imp, nmax, grid, ncand);
  } else if (bits == 3) {
    s = gg_make_q3<GS>(x, nmax);
  } else {
    float w[GS];
#pragma unroll
    for (int i = 0; i < GS; i++) w[i] = gmul(x[i], x[i]);
    s = gg_make_qx<GS>(x, w, nmax, grid, ncand);
  }
  return fabsf(s) < r30() ? 0.0f : s;
}
