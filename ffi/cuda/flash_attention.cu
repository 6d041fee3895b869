// Causal grouped-query flash attention on the tensor cores (mma.sync m16n8k16, bf16 or f16 inputs,
// f32 accumulators) for head dims 64 and 128: forward (writes the row log-sum-exp) and backward
// (dq in a query-stationary pass, dk/dv in a key-stationary pass; no atomics, deterministic).
//
// Layout: q, out, dOut [B·T, H·hd]; k, v [B·T, KV·hd]; lse, delta f32 [B, H, T]; head h reads kv
// head h / (H/KV). Tiling: 4 warps per block, each warp owns 16 rows of the stationary tile (64 query
// rows for forward/dq, 64 key rows for dk/dv) and streams the other side through shared memory in
// tiles of 64 (forward, dq) or BQ = 32 (hd 128) / 64 (hd 64) rows (dk/dv), double-buffered with
// cp.async. Shared tiles are [rows][hd] with 16-byte chunks XOR-swizzled by (row & 7) so ldmatrix
// is conflict-free. The softmax runs in the log2 domain (scale·log2 e folded into one multiply).
// P and dS are rounded to the input dtype before their products (as FlashAttention-2 does).
// Causal tiles above the diagonal are skipped; query tiles are scheduled heaviest first.
// Shared memory: forward 80 KB, dq 96 KB, dk/dv 64.5 KB at hd 128 (the launcher raises the limit).
// Lane-constant ldmatrix offsets and cp.async addresses are computed once per kernel (the first
// version recomputed them per instruction and ran integer-bound at 143 TFLOP/s forward).
// Measured vs the CPU reference on the H100 (tests/cuda_attention_test.ts, 2026-11-23), ‖·‖₂
// relative: bf16 out ≤ 2.0e-3, dq/dk/dv ≤ 2.7e-3, lse ≤ 6e-8; f16 out 2.1e-4, grads ≤ 3.3e-4.
// Speed at B=8, T=2048, 32/8 heads, hd 128: forward 1.03 ms (267 TFLOP/s), backward 3.75 ms
// (183 TFLOP/s counted as 2.5× the forward; the dq pass recomputes S and dP, so 3.5× is executed).
#include "common.cuh"

#define LOG2E_F 1.4426950408889634f
#define LN2_F 0.6931471805599453f

template <typename T>
struct Mma;

template <>
struct Mma<__nv_bfloat16> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) { return pack_bf16x2(lo, hi); }
};

