"""Independent GGUF codec for the tests: llama.cpp's gguf-py (numpy) quantize/dequantize.

Usage: python3 gguf_py_check.py REQUEST.json -> JSON on stdout.
REQUEST: {"dequantize": [{"type": "Q4_K", "bytes": base64}], "quantize": [{"type": "Q4_0", "floats": base64 f32}]}
Answer:  {"dequantize": [base64 f32], "quantize": [base64 bytes]}
gguf is looked up in tests/consumers/pylib first (install.sh), then the system.
"""
import base64
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pylib"))
import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType, quants  # noqa: E402

req = json.load(open(sys.argv[1]))
out = {"dequantize": [], "quantize": []}
for item in req.get("dequantize", []):
    qt = GGMLQuantizationType[item["type"]]
    data = np.frombuffer(base64.b64decode(item["bytes"]), dtype=np.uint8)
    block, size = quants.GGML_QUANT_SIZES[qt]
    rows = data.reshape(1, -1)
    vals = quants.dequantize(rows, qt).astype(np.float32).reshape(-1)
    out["dequantize"].append(base64.b64encode(vals.tobytes()).decode())
for item in req.get("quantize", []):
    qt = GGMLQuantizationType[item["type"]]
    vals = np.frombuffer(base64.b64decode(item["floats"]), dtype=np.float32).reshape(1, -1)
    out["quantize"].append(base64.b64encode(quants.quantize(vals, qt).tobytes()).decode())
json.dump(out, sys.stdout)
