"""Cross-check against Intel auto-round itself (run on the GPU machine, where torch exists).

Not part of the product or its tests. It imports the real auto-round source (carried in .ar/, from
github.com/intel/auto-round at b9f3d0079) and writes, under $OUT:
  quant_goldens.json  - outputs and autograd gradients of auto-round's integer quantizers
                        (quant_tensor_sym / quant_tensor_asym / quant_tensor_opt_rtn_sym) and the
                        packed tensors of its QuantLinear classes, on fixed random inputs
  runs.json           - perplexity of stories260K after AutoRound RTN / SignRound runs, with the
                        calibration rows autoround-ts uses (.oracle/calib_256x128.json) and the
                        eval stream of stories260K/eval.txt (.oracle/eval_ids.json)
  rtn_exports.tar     - the auto_round folders AutoRound wrote for the RTN runs
  format_exports.tar  - (formats) plain-RTN runs written by auto-round's auto_gptq, auto_awq and
                        llm_compressor exporters, one folder per (config, format), errors in
                        format_exports.json
Run: python3 tools/autoround_oracle.py [goldens] [runs] [fixmask] [c4] [formats]
  fixmask: turn the float 0/1 attention masks auto-round's calibration replay hands to SDPA on
           transformers 5.17 (which SDPA adds to the logits: attention becomes non-causal) back
           into boolean causal masks, so its tuning sees the attention the model really has
  c4:      calibrate on .oracle/calib_c4_256x128.json (C4 documents) instead of TinyStories
  only=P:  run only the configurations whose name starts with P (repeatable)
"""
import json
import math
import os
import sys
import tarfile
import time
import traceback
import types

sys.path.insert(0, ".ar")
OUT = os.environ.get("OUT", "/tmp/oracle_out")
os.makedirs(OUT, exist_ok=True)


def stub_missing(name, attrs):
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        for k, v in attrs.items():
            setattr(mod, k, v)
        sys.modules[name] = mod
        print(f"stubbed missing module {name}")


class _Dummy:
    def __init__(self, *a, **k):
        for key, val in k.items():
            setattr(self, key, val)


stub_missing("cpuinfo", {"get_cpu_info": lambda: {"flags": [], "brand_raw": "stub"}, "CPUID": _Dummy})
stub_missing("datasets", {n: _Dummy for n in ["Dataset", "Features", "IterableDataset", "Sequence", "Value"]}
             | {"concatenate_datasets": None, "load_dataset": None})
stub_missing("pydantic", {"BaseModel": _Dummy, "Field": lambda default=None, **k: default,
                          "field_validator": lambda *a, **k: (lambda f: f),
                          "model_validator": lambda *a, **k: (lambda f: f)})

import torch  # noqa: E402

torch.manual_seed(0)


def tl(t):
    return t.detach().to(torch.float32).cpu().reshape(-1).tolist()