template <>
struct Mma<__half> {
  static __device__ __forceinline__ void run(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) { return pack_f16x2(lo, hi); }
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;  // 0 source bytes: the 16 destination bytes are zero-filled
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/** Byte offset of 16-byte chunk `chunk` of row `row` in a swizzled [rows][HD] 2-byte tile. */
template <int HD>
__device__ __forceinline__ uint32_t swz(int row, int chunk) {
  return (uint32_t)(row * (HD * 2) + ((chunk ^ (row & 7)) << 4));
}

/**
 * cp.async a [ROWS][HD] tile of rows [row0, row0+ROWS) (zero rows at or past T). Thread t always
 * copies chunk t % CPR of rows t / CPR + m·RPP, so its swizzled destination and its source advance
 * by constants: two adds per 16-byte copy.
 */
template <int ROWS, int HD>
__device__ __forceinline__ void load_tile(uint32_t sbase, const unsigned short* g, i64 ld, int row0, int T) {
  constexpr int CPR = HD / 8, RPP = 128 / CPR, PASSES = ROWS / RPP;
  static_assert(ROWS % RPP == 0 && RPP % 8 == 0, "tile rows must be a multiple of the rows per pass");
  const int r = threadIdx.x / CPR, c = threadIdx.x % CPR;
  const uint32_t d0 = sbase + swz<HD>(r, c);
  const unsigned short* s0 = g + (i64)(row0 + r) * ld + c * 8;
  const i64 step = (i64)RPP * ld;
#pragma unroll
  for (int m = 0; m < PASSES; m++) {
    const bool ok = row0 + r + m * RPP < T;
    cp_async16(d0 + m * RPP * HD * 2, ok ? s0 + m * step : g, ok);
  }
}

/**
 * Per-lane ldmatrix offsets into swizzled [rows][HD] tiles, computed once per kernel: with tile rows
 * starting at multiples of 16, (row & 7) is (lane & 7), and the chunk pair index only flips high
 * bits, so an address is base + row offset + (lane column ^ pair·32): one LOP3 and one add.
 */
template <int HD>
struct LaneOffsets {
  uint32_t aRow, aCol, bRow, bCol, tRow, tCol;
  __device__ __forceinline__ explicit LaneOffsets(int lane) {
    const uint32_t l7 = lane & 7;
    aRow = (lane & 15) * HD * 2;
    aCol = (((uint32_t)lane >> 4) ^ l7) << 4;
    bRow = (l7 + ((lane >> 4) << 3)) * HD * 2;
    bCol = ((((uint32_t)lane >> 3) & 1) ^ l7) << 4;
    tRow = (l7 + (((lane >> 3) & 1) << 3)) * HD * 2;
    tCol = (((uint32_t)lane >> 4) ^ l7) << 4;
  }
  /** A operand 16×16: rows r0.. of the tile, k columns pair kk (16·kk..). */
  __device__ __forceinline__ uint32_t a(uint32_t base, int r0, int kk) const {
    return base + r0 * HD * 2 + aRow + (aCol ^ (uint32_t)(kk * 32));
  }
  /** B operand, two n-tiles: tile rows n0..n0+15 are n, columns pair kk are k (K-like, no transpose). */
  __device__ __forceinline__ uint32_t b(uint32_t base, int n0, int kk) const {
    return base + n0 * HD * 2 + bRow + (bCol ^ (uint32_t)(kk * 32));
  }
  /** B operand, two n-tiles: tile rows k0..k0+15 are k, columns pair np are n (V-like, transposed). */
  __device__ __forceinline__ uint32_t t(uint32_t base, int k0, int np) const {
    return base + k0 * HD * 2 + tRow + (tCol ^ (uint32_t)(np * 32));
  }
};

// ------------------------------------------------------------------------------------------------
// Forward
// ------------------------------------------------------------------------------------------------
template <typename T, int HD>
__device__ __forceinline__ void flash_fwd(u64 out, u64 lse, u64 q, u64 k, u64 v, int Tn, int H, int KV,
                                          float scaleLog2) {
  constexpr int BM = 64, BN = 64;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sK = sQ + BM * HD * 2;
  const uint32_t sV = sK + 2 * BN * HD * 2;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const LaneOffsets<HD> lo(lane);
  const int qt = gridDim.z - 1 - blockIdx.z;  // heaviest query tiles first
  const int h = blockIdx.x, b = blockIdx.y;
  const int kvh = h / (H / KV);
  const i64 qld = (i64)H * HD, kld = (i64)KV * HD;
  const unsigned short* qg = (const unsigned short*)q + (i64)b * Tn * qld + (i64)h * HD;
  const unsigned short* kg = (const unsigned short*)k + (i64)b * Tn * kld + (i64)kvh * HD;
  const unsigned short* vg = (const unsigned short*)v + (i64)b * Tn * kld + (i64)kvh * HD;
  const int q0 = qt * BM;
  load_tile<BM, HD>(sQ, qg, qld, q0, Tn);
  load_tile<BN, HD>(sK, kg, kld, 0, Tn);
  load_tile<BN, HD>(sV, vg, kld, 0, Tn);
  cp_async_commit();

  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  uint32_t qf[HD / 16][4];
  const int r0 = q0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
  const int nkt = qt + 1;

  for (int j = 0; j < nkt; j++) {
    const int st = j & 1;
    if (j + 1 < nkt) {
      load_tile<BN, HD>(sK + (st ^ 1) * BN * HD * 2, kg, kld, (j + 1) * BN, Tn);
      load_tile<BN, HD>(sV + (st ^ 1) * BN * HD * 2, vg, kld, (j + 1) * BN, Tn);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int kk = 0; kk < HD / 16; kk++) ldsm_x4(qf[kk], lo.a(sQ, warp * 16, kk));
    }
    const uint32_t kb = sK + st * BN * HD * 2, vb = sV + st * BN * HD * 2;

    float s[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; i++) s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
      for (int np = 0; np < BN / 16; np++) {
        uint32_t bb[4];
        ldsm_x4(bb, lo.b(kb, np * 16, kk));
        Mma<T>::run(s[2 * np], qf[kk], bb[0], bb[1]);
        Mma<T>::run(s[2 * np + 1], qf[kk], bb[2], bb[3]);
      }
    }
    // Mask in the raw score domain (scale > 0), then p = 2^(s·scale·log2e − m·scale·log2e): one FFMA.
    if (j == nkt - 1 || (j + 1) * BN > Tn) {
#pragma unroll
      for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int col = j * BN + nt * 8 + (lane & 3) * 2 + (e & 1);
          if (col > (e < 2 ? r0 : r1) || col >= Tn) s[nt][e] = -INFINITY;
        }
      }
    }
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) {
      mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
      mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float base0 = mn0 == -INFINITY ? 0.0f : mn0 * scaleLog2, base1 = mn1 == -INFINITY ? 0.0f : mn1 * scaleLog2;
    const float c0 = exp2f(m0 * scaleLog2 - base0), c1 = exp2f(m1 * scaleLog2 - base1);
    m0 = mn0, m1 = mn1;
    l0 *= c0, l1 *= c1;
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) {
      s[nt][0] = exp2f(fmaf(s[nt][0], scaleLog2, -base0));
      s[nt][1] = exp2f(fmaf(s[nt][1], scaleLog2, -base0));
      s[nt][2] = exp2f(fmaf(s[nt][2], scaleLog2, -base1));
      s[nt][3] = exp2f(fmaf(s[nt][3], scaleLog2, -base1));
      l0 += s[nt][0] + s[nt][1];
      l1 += s[nt][2] + s[nt][3];
    }
