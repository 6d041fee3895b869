// Elementwise and gather kernels: dtype cast/copy, add, row-vector add, SiLU·mul (+backward),
// accumulate, sign-SGD step (rate by value or read on the device), sample gather by a device index
// tensor, RoPE, embedding lookup, and keepBest's device-side compare-and-copy.
//
// Layout: dense row-major tensors addressed by element index; every kernel takes its dtypes as
// DT_* codes. Tiling: a thread owns 8 consecutive elements (one 16-byte load for 16-bit dtypes,
// two for f32) in a grid-stride loop; with `vec == 0` (unaligned views, odd sizes) the same loop
// runs element by element. Arithmetic is f32 (the sign-SGD step is f64, as the reference does it).
// Measured vs the CPU reference on the H100 (tests/cuda_ops_test.ts, 2026-11-23): casts, add,
// accumulate (f64 like the reference), sign-SGD (rate by value or from a device tensor), sample
// gathers, embedding, keepBest bit-identical; SiLU·mul and its backward ≤ 8e-8 relative in f32 (expf
// vs Math.exp); RoPE ≤ 5e-8 in f32; bf16 outputs identical after rounding. RoPE of q and k, forward
// and inverse, 8×2048 tokens, 32/8 heads of 128, bf16 (670 MB moved): 0.88 ms scalar → 0.29 ms with
// the 8-pair vector path (0.76 → 2.3 TB/s counted; bench/cuda_8b.ts eager events).
#include "common.cuh"

extern "C" __global__ void ew_cast(u64 dst, int dtd, u64 src, int dts, i64 n, int vec) {
  for (i64 i = gtid() * 8; i < n; i += gstride() * 8) {
    if (vec && i + 8 <= n) {
      float v[8];
      ld8(CPTR(src), dts, i, v);
      st8(PTR(dst), dtd, i, v);
    } else {
      for (i64 j = i; j < i + 8 && j < n; j++) {
        if (dtd == DT_I32 && dts == DT_I32) ((int*)dst)[j] = ((const int*)src)[j];
        else stf(PTR(dst), dtd, j, ldf(CPTR(src), dts, j));
      }
    }
  }
}

extern "C" __global__ void ew_add(u64 out, int dto, u64 a, int dta, u64 b, int dtb, i64 n, int vec) {
  for (i64 i = gtid() * 8; i < n; i += gstride() * 8) {
    if (vec && i + 8 <= n) {
      float x[8], y[8];
      ld8(CPTR(a), dta, i, x);
      ld8(CPTR(b), dtb, i, y);
#pragma unroll
      for (int j = 0; j < 8; j++) x[j] += y[j];
      st8(PTR(out), dto, i, x);
    } else {
      for (i64 j = i; j < i + 8 && j < n; j++) {
        stf(PTR(out), dto, j, ldf(CPTR(a), dta, j) + ldf(CPTR(b), dtb, j));
      }
    }
  }
}

/** x[r, c] += bias[c] for x [rows, cols]. */
extern "C" __global__ void ew_add_row_vector(u64 x, int dtx, u64 bias, int dtb, i64 rows, i64 cols) {
  const i64 n = rows * cols;
  for (i64 i = gtid(); i < n; i += gstride()) {
    stf(PTR(x), dtx, i, ldf(CPTR(x), dtx, i) + ldf(CPTR(bias), dtb, i % cols));
  }
}

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

/** h = silu(g)·u. */
extern "C" __global__ void ew_silu_mul(u64 h, int dth, u64 g, int dtg, u64 u, int dtu, i64 n, int vec) {
  for (i64 i = gtid() * 8; i < n; i += gstride() * 8) {
    if (vec && i + 8 <= n) {
      float x[8], y[8];
      ld8(CPTR(g), dtg, i, x);
      ld8(CPTR(u), dtu, i, y);
#pragma unroll
      for (int j = 0; j < 8; j++) x[j] = x[j] * sigmoidf_(x[j]) * y[j];
      st8(PTR(h), dth, i, x);
    } else {
      for (i64 j = i; j < i + 8 && j < n; j++) {
        const float gv = ldf(CPTR(g), dtg, j);
        stf(PTR(h), dth, j, gv * sigmoidf_(gv) * ldf(CPTR(u), dtu, j));
      }
    }
  }
}

