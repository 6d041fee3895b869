// Mixture-of-experts row ops (src/backend/family_ops.ts): gather, scatter-add and per-row dots. Float
// math in f32 on loaded values of any storage dtype (ldf/stf); rows are i32.

/** out[i, c] = scale[i]·x[rows[i], c] (scale f32, or 1 when scale = 0). Grid over n·cols elements. */
extern "C" __global__ void moe_gather_rows(u64 out, int dto, u64 x, int dtx, u64 rows, u64 scale, i64 n,
                                           i64 cols) {
  const int* r = (const int*)rows;
  const float* s = (const float*)scale;
  for (i64 e = gtid(); e < n * cols; e += gstride()) {
    const i64 i = e / cols, c = e - i * cols;
    const float v = ldf(CPTR(x), dtx, (i64)r[i] * cols + c);
    stf(PTR(out), dto, e, scale ? v * s[i] : v);
  }
}

/**
 * out[rows[i], c] += scale[i]·src[i, c], rounded to out's dtype after each add (as torch's
 * index_add_). `unique` (the caller guarantees no repeated row): one thread per element, grid over
 * n·cols. Otherwise rows may repeat: each column's thread walks the rows in order (deterministic),
 * grid over cols.
 */
extern "C" __global__ void moe_scatter_add_rows(u64 out, int dto, u64 src, int dts, u64 rows, u64 scale, i64 n,
                                                i64 cols, int unique) {
  const int* r = (const int*)rows;
  const float* s = (const float*)scale;
  if (unique) {
    for (i64 e = gtid(); e < n * cols; e += gstride()) {
      const i64 i = e / cols, o = (i64)r[i] * cols + (e - i * cols);
      const float v = ldf(CPTR(src), dts, e);
      stf(PTR(out), dto, o, ldf(CPTR(out), dto, o) + (scale ? v * s[i] : v));
    }
    return;
  }
  for (i64 c = gtid(); c < cols; c += gstride()) {
    for (i64 i = 0; i < n; i++) {
      const i64 o = (i64)r[i] * cols + c;
      const float v = ldf(CPTR(src), dts, i * cols + c);
      stf(PTR(out), dto, o, ldf(CPTR(out), dto, o) + (scale ? v * s[i] : v));
    }
  }
}

/** out[i] = Σ_c a[i, c]·b[i, c] in f32 (one 256-thread block per row). */
extern "C" __global__ void moe_row_dots(u64 out, u64 a, int dta, u64 b, int dtb, i64 n, i64 cols) {
  __shared__ float part[8];
  for (i64 i = blockIdx.x; i < n; i += gridDim.x) {
    float acc = 0.0f;
    for (i64 c = threadIdx.x; c < cols; c += blockDim.x) {
      acc += ldf(CPTR(a), dta, i * cols + c) * ldf(CPTR(b), dtb, i * cols + c);
    }
    acc = warp_sum(acc);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float t = 0.0f;
      for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += part[w];
      ((float*)out)[i] = t;
    }
    __syncthreads();
  }
}
