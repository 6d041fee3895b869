// The GGUF quantizer on CUDA, its own PTX module (gguf_sm*.ptx; src/backend/cuda/gguf.ts launches it,
// Backend.ggufQuantize): AutoRound's per-group parameter searches, the K-quants' double quantization
// and the packed llama.cpp block bytes, with the host reference's float32 operation order
// (gguf_math.cuh), so the bytes equal src/qmath/gguf/quantize.ts + packBlocks.
//
// Layout: w [N, K] row-major (f32, bf16 or f16), groups of GS consecutive weights (K a multiple of the
// block size); imatrix f32 [K]; grid / sgrid the host's candidate factors; par f32 [groups·3] (scale;
// wmin, zero point or export min; Σ importance); sup f32 [blocks·2] (d, dmin); out the packed bytes.
// Tiling: searches one thread per group (the group in registers, its sums in torch's sequential lane
// order: no cross-thread reduction), the double quantization one thread per super-block, the packing
// one thread per output byte (each byte re-derives the few codes it holds; consecutive threads write
// consecutive bytes).
// Error bound: the same float32 operations as the host in the same order: bytes equal the host's.
// Checked here on the CPU by compiling the same functions for the host (tests/cuda_gguf_host_test.ts:
// 0 differing blocks); on the GPU by tests/cuda_gguf_test.ts (to be measured on the H200).
#include "common.cuh"
#include "gguf_search.cuh"
#include "gguf_super.cuh"
#include "gguf_pack.cuh"

/** Load the GS weights of group g and, with an imatrix, their importance. */
template <int GS>
__device__ __forceinline__ void gg_load(u64 w, int dtw, u64 imatrix, i64 g, i64 k, float* x, float* imp) {
  const i64 e0 = g * GS, c0 = e0 % k;
#pragma unroll
  for (int i = 0; i < GS; i++) x[i] = ldf(CPTR(w), dtw, e0 + i);
  if (imatrix) {
#pragma unroll
    for (int i = 0; i < GS; i++) imp[i] = ((const float*)imatrix)[c0 + i];
  }
}

extern "C" __global__ void gg_legacy(u64 w, int dtw, u64 imatrix, u64 grid, u64 par, i64 groups, i64 k,
                                     int type, int flags, int ncand) {
  const i64 g = gtid();
  if (g >= groups) return;
  float x[32], imp[32];
  gg_load<32>(w, dtw, (flags & GG_IMATRIX) ? imatrix : 0, g, k, x, imp);
  gg_legacy_group<32>(x, imp, type, flags, (const float*)grid, ncand, (float*)par + 3 * g);
}

template <int GS>
__device__ __forceinline__ void gg_kasym_impl(u64 w, int dtw, u64 imatrix, u64 grid, u64 par, i64 groups, i64 k,
                                              int bits, int flags, int ncand) {
  const i64 g = gtid();
  if (g >= groups) return;
  float x[GS], imp[GS];
  gg_load<GS>(w, dtw, (flags & GG_IMATRIX) ? imatrix : 0, g, k, x, imp);
  gg_kasym_group<GS>(x, imp, bits, flags, (const float*)grid, ncand, (float*)par + 3 * g);
}
extern "C" __global__ void gg_kasym16(u64 w, int dtw, u64 imatrix, u64 grid, u64 par, i64 groups, i64 k, int bits,
                                      int flags, int ncand) {
  gg_kasym_impl<16>(w, dtw, imatrix, grid, par, groups, k, bits, flags, ncand);
}
extern "C" __global__ void gg_kasym32(u64 w, int dtw, u64 imatrix, u64 grid, u64 par, i64 groups, i64 k, int bits,
                                      int flags, int ncand) {
  gg_kasym_impl<32>(w, dtw, imatrix, grid, par, groups, k, bits, flags, ncand);
}

extern "C" __global__ void gg_ksym16(u64 w, int dtw, u64 imatrix, u64 grid, u64 par, i64 groups, i64 k, int bits,
                                     int flags, int ncand) {
  const i64 g = gtid();
  if (g >= groups) return;
  float x[16], imp[16];
  gg_load<16>(w, dtw, (flags & GG_IMATRIX) ? imatrix : 0, g, k, x, imp);
  ((float*)par)[3 * g] = gg_ksym_group<16>(x, imp, bits, flags, (const float*)grid, ncand);
}

/** Double quantization, one thread per super-block of `sgs` groups (8 or 16). */
extern "C" __global__ void gg_super(u64 par, u64 sup, u64 sgrid, i64 blocks, int sgs, int sym, int superBits,
                                    int flags) {
  const i64 s = gtid();
  if (s >= blocks) return;
  float* p = (float*)par + 3 * sgs * s;
  float* d = (float*)sup + 2 * s;
  if (sym) gg_super_sym(p, d, superBits);
  else if (sgs == 8) gg_super_asym<8>(p, d, superBits, flags, (const float*)sgrid);
  else gg_super_asym<16>(p, d, superBits, flags, (const float*)sgrid);
}

/** Weight j of one block, from device memory of any float dtype. */
struct GgDeviceBlock {
  const void* w;
  int dt;
  i64 base;
  __device__ __forceinline__ float operator()(int j) const { return ldf(w, dt, base + j); }
};

/** Packed bytes, one thread per byte. bs weights and ts bytes per block, `sub` groups per block. */
extern "C" __global__ void gg_pack(u64 w, int dtw, u64 par, u64 sup, u64 out, i64 bytes, int type, int flags,
                                   int bs, int ts, int gs) {
  const i64 at = gtid();
  if (at >= bytes) return;
  const i64 bl = at / ts;
  const int o = (int)(at % ts), sub = bs / gs;
  const GgDeviceBlock x{CPTR(w), dtw, bl * bs};
  const GgBlock b{type, flags, gs, (const float*)par + 3 * sub * bl, (const float*)sup + 2 * bl};
  ((unsigned char*)out)[at] = (unsigned char)gg_block_byte(x, b, o);
}
