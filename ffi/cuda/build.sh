#!/usr/bin/env bash
# Compile the CUDA kernels to PTX for the backends' run-time module load (ffi/cuda/ptx.ts picks one
# by the device's compute capability). Run after editing any .cu file and commit the .ptx files:
# the program embeds them, so it needs only the driver and cuBLASLt at run time.
#   ffi/cuda/build.sh            # writes kernels_sm{80,90}.ptx, flash_sm{80,90}.ptx and gguf_sm{80,90}.ptx
#   ffi/cuda/build.sh --report   # also prints registers / spills / shared memory per kernel (sm_90)
set -euo pipefail
cd "$(dirname "$0")"
NVCC=${NVCC:-nvcc}
FLAGS=(-std=c++17 -O3)
pids=()
for arch in 80 90; do
  "$NVCC" "${FLAGS[@]}" -ptx -arch=compute_$arch kernels.cu -o kernels_sm$arch.ptx & pids+=($!)
  "$NVCC" "${FLAGS[@]}" -ptx -arch=compute_$arch flash_attention.cu -o flash_sm$arch.ptx & pids+=($!)
  "$NVCC" "${FLAGS[@]}" -ptx -arch=compute_$arch gguf.cu -o gguf_sm$arch.ptx & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
if [[ "${1:-}" == "--report" ]]; then
  for f in kernels flash_attention gguf; do
    "$NVCC" "${FLAGS[@]}" -cubin -arch=sm_90 --resource-usage $f.cu -o /tmp/autoround_$f.cubin 2>&1 |
      grep -E "Function properties|registers|spill" | paste - - - | sed -E 's/ptxas info\s*: //g'
  done
fi
ls -l ./*.ptx
