#!/usr/bin/env python3
"""Golden values for tests/eval_*_test.ts from lm-eval-harness's own Python code (stdlib only).

The functions below are copied verbatim from EleutherAI/lm-evaluation-harness (MIT) at
4e7e0d47f33bc71070c1d38394bafbb52b117163: lm_eval/tasks/wikitext/preprocess_wikitext.py
(wikitext_detokenizer, process_results' word/byte counts), lm_eval/api/metrics.py (mean,
sample_stddev, mean_stderr, perplexity, the bootstrap), lm_eval/api/model.py (_encode_pair's
whitespace move), and the document splitter of the EleutherAI/wikitext_document_level dataset
script. Python's own `re`, `str.rstrip`, `len` and `random` are the references our TypeScript
ports (src/eval/pystr.ts, wikitext.ts, metrics.ts) are checked against.

Usage: python3 tools/eval_goldens.py [--shared ../shared/data] > tests/fixtures/eval/goldens.json
"""

import argparse
import json
import math
import random
import re


# ---- lm_eval/tasks/wikitext/preprocess_wikitext.py ----
def wikitext_detokenizer(doc):
    string = doc["page"]
    # contractions
    string = string.replace("s '", "s'")
    string = re.sub(r"/' [0-9]/", r"/'[0-9]/", string)
    # number separators
    string = string.replace(" @-@ ", "-")
    string = string.replace(" @,@ ", ",")
    string = string.replace(" @.@ ", ".")
    # punctuation
    string = string.replace(" : ", ": ")
    string = string.replace(" ; ", "; ")
    string = string.replace(" . ", ". ")
    string = string.replace(" ! ", "! ")
    string = string.replace(" ? ", "? ")
    string = string.replace(" , ", ", ")
    # double brackets
    string = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", string)
    string = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", string)
    string = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", string)
    string = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', string)
    string = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", string)
    # miscellaneous
    string = string.replace("= = = =", "====")
    string = string.replace("= = =", "===")
    string = string.replace("= =", "==")
    string = string.replace(" " + chr(176) + " ", chr(176))
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" N ", " 1 ")
    string = string.replace(" 's", "'s")

    return string


def word_and_byte_counts(page):
    # process_results: words of the *original* document, re.split on \s+; UTF-8 bytes.
    return len(re.split(r"\s+", page)), len(page.encode("utf-8"))


# ---- EleutherAI/wikitext_document_level: _generate_examples ----
def wikitext_documents(text):
    key = 0
    ret = []
    data = text.split("\n")
    for line in data:
        rline = line.replace("= = =", "===").replace("= =", "==").strip()
        if rline.startswith("= ") and rline.strip().endswith(" ="):
            page = "\n".join(ret)
            if page.strip():
                yield key, {"page": page}
                key += 1
            ret = []
        ret.append(line)
    page = "\n".join(ret)
    yield key, {"page": page}


# ---- lm_eval/api/metrics.py ----
def mean(arr):
    return sum(arr) / len(arr)


def sample_stddev(arr):
    mu = mean(arr)
    return math.sqrt(sum([(x - mu) ** 2 for x in arr]) / (len(arr) - 1))


def mean_stderr(arr):
    return sample_stddev(arr) / math.sqrt(len(arr))


def perplexity(items):
    return math.exp(-mean(items))


def bootstrap_stderr_no_mp(f, xs, iters):
    res = []
    chunk_size = min(1000, iters)
    for i in range(iters // chunk_size):
        rnd = random.Random(i)
        for _ in range(chunk_size):
            res.append(f(rnd.choices(xs, k=len(xs))))
    return sample_stddev(res)


# ---- lm_eval/api/model.py: _encode_pair's whitespace move ----
def move_trailing_space(context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    return context, continuation


SPLIT_CASES = ["", " ", "a", " a", "a ", " = A = \n", "a\u00a0b", "a\u3000b", "a\ufeffb", "a\x1cb",
               "a\x85b", "x \t\n y", "one two  three\n\n four "]
RSTRIP_CASES = [("Answer:", " yes"), ("Answer: ", "yes"), ("Answer:\n", " yes"), ("Q \t\n", "x"),
                ("a\u00a0", "b"), ("a\ufeff", "b")]
LEN_CASES = ["naïve", "😀", "a😀b", "Ünïcödé", "\u00e9", "e\u0301"]
DETOK_CASES = [
    " = Robert Boulter = \n \n Robert Boulter is an English film , television and theatre actor . \n",
    "The 2 @,@ 000 @-@ strong force ( of which 1 @.@ 5 % ) said \" hello \" and ' bye ' ; then : go !",
    " = = = Sub = = = \n He 's at 20 ° C , in [ brackets ] { braces } ? N The boys ' toys /' 5/ \n ",
    "a ( b ( c ) d ) \" x \" y \" z \"",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixture", default="tests/fixtures/eval/data/wikitext-2-raw/wiki.test.raw")
    ap.add_argument("--shared", default="../shared/data")
    args = ap.parse_args()

    out = {
        "split_counts": [[s, len(re.split(r"\s+", s))] for s in SPLIT_CASES],
        "move_trailing_space": [[c, k, *move_trailing_space(c, k)] for c, k in RSTRIP_CASES],
        "py_len": [[s, len(s)] for s in LEN_CASES],
        "detokenize": [[s, wikitext_detokenizer({"page": s})] for s in DETOK_CASES],
    }
    xs = [-1.5, -0.25, -3.0, -0.75, -2.0, -0.1, -4.2]
    out["stderr"] = {
        "xs": xs,
        "acc": [1, 0, 1, 1, 0, 0, 1, 1],
        "acc_mean_stderr": mean_stderr([1, 0, 1, 1, 0, 0, 1, 1]),
        "perplexity": perplexity(xs),
        "perplexity_bootstrap_2000": bootstrap_stderr_no_mp(perplexity, xs, 2000),
        "perplexity_bootstrap_100000": bootstrap_stderr_no_mp(perplexity, xs, 100000),
    }

    def wiki_summary(path, keep_docs):
        text = open(path, encoding="utf-8", newline="").read()
        docs = [d["page"] for _, d in wikitext_documents(text)]
        s = {"documents": len(docs), "words": [], "bytes": []}
        for d in docs:
            w, b = word_and_byte_counts(d)
            s["words"].append(w)
            s["bytes"].append(b)
        if keep_docs:
            s["pages"] = docs
            s["detokenized"] = [wikitext_detokenizer({"page": d}) for d in docs]
        else:
            import hashlib
            s["detokenized_sha256"] = [hashlib.sha256(wikitext_detokenizer({"page": d}).encode()).hexdigest()
                                       for d in docs]
        return s

    out["wikitext_fixture"] = wiki_summary(args.fixture, True)
    try:
        out["wikitext_shared"] = wiki_summary(args.shared + "/wikitext-2-raw/wiki.test.raw", False)
    except FileNotFoundError:
        pass
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
