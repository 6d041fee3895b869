// The translation unit build.sh compiles to the core PTX module (kernels_sm80.ptx, kernels_sm90.ptx):
// every kernel family but the tensor-core attention, which is its own module (flash_sm*.ptx) so that
// its JIT compile happens only in programs that run attention. Each included file documents its
// layout, tiling and measured error bound.
#include "elementwise.cu"
#include "norm.cu"
#include "loss.cu"
#include "fake_quant.cu"
#include "attention.cu"
#include "gemm.cu"
