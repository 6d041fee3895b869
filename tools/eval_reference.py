#!/usr/bin/env python3
"""Agreement check of `autoround eval --tasks` against an independent torch + transformers run.

For each model folder (fp, or an auto_round / gptq folder, dequantized here with torch from
qweight/qzeros/scales — an implementation independent of src/io/quantized_loader.ts), the same task
documents are read from --data_dir and scored:
  * with lm-eval-harness itself when `import lm_eval` works: HFLM(pretrained=<model>,
    tokenizer=<tokenizer>, add_bos_token=..., max_length=...).loglikelihood / loglikelihood_rolling
    on Instances built from the local files (lm-eval's own tokenization, windows and scoring), with
    lm-eval's wikitext_detokenizer and metric functions;
  * otherwise with the self-contained copy of that logic below (same rules, batch size 1).
Then every per-request log-likelihood and every metric is compared with our --json output
(written with --log_samples). Exit status 0 = agreement.

Tokenizer: by default tokenizer.json as it is (`tokenizers`, as our TypeScript runtime and
transformers 4.x do); `--hf_tokenizer auto` uses AutoTokenizer instead (transformers 5.x's
LlamaTokenizer drops one '▁' for texts that begin with a space, which changes the first token of
every wikitext document; the other tasks' strings never begin with a space).

One-line run on the GPU machine (fp + two quantized folders, fixture subsets, well under 3 min):
  python3 tools/eval_reference.py --data_dir tests/fixtures/eval/data \
      --pair tests/fixtures/stories260K=tests/fixtures/eval/agreement/fp.json \
      --pair tests/fixtures/eval/agreement/w4=tests/fixtures/eval/agreement/w4.json \
      --pair tests/fixtures/eval/agreement/w2=tests/fixtures/eval/agreement/w2.json
"""

import argparse
import json
import math
import os
import re
import sys
import time

import torch

# ---------------------------------------------------------------------------------------------
# Task documents → (context, continuation) requests, as lm-eval's task YAMLs build them.
# ---------------------------------------------------------------------------------------------


def wikitext_documents(text):
    """EleutherAI/wikitext_document_level `_generate_examples`."""
    ret = []
    for line in text.split("\n"):
        rline = line.replace("= = =", "===").replace("= =", "==").strip()
        if rline.startswith("= ") and rline.strip().endswith(" ="):
            page = "\n".join(ret)
            if page.strip():
                yield page
            ret = []
        ret.append(line)
    yield "\n".join(ret)


def wikitext_detokenizer_copy(doc):
    """lm_eval/tasks/wikitext/preprocess_wikitext.py (used when lm_eval is not importable)."""
    string = doc["page"]
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")
    return string


def load_docs(task, data_dir, limit):
    if task.startswith("wikitext"):
        for rel in ("wikitext-2-raw/wiki.test.raw", "wiki.test.raw"):
            p = os.path.join(data_dir, rel)
            if os.path.exists(p):
                docs = [{"page": d} for d in wikitext_documents(open(p, encoding="utf-8", newline="").read())]
                break
        else:
            raise SystemExit(f"no wiki.test.raw under {data_dir}")
    else:
        for rel in (f"eval/{task}.jsonl", f"{task}.jsonl"):
            p = os.path.join(data_dir, rel)
            if os.path.exists(p):
                docs = [json.loads(l) for l in open(p, encoding="utf-8") if l.strip()]
                break
        else:
            raise SystemExit(f"no {task}.jsonl under {data_dir}")
    if limit is not None:
        docs = docs[: (math.ceil(len(docs) * limit) if limit < 1 else int(limit))]
    return docs


def requests_of(task, doc, detok):
    if task in ("arc_easy", "arc_challenge", "piqa", "hellaswag"):
        return [(doc["context"], " " + c) for c in doc["choices"]]
    if task == "winogrande":
        return [(c, " " + doc["continuation"]) for c in doc["contexts"]]
    if task == "lambada_openai":
        parts = doc["text"].split(" ")
        return [(" ".join(parts[:-1]), " " + parts[-1])]
    return [(detok(doc),)]


# ---------------------------------------------------------------------------------------------
# Models: fp folders load as they are; quantized folders are dequantized here.
# ---------------------------------------------------------------------------------------------


def _unpack(q, bits):
    """int32 words → codes, low bits first: [R, C] → [R·(32/bits), C] (along dim 0)."""
    per = 32 // bits
    q = q.to(torch.int64) & 0xFFFFFFFF
    shifts = (torch.arange(per, dtype=torch.int64) * bits).view(1, per, 1)
    return ((q.unsqueeze(1) >> shifts) & ((1 << bits) - 1)).reshape(-1, q.shape[1])