/** du = dh·silu(g); dg = dh·u·s·(1 + g·(1 − s)), s = sigmoid(g). */
extern "C" __global__ void ew_silu_mul_bwd(u64 dg, u64 du, int dto, u64 g, int dtg, u64 u, int dtu, u64 dh,
                                           int dtdh, i64 n, int vec) {
  for (i64 i = gtid() * 8; i < n; i += gstride() * 8) {
    if (vec && i + 8 <= n) {
      float x[8], y[8], d[8], a[8], b[8];
      ld8(CPTR(g), dtg, i, x);
      ld8(CPTR(u), dtu, i, y);
      ld8(CPTR(dh), dtdh, i, d);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const float s = sigmoidf_(x[j]);
        b[j] = d[j] * x[j] * s;
        a[j] = d[j] * y[j] * s * (1.0f + x[j] * (1.0f - s));
      }
      st8(PTR(dg), dto, i, a);
      st8(PTR(du), dto, i, b);
    } else {
      for (i64 j = i; j < i + 8 && j < n; j++) {
        const float gv = ldf(CPTR(g), dtg, j), uv = ldf(CPTR(u), dtu, j), dv = ldf(CPTR(dh), dtdh, j);
        const float s = sigmoidf_(gv);
        stf(PTR(du), dto, j, dv * gv * s);
        stf(PTR(dg), dto, j, dv * uv * s * (1.0f + gv * (1.0f - s)));
      }
    }
  }
}

/** acc += alpha·x, in f64 like the reference (then one rounding to acc's dtype). */
extern "C" __global__ void ew_accumulate(u64 acc, int dta, u64 x, int dtx, i64 n, double alpha, int vec) {
  for (i64 i = gtid() * 8; i < n; i += gstride() * 8) {
    if (vec && i + 8 <= n) {
      float a[8], b[8];
      ld8(CPTR(acc), dta, i, a);
      ld8(CPTR(x), dtx, i, b);
#pragma unroll
      for (int j = 0; j < 8; j++) a[j] = (float)((double)a[j] + alpha * (double)b[j]);
      st8(PTR(acc), dta, i, a);
    } else {
      for (i64 j = i; j < i + 8 && j < n; j++) {
        stf(PTR(acc), dta, j, (float)((double)ldf(CPTR(acc), dta, j) + alpha * (double)ldf(CPTR(x), dtx, j)));
      }
    }
  }
}

__device__ __forceinline__ float sign_sgd_one(float p, float g, double lr, int clamp, double lo, double hi) {
  // Math.sign: NaN stays NaN, ±0 gives 0. The step runs in f64 like the reference, then rounds once.
  const double s = g > 0.0f ? 1.0 : g < 0.0f ? -1.0 : (g == 0.0f ? 0.0 : __longlong_as_double(0x7ff8000000000000ll));
  double x = (double)p - lr * s;
  if (clamp) x = fmin(fmax(x, lo), hi);
  return (float)x;
}

/**
 * p ← clamp(p − lr·sign(g), lo, hi). The rate is `lrv`, or, when `lrp` is non-zero, the value at lrp
 * (dtype `dtlr`) read on the device, so a captured graph applies the rate the host wrote last.
 */
extern "C" __global__ void ew_sign_sgd(u64 p, int dtp, u64 g, int dtg, i64 n, double lrv, u64 lrp, int dtlr,
                                       int clamp, double lo, double hi, int vec) {
  const double lr = lrp ? (double)ldf(CPTR(lrp), dtlr, 0) : lrv;
  for (i64 i = gtid() * 8; i < n; i += gstride() * 8) {
    if (vec && i + 8 <= n) {
      float a[8], b[8];
      ld8(CPTR(p), dtp, i, a);
      ld8(CPTR(g), dtg, i, b);
#pragma unroll
      for (int j = 0; j < 8; j++) a[j] = sign_sgd_one(a[j], b[j], lr, clamp, lo, hi);
      st8(PTR(p), dtp, i, a);
    } else {
      for (i64 j = i; j < i + 8 && j < n; j++) {
        stf(PTR(p), dtp, j, sign_sgd_one(ldf(CPTR(p), dtp, j), ldf(CPTR(g), dtg, j), lr, clamp, lo, hi));
      }
    }
  }
}

/**
 * Gather whole samples: dst sample i (elements [i·per, (i+1)·per)) ← src sample idx[i] − first, idx
 * an i32 tensor read on the device (grid.y = i). `mode` 2: same dtype, 16-byte aligned, per·bytes a
 * multiple of 16 → raw 16-byte copies; 1: per % 8 == 0 and aligned → 8-wide converting loads;
 * 0: element by element. With `masked` (a source that is one segment of a split store, holding
 * samples [first, first + nSrc)) an index outside that range leaves dst sample i untouched; without
 * it an index outside [0, nSrc) writes zeros and records itself in err (err[0] = 2, err[1] = index),
 * thrown by the host at the next read/sync.
 */
