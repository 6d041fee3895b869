"""Trim $OUT/quant_goldens.json from tools/autoround_oracle.py into tests/fixtures/autoround_goldens.json.

Keeps the first 8 output rows of each quantizer case (all per-group arrays are row-major per row, so a
row prefix is self-contained), every opt-RTN case at 8 rows, and every pack case whole. Floats are
written with 9 significant digits, which round-trips float32 exactly.
Run: python3 tools/trim_goldens.py /work/.device/<n>/quant_goldens.json
"""
import json
import sys

src = json.load(open(sys.argv[1]))
ROWS = 8


def f9(xs):
    return [float(f"{x:.9g}") for x in xs]


def rows(xs, n, k, keep):
    per = len(xs) // n
    return xs[: keep * per]


out = {"source": "intel/auto-round b9f3d0079 (data_type/int.py, auto_round_extension/torch/qlinear_torch*.py) "
                  "run by tools/autoround_oracle.py on the GPU machine, torch 2.11",
       "cases": [], "opt_rtn": [], "packs": src["packs"]}
for c in src["cases"]:
    n, k = c["n"], c["k"]
    d = {key: c[key] for key in ("bits", "sym", "group_size", "k")}
    d["n"] = ROWS
    for key in ("w", "v", "upstream", "qdq", "dv", "min_scale", "max_scale", "scale", "dmin", "dmax"):
        d[key] = f9(rows(c[key], n, k, ROWS))
    d["zp"] = f9(rows(c["zp"], n, k, ROWS)) if isinstance(c["zp"], list) else c["zp"]
    out["cases"].append(d)
for c in src["opt_rtn"]:
    n, k = c["n"], c["k"]
    d = {key: c[key] for key in ("bits", "group_size", "k")}
    d["n"] = ROWS
    d["imatrix"] = f9(c["imatrix"])
    for key in ("w", "qdq", "scale"):
        d[key] = f9(rows(c[key], n, k, ROWS))
    out["opt_rtn"].append(d)
for p in out["packs"]:
    for key in ("weight_qdq", "scale", "bias", "scales", "bias_f16"):
        p[key] = f9(p[key])
    if isinstance(p["zp"], list):
        p["zp"] = f9(p["zp"])
json.dump(out, open("tests/fixtures/autoround_goldens.json", "w"), separators=(",", ":"))
