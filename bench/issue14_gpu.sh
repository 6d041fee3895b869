#!/usr/bin/env bash
# Issue 14 on the GPU machine, in one call per STEPS list: the determinism and resume tests on CUDA
# and WebGPU, then peak host RSS and peak GPU memory of the CLI at the Llama-3-8B shape (4 layers,
# vocabulary 151936) and at the Llama-3-70B shape (3 layers: hidden 8192, intermediate 28672, 64/8
# heads), each with auto_round and gguf:q4_k_m outputs (figures: bench/webgpu_8b.sh's `quant`).
#   device run carry=[".device","node_modules/@huggingface","node_modules/hyparquet",".carry"] \
#     command="STEPS='tests ckpt8 d8 g8' bash bench/issue14_gpu.sh"
# Steps: tests · ckpt8 d8 (CUDA default, auto_round) l8 (CUDA light) g8 (CUDA RTN gguf:q4_k_m)
#        lm8 (CUDA default --low_gpu_mem_usage) · ckpt70 l70 (CUDA light) g70 (RTN gguf:q4_k_m)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
I14_STEPS="${STEPS:-tests ckpt8 d8 g8}"
STEPS=""
source bench/webgpu_8b.sh --lib
STEPS="$I14_STEPS"
t0=$(date +%s)
if has tests; then
  AUTOROUND_REQUIRE_GPU=1 timeout 420 deno test -A --no-check ${TESTS:-tests/cuda_determinism_test.ts \
    tests/webgpu_determinism_test.ts tests/cuda_resume_test.ts tests/gguf_row_chunks_test.ts} > "$OUT/tests.log" 2>&1
  note "tests rc $? $(sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "passed|failed" | tail -1) [$(($(date +%s) - t0)) s]"
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "FAILED|^error|reference run|split|differ|figure" | head -20 |
    tee -a "$W/summary.txt"
fi
C8=/tmp/llama8b-shape C70=/tmp/llama70b-shape
if has ckpt8 && [ ! -f $C8/config.json ]; then
  python3 bench/make_random_llama.py --out $C8 --layers 4 --tokenizer .carry/qwen3-tokenizer > "$W/ckpt8.log" 2>&1
  note "ckpt8 rc $? [$(($(date +%s) - t0)) s]"
fi
if has ckpt70 && [ ! -f $C70/config.json ]; then
  python3 bench/make_random_llama.py --out $C70 --layers 3 --hidden 8192 --intermediate 28672 --heads 64 \
    --kv_heads 8 --tokenizer .carry/qwen3-tokenizer > "$W/ckpt70.log" 2>&1
  note "ckpt70 rc $? [$(($(date +%s) - t0)) s]"
fi
CKPT=$C8
has d8 && quant d8 cuda default
has l8 && quant l8 cuda light
has lm8 && quant lm8 cuda default --low_gpu_mem_usage
has g8 && quant g8 cuda rtn --format gguf:q4_k_m
CKPT=$C70
has l70 && quant l70 cuda light
has g70 && quant g70 cuda rtn --format gguf:q4_k_m
for f in "$W"/*.log; do grep -h "^summary\|peak RSS\|wrote " "$f" 2>/dev/null | tail -2 | sed "s|^|$(basename "$f"): |"; done >> "$W/summary.txt"
cp "$W/summary.txt" "$OUT/summary.txt"
echo "== done [$(($(date +%s) - t0)) s]"; cat "$OUT/summary.txt"