extern "C" __global__ void gather_samples(u64 dst, int dtd, u64 src, int dts, u64 idx, i64 per, i64 nSrc,
                                          int bytesPerElem, u64 err, int mode, i64 first, int masked) {
  const i64 i = blockIdx.y;
  const i64 s = (i64)((const int*)idx)[i] - first;
  const bool ok = s >= 0 && s < nSrc;
  if (!ok && masked) return;
  if (!ok && blockIdx.x == 0 && threadIdx.x == 0 && atomicCAS((int*)err, 0, 2) == 0) ((int*)err)[1] = (int)s;
  const i64 d0 = i * per, s0 = ok ? s * per : 0;
  if (mode == 2) {
    const i64 chunks = per * bytesPerElem / 16;
    uint4* d = (uint4*)((unsigned char*)dst + d0 * bytesPerElem);
    const uint4* sp = (const uint4*)((const unsigned char*)src + s0 * bytesPerElem);
    for (i64 c = gtid(); c < chunks; c += gstride()) d[c] = ok ? sp[c] : make_uint4(0, 0, 0, 0);
  } else if (mode == 1) {
    for (i64 c = gtid() * 8; c < per; c += gstride() * 8) {
      float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (ok) ld8(CPTR(src), dts, s0 + c, v);
      st8(PTR(dst), dtd, d0 + c, v);
    }
  } else {
    for (i64 c = gtid(); c < per; c += gstride()) {
      stf(PTR(dst), dtd, d0 + c, ok ? ldf(CPTR(src), dts, s0 + c) : 0.0f);
    }
  }
}

/**
 * RoPE (rotate_half) in place on x [B·T, H·hd]. Tables [maxPos, hd/2]; inverse rotates by −θ.
 * Scalar path: one thread per rotated pair (row, head, i < hd/2). Vector path (`vec`: hd/2 % 8 == 0,
 * x and the tables 16-byte aligned): one thread per 8 consecutive pairs, 16-byte loads of both
 * halves and of cos/sin (3× faster than the scalar path at Llama-3-8B shape; see the file header).
 */
extern "C" __global__ void ew_rope(u64 x, int dtx, u64 cosT, int dtc, u64 sinT, int dts, i64 rows, int seqLen,
                                   int nHeads, int hd, int posOffset, int inverse, int vec) {
  const int half = hd / 2;
  const float sgn = inverse ? -1.0f : 1.0f;
  if (vec) {
    const int per = half / 8;
    const i64 n = rows * nHeads * per;
    for (i64 idx = gtid(); idx < n; idx += gstride()) {
      const int i = (int)(idx % per) * 8;
      const i64 rh = idx / per;
      const int h = (int)(rh % nHeads);
      const i64 row = rh / nHeads;
      const int t = (int)(row % seqLen);
      const i64 tab = (i64)(t + posOffset) * half + i;
      const i64 o = row * (i64)nHeads * hd + (i64)h * hd + i;
      float c[8], sn[8], x1[8], x2[8], y1[8], y2[8];
      ld8(CPTR(cosT), dtc, tab, c);
      ld8(CPTR(sinT), dts, tab, sn);
      ld8(CPTR(x), dtx, o, x1);
      ld8(CPTR(x), dtx, o + half, x2);
#pragma unroll
      for (int j = 0; j < 8; j++) {
        const float s = sgn * sn[j];
        y1[j] = x1[j] * c[j] - x2[j] * s;
        y2[j] = x2[j] * c[j] + x1[j] * s;
      }
      st8(PTR(x), dtx, o, y1);
      st8(PTR(x), dtx, o + half, y2);
    }
    return;
  }
  const i64 n = rows * nHeads * half;
  for (i64 idx = gtid(); idx < n; idx += gstride()) {
    const int i = (int)(idx % half);
    const i64 rh = idx / half;
    const int h = (int)(rh % nHeads);
    const i64 row = rh / nHeads;
    const int t = (int)(row % seqLen);
    const i64 tab = (i64)(t + posOffset) * half + i;
    const float c = ldf(CPTR(cosT), dtc, tab), s = sgn * ldf(CPTR(sinT), dts, tab);
    const i64 o = row * (i64)nHeads * hd + (i64)h * hd + i;
    const float x1 = ldf(CPTR(x), dtx, o), x2 = ldf(CPTR(x), dtx, o + half);
    stf(PTR(x), dtx, o, x1 * c - x2 * s);
    stf(PTR(x), dtx, o + half, x2 * c + x1 * s);
  }
}

