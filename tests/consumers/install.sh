#!/usr/bin/env bash
# Installs the test consumers (llama.cpp through node-llama-cpp, prebuilt linux-x64 CPU binary only,
# ~85 MB instead of ~725 MB with every platform's optional package) into tests/consumers/node_modules.
# --omit=optional drops the other platforms' binaries; @node-llama-cpp/linux-x64 is a direct
# dependency so the CPU build stays. No install scripts run and nothing is built or downloaded at
# run time (the tests load with build: "never").
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "consumers: only linux-x64 is wired up; the GGUF consumer tests will skip" >&2
  exit 0
fi
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error
# gguf-py (llama.cpp's Python package: numpy quantize/dequantize) as an independent codec for
# tests/gguf_blocks_test.ts; skipped when python3 or pip is missing.
if command -v python3 >/dev/null && python3 -c "import numpy" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check --target pylib --no-deps gguf==0.19.0 \
    || echo "consumers: gguf-py not installed; its cross-check will skip" >&2
fi
