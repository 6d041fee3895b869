#!/usr/bin/env bash
# Consumers that need the GPU machine (python3 + torch + transformers there, no network):
#   1. stories260K exported in every safetensors format (deno, CPU) with our own logits;
#   2. transformers loads each folder on the GPU where its integration is importable and compares
#      logits with transformers-on-CPU over the dequantized (fake) weights and with ours;
#   3. GGUF goldens from auto-round's own quantizers (.ar/ carried), for tests/gguf_quantize_test.ts.
# Run from the repository root, e.g.
#   device run carry=[".device", ".ar", "node_modules/@huggingface", "node_modules/hyparquet"] \
#     command="bash tests/consumers/run_gpu.sh"
# Results land in $OUT (transformers_report.json, gguf_autoround.json, the log). Under 3 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/consumers_out}"
mkdir -p "$OUT"
[ -f .device/setup.sh ] && source .device/setup.sh
EXPORTS="tests/consumers/out/exports"
if [ ! -f "$EXPORTS/ours.json" ]; then
  if command -v deno >/dev/null; then
    deno run -A tests/consumers/make_exports.ts "$EXPORTS" 2>&1 | tee "$OUT/make_exports.log"
  else
    echo "no deno here and no $EXPORTS: run 'deno run -A tests/consumers/make_exports.ts' first and carry it" >&2
    exit 1
  fi
fi
python3 tests/consumers/transformers_load.py "$EXPORTS" "$OUT/transformers_report.json" 2>&1 | tee "$OUT/transformers.log"
if [ -d .ar ]; then
  python3 tests/consumers/gguf_oracle.py "$OUT/gguf_autoround.json" 2>&1 | tee "$OUT/gguf_oracle.log"
else
  echo "no .ar/ (auto-round source) carried: GGUF goldens skipped" | tee "$OUT/gguf_oracle.log"
fi
