#!/usr/bin/env bash
# One lean GPU call for the WebGPU GEMM work (issue #6): bench/webgpu_matmul.ts first (GPU-timestamped
# scaling of the current vs the looped v0 kernel, the tile sweep at the 8B shapes with sampled checks,
# SignRound block-iterations with a per-kernel breakdown), then the WebGPU tests that touch matmul.
# Logs go to $OUT; the compact table is printed last. About 4 minutes.
#   device run carry=[".device"] command="bash bench/webgpu_gemm_device.sh"
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/webgpu-device-out}"
mkdir -p "$OUT"
source .device/setup.sh
export DENO_DIR=/tmp/deno-dir
t0=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader 2>&1 | tee "$OUT/smi.log"
timeout ${BENCH_TIMEOUT:-190} deno run -A --no-check bench/webgpu_matmul.ts --budget ${BENCH_BUDGET:-160} --json "$OUT/bench.json" > "$OUT/bench.log" 2>&1
bench_rc=$?
nvidia-smi --query-gpu=clocks.sm,power.draw,temperature.gpu --format=csv,noheader 2>&1 | tee -a "$OUT/smi.log"
AUTOROUND_REQUIRE_GPU=1 timeout ${TEST_TIMEOUT:-45} deno test -A --no-check tests/webgpu_matmul_test.ts tests/webgpu_split_test.ts tests/webgpu_ops_test.ts > "$OUT/tests.log" 2>&1
test_rc=$?
echo "== $(($(date +%s) - t0)) s; tests rc $test_rc: $(grep -E "passed|failed" "$OUT/tests.log" | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
sed 's/\x1b\[[0-9;]*m//g' "$OUT/tests.log" | grep -E "FAILED|^error" | head -8
grep -E "matmul .* [0-9.]+e[-+][0-9]+$" "$OUT/tests.log" | sed 's/\x1b\[[0-9;]*m//g' | sort -k2 | tail -3
echo "== bench rc $bench_rc"
grep -E "over budget|failed|error" "$OUT/bench.log" | head -14
if grep -q '^WebGPU bench' "$OUT/bench.log"; then sed -n '/^WebGPU bench/,$p' "$OUT/bench.log" | cut -c1-170; else tail -30 "$OUT/bench.log"; fi