#pragma unroll
    for (int i = 0; i < HD / 8; i++) {
      o[i][0] *= c0, o[i][1] *= c0, o[i][2] *= c1, o[i][3] *= c1;
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      const uint32_t a[4] = {Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]), Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                             Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < HD / 16; np++) {
        uint32_t bb[4];
        ldsm_x4_t(bb, lo.t(vb, kk * 16, np));
        Mma<T>::run(o[2 * np], a, bb[0], bb[1]);
        Mma<T>::run(o[2 * np + 1], a, bb[2], bb[3]);
      }
    }
    __syncthreads();
  }
  l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
  l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
  l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  unsigned short* og = (unsigned short*)out + (i64)b * Tn * qld + (i64)h * HD;
#pragma unroll
  for (int i = 0; i < HD / 8; i++) {
    const int col = i * 8 + (lane & 3) * 2;
    if (r0 < Tn) *(uint32_t*)(og + (i64)r0 * qld + col) = Mma<T>::pack(o[i][0] * inv0, o[i][1] * inv0);
    if (r1 < Tn) *(uint32_t*)(og + (i64)r1 * qld + col) = Mma<T>::pack(o[i][2] * inv1, o[i][3] * inv1);
  }
  if ((lane & 3) == 0) {
    float* lg = (float*)lse + ((i64)b * H + h) * Tn;
    if (r0 < Tn) lg[r0] = m0 * scaleLog2 * LN2_F + logf(l0);
    if (r1 < Tn) lg[r1] = m1 * scaleLog2 * LN2_F + logf(l1);
  }
}

