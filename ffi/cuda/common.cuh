// Shared device helpers for every kernel family: dtype codes, scalar and 8/4-wide vector loads and
// stores that convert to and from f32, and warp reductions.
//
// Layout: tensors are dense, row-major, addressed by element index. A dtype travels as an int code
// (DT_* below, the same numbers as DTYPE_CODE in src/backend/cuda/tensor.ts) so one kernel serves
// every storage dtype; the switch is uniform across a warp and costs a few instructions per element.
// The vector helpers need the element index to be a multiple of their width and the base pointer
// 16-byte aligned: the launcher checks this on the host and passes `vec = 0` otherwise.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define DT_I32 3
#define DT_U8 4

typedef unsigned long long u64;
typedef long long i64;

__device__ __forceinline__ float bf16_bits_to_f32(uint32_t bits16) { return __uint_as_float(bits16 << 16); }

__device__ __forceinline__ float ldf(const void* p, int dt, i64 i) {
  switch (dt) {
    case DT_F32: return ((const float*)p)[i];
    case DT_F16: return __half2float(((const __half*)p)[i]);
    case DT_BF16: return bf16_bits_to_f32(((const unsigned short*)p)[i]);
    case DT_I32: return (float)((const int*)p)[i];
    default: return (float)((const unsigned char*)p)[i];
  }
}

__device__ __forceinline__ void stf(void* p, int dt, i64 i, float v) {
  switch (dt) {
    case DT_F32: ((float*)p)[i] = v; break;
    case DT_F16: ((__half*)p)[i] = __float2half_rn(v); break;
    case DT_BF16: ((__nv_bfloat16*)p)[i] = __float2bfloat16_rn(v); break;
    // Truncation toward zero, like a JavaScript Int32Array/Uint8Array store of an in-range value.
    case DT_I32: ((int*)p)[i] = (int)v; break;
    default: ((unsigned char*)p)[i] = (unsigned char)(int)v; break;
  }
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}
__device__ __forceinline__ float2 unpack_f16x2(uint32_t u) {
  __half2 h = *reinterpret_cast<__half2*>(&u);
  return __half22float2(h);
}

/** v[0..8) ← p[i..i+8); i multiple of 8, p 16-byte aligned (vec path). */
__device__ __forceinline__ void ld8(const void* p, int dt, i64 i, float v[8]) {
  if (dt == DT_F32) {
    const float4 a = *(const float4*)((const float*)p + i);
    const float4 b = *(const float4*)((const float*)p + i + 4);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  } else if (dt == DT_BF16) {
    const uint4 r = *(const uint4*)((const unsigned short*)p + i);
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      v[2 * j] = __uint_as_float(w[j] << 16);
      v[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
    }
  } else if (dt == DT_F16) {
    const uint4 r = *(const uint4*)((const unsigned short*)p + i);
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const float2 f = unpack_f16x2(w[j]);
      v[2 * j] = f.x, v[2 * j + 1] = f.y;
    }
  } else {
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = ldf(p, dt, i + j);
  }
}

/** p[i..i+8) ← v (rounded to nearest even for 16-bit dtypes). */
__device__ __forceinline__ void st8(void* p, int dt, i64 i, const float v[8]) {
  if (dt == DT_F32) {
    *(float4*)((float*)p + i) = make_float4(v[0], v[1], v[2], v[3]);
    *(float4*)((float*)p + i + 4) = make_float4(v[4], v[5], v[6], v[7]);
  } else if (dt == DT_BF16) {
    uint4 r;
    r.x = pack_bf16x2(v[0], v[1]), r.y = pack_bf16x2(v[2], v[3]);
    r.z = pack_bf16x2(v[4], v[5]), r.w = pack_bf16x2(v[6], v[7]);
    *(uint4*)((unsigned short*)p + i) = r;
  } else if (dt == DT_F16) {
    uint4 r;
    r.x = pack_f16x2(v[0], v[1]), r.y = pack_f16x2(v[2], v[3]);
    r.z = pack_f16x2(v[4], v[5]), r.w = pack_f16x2(v[6], v[7]);
    *(uint4*)((unsigned short*)p + i) = r;
  } else {
#pragma unroll
    for (int j = 0; j < 8; j++) stf(p, dt, i + j, v[j]);
  }
}

/** v[0..4) ← p[i..i+4); i multiple of 4, p 16-byte aligned. */
__device__ __forceinline__ void ld4(const void* p, int dt, i64 i, float v[4]) {
  if (dt == DT_F32) {
    const float4 a = *(const float4*)((const float*)p + i);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  } else if (dt == DT_BF16) {
    const uint2 r = *(const uint2*)((const unsigned short*)p + i);
    v[0] = __uint_as_float(r.x << 16), v[1] = __uint_as_float(r.x & 0xffff0000u);
    v[2] = __uint_as_float(r.y << 16), v[3] = __uint_as_float(r.y & 0xffff0000u);
  } else if (dt == DT_F16) {
    const uint2 r = *(const uint2*)((const unsigned short*)p + i);
    const float2 a = unpack_f16x2(r.x), b = unpack_f16x2(r.y);
    v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
  } else {
#pragma unroll
    for (int j = 0; j < 4; j++) v[j] = ldf(p, dt, i + j);
  }
}

__device__ __forceinline__ void st4(void* p, int dt, i64 i, const float v[4]) {
  if (dt == DT_F32) {
    *(float4*)((float*)p + i) = make_float4(v[0], v[1], v[2], v[3]);
  } else if (dt == DT_BF16) {
    *(uint2*)((unsigned short*)p + i) = make_uint2(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]));
  } else if (dt == DT_F16) {
    *(uint2*)((unsigned short*)p + i) = make_uint2(pack_f16x2(v[0], v[1]), pack_f16x2(v[2], v[3]));
  } else {
#pragma unroll
    for (int j = 0; j < 4; j++) stf(p, dt, i + j, v[j]);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/** Global thread index and grid-wide stride, 64-bit. */
__device__ __forceinline__ i64 gtid() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 gstride() { return (i64)gridDim.x * blockDim.x; }

#define PTR(x) ((void*)(x))
#define CPTR(x) ((const void*)(x))
