"""Probe (GPU machine): how AutoRound's cached block replay runs attention, and whether transformers
loads autoround-ts auto_round folders. Usage: python3 tools/autoround_probe.py FOLDER...
Prints, for the first calls of sdpa during AutoRound's calibration and block replay, the is_causal
flag and the mask passed; then loads each FOLDER with AutoModelForCausalLM and prints its perplexity
on stories260K/eval.txt (ids from .oracle/eval_ids.json).
"""
import json
import sys

sys.path.insert(0, "tools")
import autoround_oracle as orc  # noqa: E402  (installs stubs for packages missing on the machine)
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS  # noqa: E402

calls = []
orig = ALL_ATTENTION_FUNCTIONS["sdpa"]


def spy(module, query, key, value, attention_mask, **kw):
    if len(calls) < 12:
        calls.append({"q_len": query.shape[2], "is_causal_kw": kw.get("is_causal"),
                      "module_is_causal": getattr(module, "is_causal", None),
                      "mask": None if attention_mask is None else list(attention_mask.shape),
                      # a causal mask hides key 1 from query 0: True/0 means visible
                      "q0_sees_k1": None if attention_mask is None else attention_mask[0, 0, 0, 1].item(),
                      "q0_sees_k0": None if attention_mask is None else attention_mask[0, 0, 0, 0].item()})
    return orig(module, query, key, value, attention_mask, **kw)


ALL_ATTENTION_FUNCTIONS["sdpa"] = spy
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from auto_round import AutoRound  # noqa: E402

fixture = "tests/fixtures/stories260K"
rows = json.load(open(".oracle/calib_256x128.json"))[:16]
data = []
for i in range(0, 16, 8):
    x = torch.tensor(rows[i:i + 8], dtype=torch.long)
    data.append({"input_ids": x, "attention_mask": torch.ones_like(x)})
model = AutoModelForCausalLM.from_pretrained(fixture, torch_dtype=torch.float32)
print("attn implementation:", model.config._attn_implementation, "transformers", transformers.__version__)
ar = AutoRound(model, AutoTokenizer.from_pretrained(fixture), dataset=data, nsamples=16, seqlen=256, batch_size=8,
               bits=4, group_size=32, sym=True, iters=0, amp=False, enable_torch_compile=False, device_map=0)
ar.quantize()
for c in calls:
    print("sdpa call:", c)
ids = json.load(open(".oracle/eval_ids.json"))
for folder in sys.argv[1:]:
    try:
        m = AutoModelForCausalLM.from_pretrained(folder, device_map="cuda", torch_dtype=torch.float32)
        kinds = sorted({type(x).__name__ for x in m.modules() if "Linear" in type(x).__name__})
        print(folder, "loaded by transformers; linear classes:", kinds, "ppl:", orc.perplexity(m, ids))
    except Exception as e:  # report and continue
        print(folder, "FAILED to load:", repr(e)[:500])