// ------------------------------------------------------------------------------------------------
// Backward, query-stationary: dq = scale · Σ_j dS_j K_j with dS = P ∘ (dO·Vᵀ − delta)
// ------------------------------------------------------------------------------------------------
template <typename T, int HD>
__device__ __forceinline__ void flash_bwd_dq(u64 dq, u64 q, u64 k, u64 v, u64 dout, u64 lse, u64 delta, int Tn,
                                             int H, int KV, float scale, float scaleLog2) {
  constexpr int BM = 64, BN = 64;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sQ = smem_u32(smem);
  const uint32_t sDO = sQ + BM * HD * 2;
  const uint32_t sK = sDO + BM * HD * 2;
  const uint32_t sV = sK + 2 * BN * HD * 2;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const LaneOffsets<HD> lo(lane);
  const int qt = gridDim.z - 1 - blockIdx.z;  // heaviest query tiles first
  const int h = blockIdx.x, b = blockIdx.y;
  const int kvh = h / (H / KV);
  const i64 qld = (i64)H * HD, kld = (i64)KV * HD;
  const unsigned short* qg = (const unsigned short*)q + (i64)b * Tn * qld + (i64)h * HD;
  const unsigned short* dog = (const unsigned short*)dout + (i64)b * Tn * qld + (i64)h * HD;
  const unsigned short* kg = (const unsigned short*)k + (i64)b * Tn * kld + (i64)kvh * HD;
  const unsigned short* vg = (const unsigned short*)v + (i64)b * Tn * kld + (i64)kvh * HD;
  const int q0 = qt * BM;
  load_tile<BM, HD>(sQ, qg, qld, q0, Tn);
  load_tile<BM, HD>(sDO, dog, qld, q0, Tn);
  load_tile<BN, HD>(sK, kg, kld, 0, Tn);
  load_tile<BN, HD>(sV, vg, kld, 0, Tn);
  cp_async_commit();

  const int r0 = q0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
  const float* lrow = (const float*)lse + ((i64)b * H + h) * Tn;
  const float* drow = (const float*)delta + ((i64)b * H + h) * Tn;
  const float L0 = r0 < Tn ? lrow[r0] * LOG2E_F : 0.0f, L1 = r1 < Tn ? lrow[r1] * LOG2E_F : 0.0f;
  const float D0 = r0 < Tn ? drow[r0] : 0.0f, D1 = r1 < Tn ? drow[r1] : 0.0f;

  float acc[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; i++) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
  const int nkt = qt + 1;
  for (int j = 0; j < nkt; j++) {
    const int st = j & 1;
    if (j + 1 < nkt) {
      load_tile<BN, HD>(sK + (st ^ 1) * BN * HD * 2, kg, kld, (j + 1) * BN, Tn);
      load_tile<BN, HD>(sV + (st ^ 1) * BN * HD * 2, vg, kld, (j + 1) * BN, Tn);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const uint32_t kb = sK + st * BN * HD * 2, vb = sV + st * BN * HD * 2;
    float s[BN / 8][4], dp[BN / 8][4];
#pragma unroll
    for (int i = 0; i < BN / 8; i++) {
      s[i][0] = s[i][1] = s[i][2] = s[i][3] = 0.0f;
      dp[i][0] = dp[i][1] = dp[i][2] = dp[i][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      uint32_t qa[4], da[4];
      ldsm_x4(qa, lo.a(sQ, warp * 16, kk));
      ldsm_x4(da, lo.a(sDO, warp * 16, kk));
#pragma unroll
      for (int np = 0; np < BN / 16; np++) {
        uint32_t bb[4], cc[4];
        ldsm_x4(bb, lo.b(kb, np * 16, kk));
        ldsm_x4(cc, lo.b(vb, np * 16, kk));
        Mma<T>::run(s[2 * np], qa, bb[0], bb[1]);
        Mma<T>::run(s[2 * np + 1], qa, bb[2], bb[3]);
        Mma<T>::run(dp[2 * np], da, cc[0], cc[1]);
        Mma<T>::run(dp[2 * np + 1], da, cc[2], cc[3]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = j * BN + nt * 8 + (lane & 3) * 2 + (e & 1);
        const int row = e < 2 ? r0 : r1;
        float p = exp2f(fmaf(s[nt][e], scaleLog2, -(e < 2 ? L0 : L1)));
        if (col > row || col >= Tn) p = 0.0f;
        s[nt][e] = p * (dp[nt][e] - (e < 2 ? D0 : D1));
      }
    }
#pragma unroll
    for (int kk = 0; kk < BN / 16; kk++) {
      const uint32_t a[4] = {Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]), Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                             Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < HD / 16; np++) {
        uint32_t bb[4];
        ldsm_x4_t(bb, lo.t(kb, kk * 16, np));
        Mma<T>::run(acc[2 * np], a, bb[0], bb[1]);
        Mma<T>::run(acc[2 * np + 1], a, bb[2], bb[3]);
      }
    }
    __syncthreads();
  }
  unsigned short* dqg = (unsigned short*)dq + (i64)b * Tn * qld + (i64)h * HD;
#pragma unroll
  for (int i = 0; i < HD / 8; i++) {
    const int col = i * 8 + (lane & 3) * 2;
    if (r0 < Tn) *(uint32_t*)(dqg + (i64)r0 * qld + col) = Mma<T>::pack(acc[i][0] * scale, acc[i][1] * scale);
    if (r1 < Tn) *(uint32_t*)(dqg + (i64)r1 * qld + col) = Mma<T>::pack(acc[i][2] * scale, acc[i][3] * scale);
  }
}

// ------------------------------------------------------------------------------------------------
// Backward, key-stationary: dV = Σ Pᵀ dO, dK = scale · Σ dSᵀ Q over the group's heads and queries
// ------------------------------------------------------------------------------------------------
template <typename T, int HD, int BQ>
__device__ __forceinline__ void flash_bwd_dkdv(u64 dk, u64 dv, u64 q, u64 k, u64 v, u64 dout, u64 lse,
                                               u64 delta, int Tn, int H, int KV, float scale, float scaleLog2) {
  constexpr int BK = 64;
  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t sK = smem_u32(smem);
  const uint32_t sV = sK + BK * HD * 2;
  const uint32_t sQ = sV + BK * HD * 2;       // 2 stages of [BQ][HD]
  const uint32_t sDO = sQ + 2 * BQ * HD * 2;  // 2 stages
  float* sL = (float*)(smem + 2 * BK * HD * 2 + 4 * BQ * HD * 2);  // [2][BQ]
  float* sD = sL + 2 * BQ;                                         // [2][BQ]
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const LaneOffsets<HD> lo(lane);
  const int kt = blockIdx.z;  // heaviest key tiles (the most queries after them) first
  const int kvh = blockIdx.x, b = blockIdx.y;
  const int group = H / KV;
  const i64 qld = (i64)H * HD, kld = (i64)KV * HD;
  const unsigned short* kg = (const unsigned short*)k + (i64)b * Tn * kld + (i64)kvh * HD;
  const unsigned short* vg = (const unsigned short*)v + (i64)b * Tn * kld + (i64)kvh * HD;
  const int k0 = kt * BK;
  const int i0 = k0 / BQ, nqt = (Tn + BQ - 1) / BQ, nI = nqt - i0;
  const int total = group * nI;

  // Stage `stage` ← query tile `it` (head, rows) with its lse (log2 units) and delta.
  auto load_q = [&](int it, int stage) {
    const int h = kvh * group + it / nI, i = i0 + it % nI;
    const unsigned short* qg = (const unsigned short*)q + (i64)b * Tn * qld + (i64)h * HD;
    const unsigned short* dog = (const unsigned short*)dout + (i64)b * Tn * qld + (i64)h * HD;
    load_tile<BQ, HD>(sQ + stage * BQ * HD * 2, qg, qld, i * BQ, Tn);
    load_tile<BQ, HD>(sDO + stage * BQ * HD * 2, dog, qld, i * BQ, Tn);
    if (threadIdx.x < BQ) {
      const int row = i * BQ + threadIdx.x;
      const i64 li = ((i64)b * H + h) * Tn + row;
      sL[stage * BQ + threadIdx.x] = row < Tn ? ((const float*)lse)[li] * LOG2E_F : 0.0f;
      sD[stage * BQ + threadIdx.x] = row < Tn ? ((const float*)delta)[li] : 0.0f;
    }
  };
  load_tile<BK, HD>(sK, kg, kld, k0, Tn);
  load_tile<BK, HD>(sV, vg, kld, k0, Tn);
  load_q(0, 0);
  cp_async_commit();

  float ak[HD / 8][4], av[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; i++) {
    ak[i][0] = ak[i][1] = ak[i][2] = ak[i][3] = 0.0f;
    av[i][0] = av[i][1] = av[i][2] = av[i][3] = 0.0f;
  }
  const int kr0 = k0 + warp * 16 + (lane >> 2), kr1 = kr0 + 8;
  for (int it = 0; it < total; it++) {
    const int st = it & 1;
    if (it + 1 < total) {
      load_q(it + 1, st ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int i = i0 + it % nI;
    const uint32_t qb = sQ + st * BQ * HD * 2, db = sDO + st * BQ * HD * 2;
    const float* Ls = sL + st * BQ;
    const float* Ds = sD + st * BQ;
    float s[BQ / 8][4], dp[BQ / 8][4];
#pragma unroll
    for (int n = 0; n < BQ / 8; n++) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
      dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
    }
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      uint32_t ka[4], va[4];
      ldsm_x4(ka, lo.a(sK, warp * 16, kk));
      ldsm_x4(va, lo.a(sV, warp * 16, kk));
#pragma unroll
      for (int np = 0; np < BQ / 16; np++) {
        uint32_t bb[4], cc[4];
        ldsm_x4(bb, lo.b(qb, np * 16, kk));
        ldsm_x4(cc, lo.b(db, np * 16, kk));
        Mma<T>::run(s[2 * np], ka, bb[0], bb[1]);
        Mma<T>::run(s[2 * np + 1], ka, bb[2], bb[3]);
        Mma<T>::run(dp[2 * np], va, cc[0], cc[1]);
        Mma<T>::run(dp[2 * np + 1], va, cc[2], cc[3]);
      }
    }
#pragma unroll
    for (int nt = 0; nt < BQ / 8; nt++) {
      const int qc = nt * 8 + (lane & 3) * 2;
      const float2 L = *reinterpret_cast<const float2*>(Ls + qc);
      const float2 D = *reinterpret_cast<const float2*>(Ds + qc);
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int qrow = i * BQ + qc + (e & 1);
        const int key = e < 2 ? kr0 : kr1;
        float p = exp2f(fmaf(s[nt][e], scaleLog2, -((e & 1) ? L.y : L.x)));
        if (key > qrow || qrow >= Tn) p = 0.0f;
        s[nt][e] = p;
        dp[nt][e] = p * (dp[nt][e] - ((e & 1) ? D.y : D.x));
      }
    }
#pragma unroll
    for (int kk = 0; kk < BQ / 16; kk++) {
      const uint32_t pa[4] = {Mma<T>::pack(s[2 * kk][0], s[2 * kk][1]), Mma<T>::pack(s[2 * kk][2], s[2 * kk][3]),
                              Mma<T>::pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              Mma<T>::pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      const uint32_t da[4] = {Mma<T>::pack(dp[2 * kk][0], dp[2 * kk][1]), Mma<T>::pack(dp[2 * kk][2], dp[2 * kk][3]),
                              Mma<T>::pack(dp[2 * kk + 1][0], dp[2 * kk + 1][1]),
                              Mma<T>::pack(dp[2 * kk + 1][2], dp[2 * kk + 1][3])};
#pragma unroll
      for (int np = 0; np < HD / 16; np++) {
        uint32_t bb[4], cc[4];
        ldsm_x4_t(bb, lo.t(db, kk * 16, np));
        ldsm_x4_t(cc, lo.t(qb, kk * 16, np));
        Mma<T>::run(av[2 * np], pa, bb[0], bb[1]);
        Mma<T>::run(av[2 * np + 1], pa, bb[2], bb[3]);
        Mma<T>::run(ak[2 * np], da, cc[0], cc[1]);
        Mma<T>::run(ak[2 * np + 1], da, cc[2], cc[3]);
      }
    }
    __syncthreads();
  }
  unsigned short* dkg = (unsigned short*)dk + (i64)b * Tn * kld + (i64)kvh * HD;
  unsigned short* dvg = (unsigned short*)dv + (i64)b * Tn * kld + (i64)kvh * HD;
#pragma unroll
  for (int n = 0; n < HD / 8; n++) {
    const int col = n * 8 + (lane & 3) * 2;
    if (kr0 < Tn) {
      *(uint32_t*)(dkg + (i64)kr0 * kld + col) = Mma<T>::pack(ak[n][0] * scale, ak[n][1] * scale);
      *(uint32_t*)(dvg + (i64)kr0 * kld + col) = Mma<T>::pack(av[n][0], av[n][1]);
    }
    if (kr1 < Tn) {
      *(uint32_t*)(dkg + (i64)kr1 * kld + col) = Mma<T>::pack(ak[n][2] * scale, ak[n][3] * scale);
      *(uint32_t*)(dvg + (i64)kr1 * kld + col) = Mma<T>::pack(av[n][2], av[n][3]);
    }
  }
}

#define FLASH_KERNELS(T, TN, HD, BQ)                                                                            \
  extern "C" __global__ void __launch_bounds__(128, 2) flash_fwd_##TN##_##HD(u64 out, u64 lse, u64 q, u64 k, u64 v, \
                                                                          int Tn, int H, int KV, float sl2) {   \
    flash_fwd<T, HD>(out, lse, q, k, v, Tn, H, KV, sl2);                                                       \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(128, 2)                                                            \
      flash_bwd_dq_##TN##_##HD(u64 dq, u64 q, u64 k, u64 v, u64 dout, u64 lse, u64 delta, int Tn, int H, int KV, \
                               float scale, float sl2) {                                                        \
    flash_bwd_dq<T, HD>(dq, q, k, v, dout, lse, delta, Tn, H, KV, scale, sl2);                                 \
  }                                                                                                             \
  extern "C" __global__ void __launch_bounds__(128, 2)                                                            \
      flash_bwd_dkdv_##TN##_##HD(u64 dk, u64 dv, u64 q, u64 k, u64 v, u64 dout, u64 lse, u64 delta, int Tn,     \
                                 int H, int KV, float scale, float sl2) {                                       \
    flash_bwd_dkdv<T, HD, BQ>(dk, dv, q, k, v, dout, lse, delta, Tn, H, KV, scale, sl2);                       \
  }

FLASH_KERNELS(__nv_bfloat16, bf16, 64, 64)
FLASH_KERNELS(__nv_bfloat16, bf16, 128, 32)
FLASH_KERNELS(__half, f16, 64, 64)
FLASH_KERNELS(__half, f16, 128, 32)