/**
 * out[i, :] = table[ids[i], :]. An id outside [0, V) writes zeros and records itself in err[0..2)
 * (err[0] = 1, err[1] = id); the host checks err at the next read/sync and throws.
 */
extern "C" __global__ void ew_embedding(u64 out, int dto, u64 table, int dtt, u64 ids, i64 n, i64 H, i64 V,
                                        u64 err, int vec) {
  const i64 total = n * H;
  for (i64 i = gtid() * 8; i < total; i += gstride() * 8) {
    if (vec && i + 8 <= total) {  // vec requires H % 8 == 0: the 8 elements share one row
      const i64 r = i / H, c = i % H;
      const int id = ((const int*)ids)[r];
      float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      if (id >= 0 && id < V) {
        ld8(CPTR(table), dtt, (i64)id * H + c, v);
      } else if (atomicCAS((int*)err, 0, 1) == 0) {
        ((int*)err)[1] = id;
      }
      st8(PTR(out), dto, i, v);
    } else {
      for (i64 j = i; j < i + 8 && j < total; j++) {
        const i64 r = j / H, c = j % H;
        const int id = ((const int*)ids)[r];
        float v = 0.0f;
        if (id >= 0 && id < V) {
          v = ldf(CPTR(table), dtt, (i64)id * H + c);
        } else if (atomicCAS((int*)err, 0, 1) == 0) {
          ((int*)err)[1] = id;
        }
        stf(PTR(out), dto, j, v);
      }
    }
  }
}

#define KEEP_BEST_MAX_PAIRS 24

/** Up to KEEP_BEST_MAX_PAIRS copies, passed by value in the launch parameters (capture-safe). */
struct KeepBestPairs {
  u64 src[KEEP_BEST_MAX_PAIRS];
  u64 dst[KEEP_BEST_MAX_PAIRS];
  i64 n[KEEP_BEST_MAX_PAIRS];
  int dts[KEEP_BEST_MAX_PAIRS];
  int dtd[KEEP_BEST_MAX_PAIRS];
  /** 1 when src and dst share a dtype and are 16-byte aligned with a byte size divisible by 16. */
  int raw16[KEEP_BEST_MAX_PAIRS];
  int count;
};

/**
 * If loss[0] < best[0], copy every pair (blockIdx.y = pair). `best` is only read here; the
 * separate keep_best_update launch writes it afterwards, so every block sees the same decision.
 */
extern "C" __global__ void keep_best_copy(u64 loss, u64 best, KeepBestPairs pairs) {
  const float l = *(const float*)loss, b = *(const float*)best;
  if (!(l < b)) return;
  const int pi = blockIdx.y;
  if (pi >= pairs.count) return;
  const i64 n = pairs.n[pi];
  if (pairs.raw16[pi]) {
    const int bytes = pairs.dts[pi] == DT_F32 || pairs.dts[pi] == DT_I32 ? 4 : pairs.dts[pi] == DT_U8 ? 1 : 2;
    const i64 chunks = n * bytes / 16;
    const uint4* s = (const uint4*)pairs.src[pi];
    uint4* d = (uint4*)pairs.dst[pi];
    for (i64 i = gtid(); i < chunks; i += gstride()) d[i] = s[i];
  } else {
    for (i64 i = gtid(); i < n; i += gstride()) {
      stf(PTR(pairs.dst[pi]), pairs.dtd[pi], i, ldf(CPTR(pairs.src[pi]), pairs.dts[pi], i));
    }
  }
}

extern "C" __global__ void keep_best_update(u64 loss, u64 best) {
  const float l = *(const float*)loss;
  if (l < *(float*)best) *(float*)best = l;
}

/** x[i] ← uniform in [lo, hi) from a hash of (i, seed): device-side random fill for benchmarks. */
extern "C" __global__ void ew_fill_random(u64 x, int dt, i64 n, u64 seed, float lo, float hi) {
  for (i64 i = gtid(); i < n; i += gstride()) {
    u64 h = (u64)i * 0x9E3779B97F4A7C15ull + seed;
    h ^= h >> 30;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 27;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 31;
    const float u = (float)(h >> 40) * (1.0f / 16777216.0f);
    stf(PTR(x), dt, i, lo + (hi - lo) * u);
  }
}
