"""Record dtype, shape and sha256 of every tensor of AutoRound's exports, with each folder's
quantization_config, so tests can compare our exports byte for byte without storing the files.
F32 tensors also get `sha256_f16`, the hash of the values cast to fp16 (auto-round's auto_gptq and
auto_awq keep an fp32 model's unquantized tensors in fp32 while config.json says float16; we write
fp16).

  python3 tools/hash_exports.py DIR [OUT.json]

DIR: tools/autoround_oracle.py's rtn_exports.tar unpacked (OUT defaults to
tests/fixtures/autoround_rtn_exports.json) or format_exports.tar unpacked
(tests/fixtures/autoround_format_exports.json).
"""
import hashlib
import json
import os
import struct
import sys

import numpy as np

root = sys.argv[1]
dest = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/autoround_rtn_exports.json"
out = {}
for name in sorted(os.listdir(root)):
    d = os.path.join(root, name)
    raw = open(os.path.join(d, "model.safetensors"), "rb").read()
    (hl,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hl])
    base = 8 + hl
    tensors = {}
    for t, info in header.items():
        if t == "__metadata__":
            continue
        a, b = info["data_offsets"]
        tensors[t] = {"dtype": info["dtype"], "shape": info["shape"],
                      "sha256": hashlib.sha256(raw[base + a:base + b]).hexdigest()}
        if info["dtype"] == "F32":
            f16 = np.frombuffer(raw[base + a:base + b], dtype="<f4").astype("<f2").tobytes()
            tensors[t]["sha256_f16"] = hashlib.sha256(f16).hexdigest()
    qc = json.load(open(os.path.join(d, "config.json"))).get("quantization_config")
    out[name] = {"tensors": tensors, "quantization_config": qc}
json.dump(out, open(dest, "w"), indent=1)
print(list(out))
