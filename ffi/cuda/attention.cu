// Causal grouped-query attention, the general path: any head dim ≤ 256, any float dtype (f32 for
// exactness tests, tiny models such as stories260K with hd = 8). The tensor-core path for bf16/f16
// with hd ∈ {64, 128} is flash_attention.cu; both share attn_delta below.
//
// Layout: q, out, dOut [B·T, H·hd]; k, v [B·T, KV·hd]; lse, delta f32 [B, H, T]; head h reads kv
// head h / (H/KV). Tiling: one warp per query row (forward, dq) or per key row (dk/dv); lanes split
// the head dim (hd/32 values each), dot products are warp all-reductions, the softmax is online in
// f32. dk/dv loop over the heads of their group and the queries t ≥ s, so nothing is atomic.
// Measured vs the CPU reference on the H100 (tests/cuda_attention_test.ts, 2026-11-23): f32 (hd 8,
// 40, 128) out ≤ 1.4e-7, lse ≤ 5e-8, dq/dk/dv ≤ 2.6e-7 relative; bf16 hd 40 ≤ 1.5e-5.
#include "common.cuh"

#define MAX_DPL 8  // head dim ≤ 32·8

__device__ __forceinline__ float warp_allsum(float v) { return warp_sum(v); }

/** delta[b,h,t] = Σ_d dOut·out over the row's head (f32), one warp per (row, head). */
extern "C" __global__ void attn_delta(u64 delta, u64 out, int dto, u64 dout, int dtd, int B, int T, int H,
                                      int hd) {
  const i64 w = gtid() >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= (i64)B * T * H) return;
  const int h = (int)(w % H);
  const i64 bt = w / H;
  const i64 o = bt * H * hd + (i64)h * hd;
  float s = 0.0f;
  for (int d = lane; d < hd; d += 32) s += ldf(CPTR(out), dto, o + d) * ldf(CPTR(dout), dtd, o + d);
  s = warp_allsum(s);
  if (lane == 0) {
    const i64 b = bt / T, t = bt % T;
    ((float*)delta)[(b * H + h) * T + t] = s;
  }
}

/** Forward: out row (b,t,h) and lse; one warp per query row. */
extern "C" __global__ void attn_fwd_simple(u64 out, u64 lse, u64 q, u64 k, u64 v, int dt, int B, int T, int H,
                                           int KV, int hd, float scale) {
  const i64 w = gtid() >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= (i64)B * T * H) return;
  const int h = (int)(w % H);
  const i64 bt = w / H;
  const i64 b = bt / T;
  const int t = (int)(bt % T);
  const int kh = h / (H / KV);
  const i64 qo = bt * H * hd + (i64)h * hd;
  float qv[MAX_DPL], acc[MAX_DPL];
#pragma unroll
  for (int j = 0; j < MAX_DPL; j++) {
    const int d = lane + 32 * j;
    qv[j] = d < hd ? ldf(CPTR(q), dt, qo + d) : 0.0f;
    acc[j] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int s = 0; s <= t; s++) {
    const i64 ko = (b * T + s) * KV * hd + (i64)kh * hd;
    float dot = 0.0f;
#pragma unroll
    for (int j = 0; j < MAX_DPL; j++) {
      const int d = lane + 32 * j;
      if (d < hd) dot += qv[j] * ldf(CPTR(k), dt, ko + d);
    }
    const float x = warp_allsum(dot) * scale;
    const float mn = fmaxf(m, x);
    const float corr = expf(m - mn), p = expf(x - mn);
    l = l * corr + p;
#pragma unroll
    for (int j = 0; j < MAX_DPL; j++) {
      const int d = lane + 32 * j;
      if (d < hd) acc[j] = acc[j] * corr + p * ldf(CPTR(v), dt, ko + d);
    }
    m = mn;
  }
  const float inv = 1.0f / l;
#pragma unroll
  for (int j = 0; j < MAX_DPL; j++) {
    const int d = lane + 32 * j;
    if (d < hd) stf(PTR(out), dt, qo + d, acc[j] * inv);
  }
  if (lane == 0) ((float*)lse)[(b * H + h) * T + t] = m + logf(l);
}

/** dq row (b,t,h) = scale·Σ_{s≤t} P·(dP − delta)·k_s; one warp per query row. */
extern "C" __global__ void attn_bwd_dq_simple(u64 dq, int dtg, u64 q, u64 k, u64 v, int dt, u64 dout, int dtd,
                                              u64 lse, u64 delta, int B, int T, int H, int KV, int hd,
                                              float scale) {
  const i64 w = gtid() >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= (i64)B * T * H) return;
  const int h = (int)(w % H);
  const i64 bt = w / H;
  const i64 b = bt / T;
  const int t = (int)(bt % T);
  const int kh = h / (H / KV);
  const i64 qo = bt * H * hd + (i64)h * hd;
  const float L = ((const float*)lse)[(b * H + h) * T + t];
  const float D = ((const float*)delta)[(b * H + h) * T + t];
  float qv[MAX_DPL], dov[MAX_DPL], acc[MAX_DPL];
