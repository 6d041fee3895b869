"""Load autoround's safetensors exports of stories260K with transformers on the GPU machine.

    python3 tests/consumers/transformers_load.py EXPORTS_DIR REPORT.json

EXPORTS_DIR is what tests/consumers/make_exports.ts wrote: {sym,asym}/{auto_round,auto_gptq,auto_awq,
llm_compressor,fake}/ and ours.json (our own logits, read back through our loader). For every folder the
script tries AutoModelForCausalLM.from_pretrained on the GPU (which needs the matching integration:
gptqmodel/auto_gptq + optimum for gptq, autoawq or gptqmodel for awq, compressed-tensors for
llm_compressor, auto-round for auto_round — auto-round is taken from .ar/ when carried there), and
compares its last-position logits for three prompts with
  (a) transformers on the CPU in float32 on the fake folder of the same run (the dequantized weights),
  (b) our own forward (ours.json).
A format whose integration is not importable is reported as "not loadable here" with the import error.
Prints a table; writes REPORT.json. Takes well under 3 minutes (tiny model).
"""
import importlib
import json
import os
import sys
import time
import traceback
import types

EXPORTS = sys.argv[1] if len(sys.argv) > 1 else "tests/consumers/out/exports"
REPORT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.environ.get("OUT", "/tmp"), "transformers_report.json")
t_start = time.time()

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

# After transformers' own availability checks: auto-round's source and stubs for what it imports
# at module level but does not need here.
if os.path.isdir(".ar"):
    sys.path.insert(0, ".ar")  # auto-round's source (v0.15), as tools/autoround_oracle.py carries it


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


# auto-round imports these at module level; stub them only when they are missing.
stub_missing("cpuinfo", {"get_cpu_info": lambda: {"flags": [], "brand_raw": "stub"}, "CPUID": _Dummy})
stub_missing("datasets", {n: _Dummy for n in ["Dataset", "Features", "IterableDataset", "Sequence", "Value"]}
             | {"concatenate_datasets": None, "load_dataset": None})


PACKAGES = ["gptqmodel", "auto_gptq", "optimum", "awq", "compressed_tensors", "auto_round", "auto_round_extension"]
available = {}
for p in PACKAGES:
    try:
        m = importlib.import_module(p)
        available[p] = getattr(m, "__version__", "yes")
    except Exception as e:  # noqa: BLE001
        available[p] = f"no ({type(e).__name__}: {str(e)[:120]})"

ours = json.load(open(os.path.join(EXPORTS, "ours.json")))
cuda = torch.cuda.is_available()
device = "cuda" if cuda else "cpu"


def last_logits(model, ids_list, dev):
    out = []
    with torch.no_grad():
        for ids in ids_list:
            x = torch.tensor([ids], device=dev)
            out.append(model(x).logits[0, -1].float().cpu())
    return out


def compare(a, b):
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
    scale = max(float(y.abs().max()) for y in b)
    top1 = all(int(x.argmax()) == int(y.argmax()) for x, y in zip(a, b))
    kl = max(float(torch.nn.functional.kl_div(torch.log_softmax(x.double(), -1), torch.log_softmax(y.double(), -1),
                                                log_target=True, reduction="sum")) for x, y in zip(a, b))
    return {"max_abs": diff, "rel": diff / scale, "top1_same": top1, "kl": kl}


rows = []
for run in ["sym", "asym"]:
    fake_dir = os.path.join(EXPORTS, run, "fake")
    ids = ours[f"{run}/fake"]["ids"]
    ref_model = AutoModelForCausalLM.from_pretrained(fake_dir, dtype=torch.float32).eval()
    cpu_ref = last_logits(ref_model, ids, "cpu")
    del ref_model
    for fmt in ["fake", "auto_round", "auto_gptq", "auto_awq", "llm_compressor"]:
        d = os.path.join(EXPORTS, run, fmt)
        row = {"run": run, "format": fmt, "folder": d}
        cfg = json.load(open(os.path.join(d, "config.json")))
        row["quant_method"] = (cfg.get("quantization_config") or {}).get("quant_method", "none")
        try:
            t0 = time.time()
            # fp16 for the packed GPU kernels (the dtype those checkpoints declare); fp32 for fake.
            dtype = torch.float32 if fmt == "fake" else torch.float16
            model = AutoModelForCausalLM.from_pretrained(d, dtype=dtype, device_map=device).eval()
            row["loaded_with"] = type(getattr(model, "hf_quantizer", None)).__name__ if getattr(model, "hf_quantizer", None) else "plain"
            got = last_logits(model, ids, device)
            row["vs_transformers_cpu_fake"] = compare(got, cpu_ref)
            row["vs_ours"] = compare(got, [torch.tensor(x) for x in ours[f"{run}/{fmt}"]["logits"]])
            row["seconds"] = round(time.time() - t0, 2)
            row["status"] = "loaded"
            del model
        except Exception as e:  # noqa: BLE001
            row["status"] = "not loadable here"
            row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            row["trace_tail"] = traceback.format_exc().splitlines()[-3:]
        rows.append(row)
        if cuda:
            torch.cuda.empty_cache()

report = {
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "cuda": cuda,
    "device": torch.cuda.get_device_name(0) if cuda else "cpu",
    "packages": available,
    "rows": rows,
    "seconds": round(time.time() - t_start, 1),
}
os.makedirs(os.path.dirname(os.path.abspath(REPORT)), exist_ok=True)
json.dump(report, open(REPORT, "w"), indent=2)

print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {report['device']}")
for p, v in available.items():
    print(f"  {p}: {v}")
print("| run | format | quant_method | status | max |Δ| vs fake on CPU | rel | KL | top-1 | max |Δ| vs ours |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["status"] == "loaded":
        a, b = r["vs_transformers_cpu_fake"], r["vs_ours"]
        print(f"| {r['run']} | {r['format']} | {r['quant_method']} | loaded ({r['loaded_with']}) | {a['max_abs']:.2e} | "
              f"{100 * a['rel']:.2f}% | {a['kl']:.1e} | {'same' if a['top1_same'] else 'DIFF'} | {b['max_abs']:.2e} |")
    else:
        print(f"| {r['run']} | {r['format']} | {r['quant_method']} | {r['status']}: {r['error'][:90]} | | | | | |")
print(f"report: {REPORT} ({report['seconds']} s)")
