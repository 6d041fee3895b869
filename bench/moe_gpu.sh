#!/usr/bin/env bash
# Issue 18 on the GPU machine: the CUDA MoE tests, then the quantize CLI on random checkpoints at the
# Qwen3-30B-A3B shape (hidden 2048, 128 experts × 768, 8 active; LAYERS_Q layers) and the
# Mixtral-8x7B shape (hidden 4096, 8 experts × 14336, 2 active; LAYERS_M layers), vocabulary 151936,
# c4-qwen3 calibration, W4A16: seconds per block, peak host RSS, peak GPU memory (bench/webgpu_8b.sh's
# `quant`). Carried (.cm: see below):
#   device run carry=[".device","node_modules/@huggingface/jinja","node_modules/@huggingface/tokenizers",
#     "node_modules/hyparquet",".cm"] \
#     command="STEPS='tests ckq q3' bash bench/moe_gpu.sh"
# Steps: tests · ckq (make the Qwen3-MoE shape) q3 (CUDA, RECIPE) · ckm (Mixtral shape) mx (CUDA, RECIPE)
#        mxl (CUDA, RECIPE, --low_gpu_mem_usage) · probe (bench/memory_probe.ts on the Mixtral shape)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# A slimmer carry than .carry (the 64 MiB limit): .cm/{c4-qwen3-128x2048.safetensors, qwen3-tokenizer.tar.xz}.
if [ ! -d .carry ] && [ -d .cm ]; then
  mkdir -p .carry && cp .cm/c4-qwen3-128x2048.safetensors .carry/ && tar xJf .cm/qwen3-tokenizer.tar.xz -C .carry
fi
MOE_STEPS="${STEPS:-tests ckq q3}"
STEPS=""
source bench/webgpu_8b.sh --lib
STEPS="$MOE_STEPS"
RECIPE="${RECIPE:-default}"
t0=$(date +%s)
if has tests; then
  AUTOROUND_REQUIRE_GPU=1 timeout 300 deno test -A --no-check tests/cuda_moe_test.ts > "$OUT/tests.log" 2>&1
  note "tests rc $? $(sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "passed|failed" | tail -1) [$(($(date +%s) - t0)) s]"
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "FAILED|^error|rel err|losses" | head -30 | tee -a "$W/summary.txt"
fi
CQ=/tmp/qwen3moe-shape CM=/tmp/mixtral-shape
if has ckq && [ ! -f $CQ/config.json ]; then
  python3 bench/make_random_moe.py --family qwen3_moe --out $CQ --layers "${LAYERS_Q:-2}" \
    --tokenizer .carry/qwen3-tokenizer > "$W/ckq.log" 2>&1
  note "ckq rc $? $(tail -1 "$W/ckq.log") [$(($(date +%s) - t0)) s]"
fi
if has ckm && [ ! -f $CM/config.json ]; then
  python3 bench/make_random_moe.py --family mixtral --out $CM --layers "${LAYERS_M:-2}" \
    --tokenizer .carry/qwen3-tokenizer > "$W/ckm.log" 2>&1
  note "ckm rc $? $(tail -1 "$W/ckm.log") [$(($(date +%s) - t0)) s]"
fi
CKPT=$CQ
has q3 && quant q3 cuda "$RECIPE"
CKPT=$CM
has mx && quant mx cuda "$RECIPE"
has mxl && quant mxl cuda "$RECIPE" --low_gpu_mem_usage
cp "$W/summary.txt" "$OUT/" 2>/dev/null
# probe: where the host memory of the Mixtral-shape run goes (bench/memory_probe.ts, one line per second)
if has probe; then
  deno run -A --no-check bench/memory_probe.ts --model $CM --scheme W4A16 --dataset "$CALIB" --nsamples 128 \
    --seqlen 2048 --batch_size 8 --device cuda --iters "${PROBE_ITERS:-20}" --output_dir "$W/q_probe" > "$OUT/probe.log" 2>&1
  note "probe rc $? $(tail -1 "$OUT/probe.log")"
fi