def dequantize_folder(state, qc):
    method = str(qc.get("quant_method", ""))
    packing = str(qc.get("packing_format", "auto_round:auto_gptq"))
    zero_plus_one = method == "gptq" or "gptq" in packing
    extra = qc.get("extra_config", {}) or {}
    out = {}
    for name, t in state.items():
        if not name.endswith(".qweight"):
            if not name.endswith((".qzeros", ".scales", ".g_idx")):
                out[name] = t
            continue
        layer = name[: -len(".qweight")]
        bits = int(extra.get(layer, {}).get("bits", qc["bits"]))
        gs = int(extra.get(layer, {}).get("group_size", qc["group_size"]))
        if bits not in (2, 4, 8):
            raise SystemExit(f"{layer}: {bits}-bit packing is not handled by this script")
        codes = _unpack(state[name], bits)  # [K, N]
        k, n = codes.shape
        zeros = _unpack(state[layer + ".qzeros"].t().contiguous(), bits).t()[:, :n]  # [G, N]
        if zero_plus_one:
            zeros = zeros + 1
        scales = state[layer + ".scales"].to(torch.float64)  # [G, N]
        g = torch.arange(k) // (gs if gs > 0 else k)
        if layer + ".g_idx" in state:
            g = state[layer + ".g_idx"].to(torch.int64)
        w = scales[g] * (codes - zeros[g]).to(torch.float64)  # [K, N]
        out[layer + ".weight"] = w.t().contiguous().to(torch.float32)
    return out


