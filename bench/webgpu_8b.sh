#!/usr/bin/env bash
# The whole quantize pipeline at Llama-3-8B shape on the GPU machine, WebGPU (Vulkan) against CUDA
# (issue #11): a random 4-layer checkpoint with vocabulary 151936 (bench/make_random_llama.py),
# 128 × 2048 c4-qwen3 calibration tokens, batch 8, W4G128; the default and light recipes on both
# backends through the CLI, then every output's perplexity on a text (evaluated on CUDA, the same
# evaluator for all). Each quantize records seconds per block (--log_json), peak host RSS
# (getrusage of the child) and peak GPU memory (the backend's allocator peak from the log, and the
# device's own figure sampled by nvidia-smi every 200 ms).
#
# Carried (ignored folders): .device (cp -r ../shared/device .device), node_modules/@huggingface,
# node_modules/hyparquet, .carry/{qwen3-tokenizer, c4-qwen3-128x2048.safetensors, wiki.txt}:
#   device run carry=[".device","node_modules/@huggingface","node_modules/hyparquet",".carry"] \
#     command="STEPS='ckpt wg_light cuda_light cuda_default bg_wg_default' bash bench/webgpu_8b.sh"
# A WebGPU default run outlasts one 10-minute call: `bg_wg_default` starts it detached (setsid) and
# a later call's `wait_bg` waits for it. Every step appends to $OUT/summary.txt (and /tmp/w8b, which
# survives between calls on the same machine).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-/tmp/webgpu-8b-out}"
mkdir -p "$OUT"
source .device/setup.sh
export DENO_DIR=/tmp/deno-dir
STEPS="${STEPS:-ckpt wg_light cuda_light cuda_default}"
LAYERS="${LAYERS:-4}"
CKPT="${CKPT:-/tmp/llama8b-shape}"
W=/tmp/w8b
mkdir -p "$W"
t0=$(date +%s)
has() { [[ " $STEPS " == *" $1 "* ]]; }
note() { echo "$*" | tee -a "$W/summary.txt"; }
CALIB="${CALIB:-.carry/c4-qwen3-128x2048.safetensors}"

# quant NAME DEVICE RECIPE [extra flags]: one CLI quantize with its figures.
quant() {
  local name=$1 dev=$2 recipe=$3
  shift 3
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$W/$name.smi" 2>/dev/null &
  local smi=$!
  local s=$(date +%s)
  python3 - "$W/$name.rss" deno run -A --no-check main.ts quantize --model "$CKPT" --scheme W4A16 \
    --recipe "$recipe" --dataset "$CALIB" --nsamples "${NSAMPLES:-128}" --seqlen "${SEQLEN:-2048}" --batch_size 8 --device "$dev" \
    --output_dir "$W/q_$name" --log_json "$W/$name.jsonl" --debug "$@" > "$W/$name.log" 2>&1 <<'PY'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
PY
  local rc=$?
  kill "$smi" 2>/dev/null
  local gpu=$(sort -n "$W/$name.smi" | tail -1)
  local base=$(head -1 "$W/$name.smi")
  local secs=$(python3 -c "
import json,sys
r=[json.loads(l) for l in open('$W/$name.jsonl')] if __import__('os').path.exists('$W/$name.jsonl') else []
b=[x for x in r if 'seconds' in x]
print(' '.join(f\"{x['seconds']:.1f}\" for x in b), '| mean', f\"{sum(x['seconds'] for x in b)/max(1,len(b)):.2f}\" if b else '-')" 2>/dev/null)
  note "$name: rc $rc, $(( $(date +%s) - s )) s wall, s/block [$secs], peak RSS $(( $(cat "$W/$name.rss" 2>/dev/null || echo 0) / 1024 )) MiB, nvidia-smi peak ${gpu:-?} MiB (idle ${base:-?}), $(grep -o 'peak device memory [0-9.]* [GM]iB' "$W/$name.log")"
  grep -E "^error|internal error|loss iter" "$W/$name.log" | tail -2 | tee -a "$W/summary.txt"
  [ $rc -ne 0 ] && grep -vE "^block " "$W/$name.log" | tail -25
  cp "$W/$name.log" "$OUT/" 2>/dev/null
  return $rc
}

[ "${1:-}" = "--lib" ] && return 0

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$W/summary.txt"
if has ckpt; then
  python3 bench/make_random_llama.py --out "$CKPT" --layers "$LAYERS" --tokenizer .carry/qwen3-tokenizer \
    > "$W/ckpt.log" 2>&1
  note "ckpt rc $? $(tail -1 "$W/ckpt.log") [$(($(date +%s) - t0)) s]"
  deno run -A --unstable-webgpu .device/probe.ts 2>&1 | grep -i webgpu | tee -a "$W/summary.txt"
fi
if has wg_light; then quant wg_light webgpu light || { note "webgpu light failed: stopping"; STEPS=""; }; fi
if has cuda_light; then quant cuda_light cuda light; fi
if has cuda_default; then quant cuda_default cuda default; fi
if has bg_wg_default; then
  # Detached: outlives this call; `wait_bg` in the next call waits for $W/wg_default.done.
  setsid bash -c "cd '$PWD'; export OUT='$OUT'; source bench/webgpu_8b.sh --lib; quant wg_default webgpu default; echo \$? > '$W/wg_default.done'" \
    > "$W/bg.log" 2>&1 < /dev/null &
  note "wg_default started in the background [$(($(date +%s) - t0)) s]"
fi
if has wait_bg; then
  while [ ! -f "$W/wg_default.done" ] && [ $(($(date +%s) - t0)) -lt "${WAIT_S:-560}" ]; do sleep 5; done
  [ -f "$W/wg_default.done" ] && note "wg_default finished (rc $(cat "$W/wg_default.done"))" ||
    note "wg_default still running after $(($(date +%s) - t0)) s: $(tail -c 300 "$W/wg_default.log")"
fi
if has wg_lowmem; then quant wg_lowmem webgpu light --low_gpu_mem_usage --iters "${LOWMEM_ITERS:-50}"; fi
if has eval; then
  for m in "$CKPT" "$W"/q_*; do
    [ -d "$m" ] || continue
    r=$(deno run -A --no-check main.ts eval --model "$m" --text .carry/wiki.txt --seqlen 2048 --device cuda 2>&1 |
      grep -E "^ppl|error" | tail -1)
    note "ppl $(basename "$m"): $r"
  done
fi
if has tests; then
  AUTOROUND_REQUIRE_GPU=1 timeout 300 deno test -A --no-check tests/cuda_ops_test.ts tests/cuda_memory_test.ts \
    tests/webgpu_limits_test.ts tests/quant_split_test.ts > "$OUT/tests.log" 2>&1
  note "tests rc $? $(grep -E "passed|failed" "$OUT/tests.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "FAILED|^error" | head -10
fi
cp "$W/summary.txt" "$OUT/summary.txt"
echo "== done [$(($(date +%s) - t0)) s]"
