"""GGUF goldens from auto-round itself (run where torch exists; CPU is enough: tools/autoround_cpu.py
runs it with Debian's CPU torch and stubs for auto-round's other imports).

    python3 tests/consumers/gguf_oracle.py OUT.json

Imports auto-round's source from .ar/ (v0.15, carried like tools/autoround_oracle.py does) and, for
every GGML type, quantizes fixed inputs the way its GGUF path does at iters 0: the RTN quantizer of the
type (opt_rtn_int_sym / rtn_int_sym / opt_rtn_int_asym_float_zp / rtn_int_asym_dq / rtn_int_sym_dq,
float32 scales) with and without an importance matrix, then export_to_gguf/packing.py `ggml_quant`
with the layer's scales. Writes the inputs and the packed bytes; tests/gguf_quantize_test.ts compares
our quantizer with them (and skips while the file is absent). Copy OUT.json to
tests/consumers/goldens/gguf_autoround.json.
"""
import base64
import json
import os
import sys
import types

sys.path.insert(0, ".ar")


def stub_missing(name, attrs):
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        sys.modules[name] = mod


class _Dummy:
    def __init__(self, *a, **k):
        pass


stub_missing("cpuinfo", {"get_cpu_info": lambda: {"flags": [], "brand_raw": "stub"}, "CPUID": _Dummy})
stub_missing("datasets", {n: _Dummy for n in ["Dataset", "Features", "IterableDataset", "Sequence", "Value"]}
             | {"concatenate_datasets": None, "load_dataset": None})
stub_missing("pydantic", {"BaseModel": _Dummy, "Field": lambda default=None, **k: default,
                          "field_validator": lambda *a, **k: (lambda f: f),
                          "model_validator": lambda *a, **k: (lambda f: f)})

import numpy as np  # noqa: E402
import torch  # noqa: E402
from auto_round.data_type.gguf import (  # noqa: E402
    quant_tensor_asym_float_zp_rtn,
    quant_tensor_gguf_asym_dq,
    quant_tensor_gguf_sym_dq,
)
from auto_round.data_type.int import quant_tensor_opt_rtn_sym, quant_tensor_rtn_sym  # noqa: E402
from auto_round.export.export_to_gguf.packing import ggml_quant  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("OUT", "/tmp"), "gguf_autoround.json")
rng = np.random.RandomState(7)
N, K = 8, 512


def b64(a):
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def weights():
    # a normal bulk with a few outliers, like trained weights
    w = rng.standard_normal((N, K)).astype(np.float32) * 0.05
    w[rng.rand(N, K) < 0.01] *= 6
    return w


def imatrix():
    im = (rng.rand(K).astype(np.float32) ** 2) * 10
    im[rng.rand(K) < 0.05] = 0  # some dead input channels: the zero-handling paths
    return im


cases = []
for qtype in ["Q4_0", "Q5_0", "Q8_0", "Q4_1", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]:
    for use_im in [False, True]:
        w_np, im_np = weights(), imatrix()
        # copies: several of auto-round's quantizers work in place on their input
        w = torch.from_numpy(w_np.copy())
        im = torch.from_numpy(im_np.copy()) if use_im else None
        bits = int(qtype[1])
        kw = {}
        if qtype in ("Q4_0", "Q5_0"):
            qdq, scale, _ = quant_tensor_opt_rtn_sym(w, bits=bits, group_size=32, q_scale_thresh=1e-8, imatrix=im)
            kw = {"scale": scale}
        elif qtype == "Q8_0":
            # W8 turns optimized RTN off (RTNConfig): rtn_int_sym, no imatrix.
            if use_im:
                continue
            qdq, scale, _ = quant_tensor_rtn_sym(w, bits=8, group_size=32, q_scale_thresh=1e-8, scale_dtype=torch.float32)
            kw = {"scale": scale}
        elif qtype in ("Q4_1", "Q5_1"):
            qdq, scale, zp = quant_tensor_asym_float_zp_rtn(w, bits=bits, group_size=32, scale_dtype=torch.float32,
                                                            q_scale_thresh=1e-8)
            kw = {"scale": scale, "zp": zp}
        elif qtype in ("Q2_K", "Q4_K", "Q5_K"):
            qdq, s, m = quant_tensor_gguf_asym_dq(w, bits=bits, scale_dtype=torch.float32, imatrix=im)
            kw = {"scale": s["scale"], "d_scale": s["d_scale"], "wmin": m["wmin"], "d_wmin": m["d_wmin"]}
        else:
            qdq, s, _ = quant_tensor_gguf_sym_dq(w, bits=bits, scale_dtype=torch.float32, imatrix=im)
            kw = {"scale": s["scale"], "d_scale": s["d_scale"]}
        kw = {k: v.to(torch.float32) for k, v in kw.items()}
        packed = ggml_quant(qdq.to(torch.float32), qtype.lower(), device="cpu", **kw)
        cases.append({
            "type": qtype,
            "imatrix": b64(im_np) if use_im else None,
            "n": N,
            "k": K,
            "w": b64(w_np),
            "bytes": b64(np.asarray(packed, dtype=np.uint8)),
        })
        print(qtype, "imatrix" if use_im else "", len(cases[-1]["bytes"]))

json.dump({"source": "auto-round v0.15 (.ar), data_type/gguf.py + export_to_gguf/packing.py", "cases": cases},
          open(OUT, "w"))
print("wrote", OUT)
