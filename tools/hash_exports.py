"""Record dtype, shape and sha256 of every tensor of AutoRound's auto_round exports (from
tools/autoround_oracle.py's rtn_exports.tar) into tests/fixtures/autoround_rtn_exports.json, with
each folder's quantization_config, so tests can compare our exports byte for byte without storing
the files. Run: python3 tools/hash_exports.py DIR_WITH_UNPACKED_TAR
"""
import hashlib
import json
import os
import struct
import sys

root = sys.argv[1]
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
    qc = json.load(open(os.path.join(d, "config.json"))).get("quantization_config")
    out[name] = {"tensors": tensors, "quantization_config": qc}
json.dump(out, open("tests/fixtures/autoround_rtn_exports.json", "w"), indent=1)
print(list(out))
