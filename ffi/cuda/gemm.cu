// Fallback dense product for the rare cases cuBLASLt does not take (no algorithm for a shape,
// integer or mixed operands): C = alpha·op(A)·op(B) + beta·C in f32 arithmetic.
//
// Layout: row-major; op(A) [M, K] read from A [M, K] (lda = K) or A [K, M] when transposed (lda = M);
// likewise B. Tiling: 16×16 output tile per 256-thread block, 16-wide K slices staged through shared
// memory (padded rows, no bank conflicts): a correctness path, not a fast one. Not exercised by the
// H100 runs so far (cuBLASLt had an algorithm for every tested shape); tests/cuda_ops_test.ts forces
// it through gemmTuning.forceFallback.
#include "common.cuh"

extern "C" __global__ void gemm_simple(u64 c, int dtc, u64 a, int dta, u64 b, int dtb, int M, int N, int K,
                                       i64 lda, i64 ldb, i64 ldc, int transA, int transB, float alpha,
                                       float beta) {
  __shared__ float As[16][17], Bs[16][17];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int row = blockIdx.y * 16 + ty, col = blockIdx.x * 16 + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    {
      const int kk = k0 + tx;
      As[ty][tx] = (row < M && kk < K) ? ldf(CPTR(a), dta, transA ? (i64)kk * lda + row : (i64)row * lda + kk) : 0.0f;
    }
    {
      const int kk = k0 + ty;
      Bs[ty][tx] = (kk < K && col < N) ? ldf(CPTR(b), dtb, transB ? (i64)col * ldb + kk : (i64)kk * ldb + col) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 16; j++) acc += As[ty][j] * Bs[j][tx];
    __syncthreads();
  }
  if (row < M && col < N) {
    const i64 ci = (i64)row * ldc + col;
    float r = alpha * acc;
    if (beta != 0.0f) r += beta * ldf(CPTR(c), dtc, ci);
    stf(PTR(c), dtc, ci, r);
  }
}
