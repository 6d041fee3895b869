#!/usr/bin/env bash
# CUDA backend on a bare GPU machine (issue #5, parts 3-4), one call: the CUDA tests against the
# CPU reference, the Llama-3-8B-shape SignRound bench (bench/cuda_8b.ts) on a random checkpoint
# generated there (bench/make_random_llama.py), and the stories260K perplexity table through the CLI
# (bench/cuda_stories_ppl.ts). Logs and JSON go to $OUT; a compact summary is printed last.
#
# Carried from the checkout (ignored folders): .device (cp -r ../shared/device .device),
# node_modules/@huggingface (tokenizer), node_modules/hyparquet (imported by the calibration loader),
# .carry/qwen3-tokenizer and .carry/c4-qwen3-128x2048.safetensors (from ../shared/models and
# ../shared/data/calib):
#   device run carry=[".device","node_modules/@huggingface","node_modules/hyparquet",".carry"] \
#     command="bash bench/cuda_device.sh"
# STEPS (default "tests iter stories pipeline") and LAYERS (default 4) select the work.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/cuda-device-out}"
mkdir -p "$OUT"
source .device/setup.sh
export DENO_DIR=/tmp/deno-dir
STEPS="${STEPS:-tests iter stories pipeline}"
LAYERS="${LAYERS:-4}"
CKPT=/tmp/llama8b-shape
L=/tmp/cuda-logs
mkdir -p "$L"
t0=$(date +%s)
elapsed() { echo "[$(($(date +%s) - t0)) s]"; }
has() { [[ " $STEPS " == *" $1 "* ]]; }
# Few files come back from $OUT: step logs are appended to $OUT/log.txt as each step ends.
keep() { { echo "===== $1"; cat "$L/$1.log"; } >> "$OUT/log.txt"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,memory.used --format=csv,noheader
if has iter || has pipeline; then
  python3 bench/make_random_llama.py --out "$CKPT" --layers "$LAYERS" --tokenizer .carry/qwen3-tokenizer \
    > "$L/make_ckpt.log" 2>&1 &
  gen=$!
fi

if has tests; then
  echo "== CUDA tests $(elapsed)"
  rm -f "$OUT/test_errors.jsonl"
  AUTOROUND_REQUIRE_GPU=1 AUTOROUND_CUDA_REPORT="$OUT/test_errors.jsonl" timeout 300 \
    deno test -A --no-check tests/cuda_*_test.ts > "$OUT/tests.log" 2>&1
  echo "tests rc $? $(grep -E "passed|failed" "$OUT/tests.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "FAILED|^error" | head -20
fi

if has iter || has pipeline; then
  wait "$gen"
  keep make_ckpt
  tail -1 "$L/make_ckpt.log"
fi
if has iter; then
  echo "== 8B iteration $(elapsed)"
  timeout 200 deno run -A --no-check bench/cuda_8b.ts --part iteration --model "$CKPT" --json "$OUT/8b.jsonl" \
    > "$L/iter.log" 2>&1
  echo "iteration rc $?"
  keep iter
  grep -E "^\||^floor|^tuneBlock|ms/" "$L/iter.log"
  # The host-side opt-RTN search (CPU only) runs beside the next steps.
  timeout 200 deno run -A --no-check bench/cuda_8b.ts --part optrtn-host --iters 128 --model "$CKPT" \
    --json "$OUT/8b.jsonl" > "$L/optrtn.log" 2>&1 &
  opt=$!
fi

if has stories; then
  echo "== stories260K ppl $(elapsed)"
  timeout 240 deno run -A --no-check bench/cuda_stories_ppl.ts --device cuda --out /tmp/stories-q \
    --json "$OUT/stories.json" > "$L/stories.log" 2>&1
  echo "stories rc $?"
  keep stories
  grep -E "^\||^stories" "$L/stories.log"
  tar czf "$OUT/stories_q.tgz" -C /tmp stories-q 2>/dev/null
fi

if has pipeline; then
  for r in ${RECIPES:-default light rtn}; do
    echo "== 8B pipeline $r $(elapsed)"
    prof=()
    [ "$r" = default ] && prof=(--cpu-prof --cpu-prof-dir=/tmp/cpuprof)
    timeout 240 deno run -A --no-check "${prof[@]}" bench/cuda_8b.ts --part pipeline --recipe "$r" \
      --model "$CKPT" --dataset .carry/c4-qwen3-128x2048.safetensors --json "$OUT/8b.jsonl" \
      > "$L/pipeline_$r.log" 2>&1
    echo "pipeline $r rc $?"
    keep "pipeline_$r"
    grep -E "^block|rror" "$L/pipeline_$r.log" | tail -2
  done
  [ -d /tmp/cpuprof ] && tar czf "$OUT/cpuprof.tgz" -C /tmp cpuprof
fi
if [ -n "${opt:-}" ]; then
  wait "$opt"
  keep optrtn
fi

echo "== summary $(elapsed)"
[ -f "$OUT/8b.jsonl" ] && deno run -A --no-check bench/cuda_8b.ts --summary "$OUT/8b.jsonl"
