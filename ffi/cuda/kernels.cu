// The translation unit build.sh compiles to the core PTX module (kernels_sm80.ptx, kernels_sm90.ptx):
// every kernel family but the tensor-core attention and the GGUF quantizer, which are modules of their
// own (flash_sm*.ptx, gguf_sm*.ptx; gguf.cu) so that their JIT compile happens only in programs that
// use them. Each included file documents its layout, tiling and measured error bound.
#include "elementwise.cu"
#include "norm.cu"
#include "loss.cu"
#include "fake_quant.cu"
#include "attention.cu"
#include "gemm.cu"
#include "moe.cu"