def load_model(folder, device):
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = json.load(open(os.path.join(folder, "config.json")))
    state = {}
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            state.update(load_file(os.path.join(folder, f)))
    qc = cfg.pop("quantization_config", None)
    if qc:
        state = dequantize_folder(state, qc)
    config = AutoConfig.for_model(**{k: v for k, v in cfg.items() if k not in ("architectures",)})
    config.architectures = cfg.get("architectures")
    model = AutoModelForCausalLM.from_config(config).float()
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    missing = [m for m in missing if not (m == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise SystemExit(f"{folder}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    return model.to(device).eval(), bool(qc)


def load_tokenizer(folder, mode):
    tc = json.load(open(os.path.join(folder, "tokenizer_config.json")))
    if mode == "file":
        try:
            from transformers import PreTrainedTokenizerFast

            special = {k: (v["content"] if isinstance(v, dict) else v) for k, v in tc.items()
                       if k in ("bos_token", "eos_token", "unk_token", "pad_token") and v is not None}
            tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"), **special)
            # the post-processor of tokenizer.json adds BOS when add_special_tokens=True
            return tok, "tokenizer.json (PreTrainedTokenizerFast)"
        except Exception as e:  # noqa: BLE001
            print(f"warning: tokenizer.json wrapper failed ({e}); using AutoTokenizer", file=sys.stderr)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), "AutoTokenizer"


# ---------------------------------------------------------------------------------------------
# Scoring: lm-eval's HFLM when importable, else this copy of its rules.
# ---------------------------------------------------------------------------------------------


class CopyScorer:
    """HFLM's tok_encode / _encode_pair / rolling windows / _loglikelihood_tokens, batch 1."""

    def __init__(self, model, tok, max_length, add_bos, device):
        self.model, self.tok, self.max_length, self.add_bos, self.device = model, tok, max_length, add_bos, device
        self.prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def enc(self, s):
        add = self.add_bos
        if s.startswith(self.tok.decode([self.prefix])):
            add = False
        return self.tok.encode(s, add_special_tokens=add)

    def pair(self, ctx, cont):
        if ctx == "":
            c = self.tok.encode(cont, add_special_tokens=False)
            return ([self.prefix], c) if self.prefix != c[0] else (c[:1], c[1:])
        n = len(ctx) - len(ctx.rstrip())
        if n > 0:
            cont, ctx = ctx[-n:] + cont, ctx[:-n]
        whole, c = self.enc(ctx + cont), self.enc(ctx)
        return c, whole[len(c):]

    @torch.no_grad()
    def score(self, ctx_enc, cont_enc):
        inp = (ctx_enc + cont_enc)[-(self.max_length + 1):][:-1]
        logits = self.model(torch.tensor([inp], device=self.device)).logits[0].float()
        lp = torch.log_softmax(logits, -1)[len(inp) - len(cont_enc):]
        tgt = torch.tensor(cont_enc, device=self.device)
        return float(lp.gather(1, tgt[:, None]).sum()), bool((lp.argmax(-1) == tgt).all())

    def loglikelihood(self, reqs):
        return [self.score(*self.pair(c, k)) for c, k in reqs]

    def loglikelihood_rolling(self, texts):
        out = []
        for s in texts:
            toks = self.enc(s)
            total, pred = 0.0, 0
            first = min(self.max_length, len(toks))
            windows = [([self.prefix] + toks[: first - 1], toks[:first])]
            pred = first
            while pred < len(toks):
                n = min(len(toks) - pred, self.max_length)
                end = pred + n
                windows.append((toks[end - self.max_length - 1: end - 1], toks[end - n: end]))
                pred += n
            for a, b in windows:
                total += self.score(a[: len(a) - (len(b) - 1)], b)[0]
            out.append(total)
        return out


class LmEvalScorer:
    def __init__(self, model, tok, max_length, add_bos, batch_size):
        from lm_eval.api.instance import Instance
        from lm_eval.models.huggingface import HFLM

        self.Instance = Instance
        self.lm = HFLM(pretrained=model, tokenizer=tok, backend="causal", batch_size=batch_size,
                       max_length=max_length, add_bos_token=add_bos)

    def loglikelihood(self, reqs):
        inst = [self.Instance("loglikelihood", {}, (c, k), i) for i, (c, k) in enumerate(reqs)]
        return [tuple(r) for r in self.lm.loglikelihood(inst, disable_tqdm=True)]

    def loglikelihood_rolling(self, texts):
        inst = [self.Instance("loglikelihood_rolling", {}, (s,), i) for i, s in enumerate(texts)]
        return list(self.lm.loglikelihood_rolling(inst, disable_tqdm=True))


@torch.no_grad()
def gptq_token_perplexity(model, tok, data_dir, seqlen, limit, device):
    """GPTQ/AutoRound wikitext2: HF rows joined with "\n\n", tokenized once (tokenizer defaults),
    non-overlapping windows of seqlen, tail dropped, exp(mean NLL); `limit` caps the windows."""
    for rel in ("wikitext-2-raw/wiki.test.raw", "wiki.test.raw"):
        p = os.path.join(data_dir, rel)
        if os.path.exists(p):
            lines = open(p, encoding="utf-8", newline="").read().split("\n")
            break
    if lines and lines[-1] == "":
        lines.pop()
    rows = ["" if not line.strip() else line + "\n" for line in lines]
    ids = tok("\n\n".join(rows), return_tensors="pt").input_ids[0]
    n = ids.numel() // seqlen
    if limit is not None:
        n = min(n, math.ceil(n * limit) if limit < 1 else int(limit))
    total = 0.0
    for w in range(n):
        x = ids[w * seqlen:(w + 1) * seqlen].to(device)[None]
        lp = torch.log_softmax(model(x).logits[0, :-1].double(), -1)
        total -= float(lp.gather(1, x[0, 1:, None]).sum())
    return math.exp(total / (n * (seqlen - 1)))


def metrics_of(task, docs, answers, m):
    """lm-eval's process_results + aggregation. answers[d] = list of (ll, greedy)."""
    if task in ("arc_easy", "arc_challenge", "piqa", "hellaswag", "winogrande"):
        import numpy as np

        acc, acc_norm = [], []
        for doc, ans in zip(docs, answers):
            lls = np.array([a[0] for a in ans])
            gold = doc["gold"]
            acc.append(1.0 if int(np.argmax(lls)) == gold else 0.0)
            if task != "winogrande":
                lens = np.array([float(len(c)) for c in doc["choices"]])
                acc_norm.append(1.0 if int(np.argmax(lls / lens)) == gold else 0.0)
        out = {"acc": (m["mean"](acc), m["mean_stderr"](acc))}
        if acc_norm:
            out["acc_norm"] = (m["mean"](acc_norm), m["mean_stderr"](acc_norm))
        return out
    if task == "lambada_openai":
        lls = [a[0][0] for a in answers]
        acc = [1.0 if a[0][1] else 0.0 for a in answers]
        return {"perplexity": (m["perplexity"](lls), None), "acc": (m["mean"](acc), m["mean_stderr"](acc))}
    lls = [a[0][0] for a in answers]
    words = [(ll, len(re.split(r"\s+", d["page"]))) for ll, d in zip(lls, docs)]
    nbytes = [(ll, len(d["page"].encode("utf-8"))) for ll, d in zip(lls, docs)]
    return {"word_perplexity": (m["weighted_perplexity"](words), None),
            "byte_perplexity": (m["weighted_perplexity"](nbytes), None),
            "bits_per_byte": (m["bits_per_byte"](nbytes), None)}


def metric_functions(have_lm_eval):
    if have_lm_eval:
        from lm_eval.api import metrics as M

        return {"mean": M.mean, "mean_stderr": M.mean_stderr, "perplexity": M.perplexity,
                "weighted_perplexity": M.weighted_perplexity, "bits_per_byte": M.bits_per_byte}
    mean = lambda a: sum(a) / len(a)  # noqa: E731
    sd = lambda a: math.sqrt(sum((x - mean(a)) ** 2 for x in a) / (len(a) - 1))  # noqa: E731
    wmean = lambda it: sum(x for x, _ in it) / sum(w for _, w in it)  # noqa: E731
    return {"mean": mean, "mean_stderr": lambda a: sd(a) / math.sqrt(len(a)),
            "perplexity": lambda a: math.exp(-mean(a)), "weighted_perplexity": lambda it: math.exp(-wmean(it)),
            "bits_per_byte": lambda it: -wmean(it) / math.log(2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", action="append", required=True, help="MODEL_DIR=OUR_JSON (autoround eval --json --log_samples)")
    ap.add_argument("--data_dir", required=True)
    ap.add_argument("--hf_tokenizer", choices=["file", "auto"], default="file")
    ap.add_argument("--engine", choices=["auto", "lm_eval", "copy"], default="auto")
    ap.add_argument("--ll_tol", type=float, default=2e-3, help="max |Δ loglik| per request")
    ap.add_argument("--out", help="write the comparison as JSON here")
    args = ap.parse_args()

    try:
        import lm_eval  # noqa: F401

        have = True
        lm_eval_version = getattr(lm_eval, "__version__", "?")
    except Exception as e:  # noqa: BLE001
        have, lm_eval_version = False, f"not importable ({type(e).__name__})"
    engine = ("lm_eval" if have else "copy") if args.engine == "auto" else args.engine
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, lm_eval {lm_eval_version}; "
          f"engine {engine}; device {device}", flush=True)
    if engine == "lm_eval":
        detok = __import__("lm_eval.tasks.wikitext.preprocess_wikitext", fromlist=["x"]).wikitext_detokenizer
    else:
        detok = wikitext_detokenizer_copy
    m = metric_functions(engine == "lm_eval")

    report, ok = [], True
    for pair in args.pair:
        folder, ours_file = pair.split("=", 1)
        ours = json.load(open(ours_file))
        cfg = ours["config"]
        t0 = time.time()
        model, quantized = load_model(folder, device)
        tok, tok_kind = load_tokenizer(folder, args.hf_tokenizer)
        if engine == "lm_eval":
            scorer = LmEvalScorer(model, tok, cfg["maxLength"], cfg["addBosToken"], cfg["batchSize"])
        else:
            scorer = CopyScorer(model, tok, cfg["maxLength"], cfg["addBosToken"], device)
        print(f"\n== {folder} ({'dequantized' if quantized else 'fp'}; tokenizer {tok_kind}) vs {ours_file}")
        for task in ours["results"]:
            docs = load_docs(task, args.data_dir, cfg["limit"])
            reqs = [requests_of(task, d, detok) for d in docs]
            if task.startswith("wikitext"):
                lls = scorer.loglikelihood_rolling([r[0][0] for r in reqs])
                answers = [[(ll, False)] for ll in lls]
            else:
                flat = [r for rs in reqs for r in rs]
                res = scorer.loglikelihood(flat)
                answers, i = [], 0
                for rs in reqs:
                    answers.append(res[i: i + len(rs)])
                    i += len(rs)
            ref = metrics_of(task, docs, answers, m)
            if task == "wikitext2":
                tp = ours["autoround"][task]["token_perplexity"]
                ref["token_perplexity"] = (
                    gptq_token_perplexity(model, tok, args.data_dir, tp["seqlen"], cfg["limit"], device), None)
            our_samples = ours.get("samples", {}).get(task)
            max_dll = None
            if our_samples:
                diffs = [abs(a[0] - b[0]) for s, ans in zip(our_samples, answers) for a, b in zip(s["resps"], ans)]
                max_dll = max(diffs) if diffs else 0.0
                if max_dll > args.ll_tol:
                    ok = False
            for name, (value, se) in ref.items():
                got = ours["results"][task][f"{name},none"]
                rel = abs(got - value) / max(1e-12, abs(value))
                exact = name.startswith("acc")
                agree = (got == value) if exact else rel < 1e-3
                ok &= agree
                report.append({"model": folder, "task": task, "metric": name, "reference": value, "ours": got,
                               "rel_diff": rel, "max_abs_dloglik": max_dll, "agree": agree})
                print(f"  {task:15s} {name:16s} ref {value:14.6f}  ours {got:14.6f}  "
                      f"{'ok ' if agree else 'DIFF'}  max|Δll| {max_dll if max_dll is not None else float('nan'):.2e}")
        print(f"  ({time.time() - t0:.1f}s)")
    if args.out:
        json.dump({"engine": engine, "lm_eval": lm_eval_version, "rows": report}, open(args.out, "w"), indent=1)
    print("\nAGREE" if ok else "\nDISAGREE")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