#pragma unroll
  for (int j = 0; j < MAX_DPL; j++) {
    const int d = lane + 32 * j;
    qv[j] = d < hd ? ldf(CPTR(q), dt, qo + d) : 0.0f;
    dov[j] = d < hd ? ldf(CPTR(dout), dtd, qo + d) : 0.0f;
    acc[j] = 0.0f;
  }
  for (int s = 0; s <= t; s++) {
    const i64 ko = (b * T + s) * KV * hd + (i64)kh * hd;
    float dot = 0.0f, dp = 0.0f, kv[MAX_DPL];
#pragma unroll
    for (int j = 0; j < MAX_DPL; j++) {
      const int d = lane + 32 * j;
      kv[j] = d < hd ? ldf(CPTR(k), dt, ko + d) : 0.0f;
      dot += qv[j] * kv[j];
      if (d < hd) dp += dov[j] * ldf(CPTR(v), dt, ko + d);
    }
    dot = warp_allsum(dot);
    dp = warp_allsum(dp);
    const float p = expf(dot * scale - L);
    const float ds = p * (dp - D) * scale;
#pragma unroll
    for (int j = 0; j < MAX_DPL; j++) acc[j] += ds * kv[j];
  }
#pragma unroll
  for (int j = 0; j < MAX_DPL; j++) {
    const int d = lane + 32 * j;
    if (d < hd) stf(PTR(dq), dtg, qo + d, acc[j]);
  }
}

/** dk, dv row (b,s,kvh): sums over the group's heads and the queries t ≥ s; one warp per key row. */
extern "C" __global__ void attn_bwd_dkdv_simple(u64 dk, u64 dv, int dtg, u64 q, u64 k, u64 v, int dt, u64 dout,
                                                int dtd, u64 lse, u64 delta, int B, int T, int H, int KV, int hd,
                                                float scale) {
  const i64 w = gtid() >> 5;
  const int lane = threadIdx.x & 31;
  if (w >= (i64)B * T * KV) return;
  const int kh = (int)(w % KV);
  const i64 bs = w / KV;
  const i64 b = bs / T;
  const int s = (int)(bs % T);
  const int group = H / KV;
  const i64 ko = bs * KV * hd + (i64)kh * hd;
  float kv[MAX_DPL], vv[MAX_DPL], ak[MAX_DPL], av[MAX_DPL];
#pragma unroll
  for (int j = 0; j < MAX_DPL; j++) {
    const int d = lane + 32 * j;
    kv[j] = d < hd ? ldf(CPTR(k), dt, ko + d) : 0.0f;
    vv[j] = d < hd ? ldf(CPTR(v), dt, ko + d) : 0.0f;
    ak[j] = 0.0f;
    av[j] = 0.0f;
  }
  for (int hh = 0; hh < group; hh++) {
    const int h = kh * group + hh;
    for (int t = s; t < T; t++) {
      const i64 qo = (b * T + t) * H * hd + (i64)h * hd;
      float qv[MAX_DPL], dov[MAX_DPL], dot = 0.0f, dp = 0.0f;
#pragma unroll
      for (int j = 0; j < MAX_DPL; j++) {
        const int d = lane + 32 * j;
        qv[j] = d < hd ? ldf(CPTR(q), dt, qo + d) : 0.0f;
        dov[j] = d < hd ? ldf(CPTR(dout), dtd, qo + d) : 0.0f;
        dot += qv[j] * kv[j];
        dp += dov[j] * vv[j];
      }
      dot = warp_allsum(dot);
      dp = warp_allsum(dp);
      const i64 li = (b * H + h) * T + t;
      const float p = expf(dot * scale - ((const float*)lse)[li]);
      const float ds = p * (dp - ((const float*)delta)[li]) * scale;
#pragma unroll
      for (int j = 0; j < MAX_DPL; j++) {
        av[j] += p * dov[j];
        ak[j] += ds * qv[j];
      }
    }
  }
#pragma unroll
  for (int j = 0; j < MAX_DPL; j++) {
    const int d = lane + 32 * j;
    if (d < hd) {
      stf(PTR(dk), dtg, ko + d, ak[j]);
      stf(PTR(dv), dtg, ko + d, av[j]);
    }
  }
}