def goldens():
    from auto_round.data_type.int import quant_tensor_asym, quant_tensor_opt_rtn_sym, quant_tensor_sym

    out = {"cases": [], "opt_rtn": [], "packs": []}
    g = torch.Generator().manual_seed(1234)
    N, K = 32, 64
    for bits in (2, 3, 4, 8):
        for sym in (True, False):
            for gs in (32, -1):
                G = K // gs if gs > 0 else 1
                w = (torch.randn(N, K, generator=g) * 0.05).to(torch.float32)
                w[0, :8] = 0.0  # a partly-zero row
                for tuned in (False, True):
                    v = (torch.rand(N * G, gs if gs > 0 else K, generator=g) - 0.5) if tuned else torch.zeros(N * G, gs if gs > 0 else K)
                    mn = (0.5 + 0.5 * torch.rand(N * G, generator=g)) if tuned else torch.ones(N * G)
                    mx = (0.5 + 0.5 * torch.rand(N * G, generator=g)) if tuned else torch.ones(N * G)
                    up = torch.randn(N, K, generator=g)
                    v_, mn_, mx_ = v.clone().requires_grad_(), mn.clone().requires_grad_(), mx.clone().requires_grad_()
                    f = quant_tensor_sym if sym else quant_tensor_asym
                    qdq, scale, zp = f(w, bits=bits, group_size=gs, v=v_, min_scale=mn_, max_scale=mx_,
                                       scale_dtype=torch.float16, q_scale_thresh=1e-5)
                    (qdq * up).sum().backward()
                    out["cases"].append({
                        "bits": bits, "sym": sym, "group_size": gs, "n": N, "k": K,
                        "w": tl(w), "v": tl(v), "min_scale": tl(mn), "max_scale": tl(mx), "upstream": tl(up),
                        "qdq": tl(qdq), "scale": tl(scale),
                        "zp": tl(zp) if torch.is_tensor(zp) else zp,
                        "dv": tl(v_.grad), "dmin": tl(mn_.grad), "dmax": tl(mx_.grad),
                    })
    for bits in (2, 3, 4):
        for with_zero in (False, True):
            w = (torch.randn(N, K, generator=g) * 0.05).to(torch.float32)
            imatrix = torch.rand(K, generator=g) * 3 + 0.1
            if with_zero:
                imatrix[:20] = 0.0  # more than half of group 0 zero → weight fallback; group 1 partly
                imatrix[40:45] = 0.0
            qdq, scale, _ = quant_tensor_opt_rtn_sym(w, bits=bits, group_size=32, imatrix=imatrix)
            out["opt_rtn"].append({"bits": bits, "n": N, "k": K, "group_size": 32, "w": tl(w),
                                   "imatrix": tl(imatrix), "qdq": tl(qdq), "scale": tl(scale)})
    # Packing: auto_round:auto_gptq (sym, zero-1) and auto_round (asym) QuantLinear.pack
    from auto_round_extension.torch.qlinear_torch import QuantLinear as QLAsym
    from auto_round_extension.torch.qlinear_torch_zp import QuantLinear as QLSym
    for bits in (2, 3, 4, 8):
        for sym in (True, False):
            n_out, k_in, gs = 64, 96 if bits != 3 else 64, 32
            lin = torch.nn.Linear(k_in, n_out, bias=True)
            with torch.no_grad():
                lin.weight.copy_(torch.randn(n_out, k_in, generator=g) * 0.05)
            f = quant_tensor_sym if sym else quant_tensor_asym
            qdq, scale, zp = f(lin.weight.data, bits=bits, group_size=gs, scale_dtype=torch.float16)
            with torch.no_grad():
                lin.weight.copy_(qdq)
            scale2 = scale.reshape(n_out, -1)
            zp2 = zp.reshape(n_out, -1) if torch.is_tensor(zp) else zp
            ql = (QLSym if sym else QLAsym)(bits, gs, k_in, n_out, True)
            ql.device = torch.device("cpu")  # export.py sets this before packing
            ql.pack(lin, scale2, zp2, None)
            out["packs"].append({"bits": bits, "sym": sym, "n": n_out, "k": k_in, "group_size": gs,
                                 "weight_qdq": tl(qdq), "scale": tl(scale2), "zp": tl(zp2) if torch.is_tensor(zp2) else zp2,
                                 "bias": tl(lin.bias),
                                 "qweight": ql.qweight.reshape(-1).tolist(), "qzeros": ql.qzeros.reshape(-1).tolist(),
                                 "scales": tl(ql.scales), "bias_f16": tl(ql.bias)})
    with open(f"{OUT}/quant_goldens.json", "w") as fh:  # noqa: SIM115
        json.dump(out, fh)
    print(f"goldens: {len(out['cases'])} quantizer cases, {len(out['opt_rtn'])} opt-rtn, {len(out['packs'])} packs")


def perplexity(model, ids, seqlen=256):
    model.eval()
    n = len(ids) // seqlen
    t = torch.tensor(ids[: n * seqlen], dtype=torch.long).reshape(n, seqlen).cuda()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n, 16):
            x = t[i:i + 16]
            logits = model(x).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1)
            nll = -lp.gather(-1, x[:, 1:, None]).squeeze(-1)
            total += nll.double().sum().item()
            count += nll.numel()
    return math.exp(total / count)


