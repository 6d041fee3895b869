#!/usr/bin/env bash
# WebGPU backend on a bare GPU machine (issue #6): the WebGPU kernel tests against the real adapter,
# then bench/webgpu_matmul.ts (Llama-3-8B GEMMs and one SignRound block-iteration). Logs go to
# $OUT/, a compact table is printed last. Budget: under 5 minutes (tests ~1 min, bench ~3 min).
#
# Needs, carried from the checkout: .device (cp -r ../shared/device .device; see its setup.sh) and
# node_modules/@huggingface (the tokenizer of the stories260K model test).
#   device run carry=[".device","node_modules/@huggingface"] command="bash bench/webgpu_device.sh"
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/webgpu-device-out}"
mkdir -p "$OUT"
source .device/setup.sh
export DENO_DIR=/tmp/deno-dir
t0=$(date +%s)

echo "== adapter"
deno run -A --unstable-webgpu .device/probe.ts 2>&1 | tee "$OUT/probe.log" | grep -i webgpu
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader 2>/dev/null | tee -a "$OUT/probe.log"

echo "== webgpu tests (real adapter; AUTOROUND_REQUIRE_GPU=1 fails instead of skipping)"
tests=(tests/webgpu_*_test.ts)
[ -d node_modules/@huggingface/tokenizers ] || {
  echo "node_modules/@huggingface not carried: skipping tests/webgpu_model_test.ts"
  tests=($(ls tests/webgpu_*_test.ts | grep -v model))
}
AUTOROUND_REQUIRE_GPU=1 timeout 150 deno test -A --no-check "${tests[@]}" > "$OUT/tests.log" 2>&1
test_rc=$?
grep -E "^  [a-zA-Z].* [0-9.]+e[-+][0-9]+$" "$OUT/tests.log" > "$OUT/test_errors.txt"
summary=$(grep -E "passed|failed" "$OUT/tests.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')
sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "FAILED|^error|exceeds|differ" | head -20

echo "== bench (Llama-3-8B shapes)"
# BENCH_ARGS=--quick for a smoke run on llvmpipe.
timeout 200 deno run -A --no-check bench/webgpu_matmul.ts --json "$OUT/bench.json" ${BENCH_ARGS:-} > "$OUT/bench.log" 2>&1
bench_rc=$?

echo
echo "== summary ($(($(date +%s) - t0)) s)"
echo "tests (rc $test_rc): $summary"
echo "largest relative errors on this adapter:"
awk '{print $NF "\t" $0}' "$OUT/test_errors.txt" | sort -g | tail -8 | cut -f2-
echo "bench (rc $bench_rc):"
if grep -q '^WebGPU bench' "$OUT/bench.log"; then sed -n '/^WebGPU bench/,$p' "$OUT/bench.log"; else tail -40 "$OUT/bench.log"; fi