def fix_float_masks():
    """SDPA treats a float mask as additive; auto-round's replay passes 1.0 = visible, 0.0 = hidden."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    orig = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def sdpa(module, query, key, value, attention_mask, **kw):
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            if float(attention_mask.max()) == 1.0 and float(attention_mask.min()) == 0.0:
                attention_mask = attention_mask > 0.5
        return orig(module, query, key, value, attention_mask, **kw)

    ALL_ATTENTION_FUNCTIONS["sdpa"] = sdpa


def runs(configs, calib_file=".oracle/calib_256x128.json", export_prefixes=("rtn",)):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from auto_round import AutoRound
    fixture = "tests/fixtures/stories260K"
    rows = json.load(open(calib_file))
    ids = json.load(open(".oracle/eval_ids.json"))
    data = []
    for i in range(0, len(rows), 8):
        x = torch.tensor(rows[i:i + 8], dtype=torch.long)
        data.append({"input_ids": x, "attention_mask": torch.ones_like(x)})
    results = []
    base = AutoModelForCausalLM.from_pretrained(fixture, torch_dtype=torch.float32).cuda()
    results.append({"name": "fp32", "ppl": perplexity(base, ids)})
    print(results[-1], flush=True)
    del base
    tar = tarfile.open(f"{OUT}/rtn_exports{os.environ.get('RUNS_TAG', '')}.tar", "w")
    for cfg in configs:
        name = cfg.pop("name")
        t0 = time.time()
        try:
            model = AutoModelForCausalLM.from_pretrained(fixture, torch_dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(fixture)
            ar = AutoRound(model, tok, dataset=data, nsamples=128, seqlen=256, batch_size=8, seed=42,
                           amp=False, enable_torch_compile=False, device_map=0, **cfg)
            model, _ = ar.quantize()
            ppl = perplexity(model.cuda(), ids)
            rec = {"name": name, "cfg": cfg, "ppl": ppl, "seconds": time.time() - t0}
            if cfg.get("iters", 200) == 0 and name.startswith(export_prefixes):
                out_dir = f"/tmp/ar_{name}"
                ar.save_quantized(out_dir, format="auto_round", inplace=True)
                tar.add(out_dir, arcname=name)
            results.append(rec)
        except Exception as e:  # keep going: one failing config must not hide the others
            results.append({"name": name, "cfg": cfg, "error": repr(e), "trace": traceback.format_exc()[-3000:]})
        print(results[-1] if "error" not in results[-1] else results[-1]["trace"], flush=True)
        with open(f"{OUT}/runs{os.environ.get('RUNS_TAG', '')}.json", "w") as fh:
            json.dump(results, fh, indent=1)
    tar.close()


def format_exports():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from auto_round import AutoRound
    fixture = "tests/fixtures/stories260K"
    rows = json.load(open(".oracle/calib_256x128.json"))
    data = []
    for i in range(0, len(rows), 8):
        x = torch.tensor(rows[i:i + 8], dtype=torch.long)
        data.append({"input_ids": x, "attention_mask": torch.ones_like(x)})
    cfgs = [("rtnplain_W4G32", 4, True), ("rtnplain_W4G32asym", 4, False), ("rtnplain_W3G32", 3, True),
            ("rtnplain_W2G32asym", 2, False)]
    log = []
    tar = tarfile.open(f"{OUT}/format_exports.tar", "w")
    for name, bits, sym in cfgs:
        for fmt in ("auto_gptq", "auto_awq", "llm_compressor"):
            if fmt == "auto_awq" and bits != 4:
                continue
            try:
                model = AutoModelForCausalLM.from_pretrained(fixture, torch_dtype=torch.float32)
                tok = AutoTokenizer.from_pretrained(fixture)
                ar = AutoRound(model, tok, dataset=data, nsamples=128, seqlen=256, batch_size=8, seed=42,
                               amp=False, enable_torch_compile=False, device_map=0, bits=bits, group_size=32,
                               sym=sym, iters=0, disable_opt_rtn=True)
                ar.quantize()
                out_dir = f"/tmp/arf_{name}_{fmt}"
                ar.save_quantized(out_dir, format=fmt, inplace=True)
                tar.add(out_dir, arcname=f"{name}__{fmt}")
                log.append({"name": name, "format": fmt, "files": sorted(os.listdir(out_dir))})
            except Exception as e:  # one exporter failing must not hide the others
                log.append({"name": name, "format": fmt, "error": repr(e), "trace": traceback.format_exc()[-2000:]})
            print(log[-1] if "error" not in log[-1] else log[-1]["trace"], flush=True)
            json.dump(log, open(f"{OUT}/format_exports.json", "w"), indent=1)
    tar.close()


if __name__ == "__main__":
    what = sys.argv[1:] or ["goldens", "runs"]
    if "formats" in what:
        format_exports()
    if "goldens" in what:
        goldens()
    if "fixmask" in what:
        fix_float_masks()
    if "runs" in what:
        cfgs = []
        for bits in (4, 3, 2):
            for sym in (True, False):
                tag = f"W{bits}G32{'' if sym else 'asym'}"
                cfgs.append({"name": f"rtn_{tag}", "bits": bits, "group_size": 32, "sym": sym, "iters": 0})
                cfgs.append({"name": f"rtnplain_{tag}", "bits": bits, "group_size": 32, "sym": sym, "iters": 0,
                             "disable_opt_rtn": True})
                cfgs.append({"name": f"light_{tag}", "bits": bits, "group_size": 32, "sym": sym, "iters": 50,
                             "lr": 5e-3})
                cfgs.append({"name": f"default_{tag}", "bits": bits, "group_size": 32, "sym": sym, "iters": 200})
        only = [w[5:] for w in what if w.startswith("only=")]
        if only:
            cfgs = [c for c in cfgs if c["name"].startswith(tuple(only))]
        if "c4" in what:
            cfgs = [c for c in cfgs if not c["name"].startswith("rtnplain")]
            runs(cfgs, ".oracle/calib_c4_256x128.json", ())
        else:
            runs(cfgs)
