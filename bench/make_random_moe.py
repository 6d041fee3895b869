#!/usr/bin/env python3
"""Random-initialised mixture-of-experts checkpoint at a real model's shape, generated on the GPU.

Like bench/make_random_llama.py (whose shard writer it uses): weights ~ N(0, 0.02²) in bf16, norms 1,
per-expert 2-D tensors as released checkpoints store them (spec/MODELS.md § 2.3).

    python3 bench/make_random_moe.py --family qwen3_moe --out /tmp/q3moe --layers 4 --tokenizer DIR
        # Qwen3-30B-A3B: hidden 2048, 32/4 heads × 128, 128 experts of 768, 8 active, vocab 151936
    python3 bench/make_random_moe.py --family mixtral --out /tmp/mixtral --layers 2 --tokenizer DIR
        # Mixtral-8x7B: hidden 4096, 32/8 heads × 128, 8 experts of 14336, 2 active (vocab 151936 here,
        # so the Qwen3 calibration ids fit; the real one has 32000)
"""
import argparse
import json
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_random_llama import write_shard  # noqa: E402

SHAPES = {
    "qwen3_moe": dict(hidden=2048, heads=32, kv=4, hd=128, experts=128, k=8, inter=768, theta=1e6),
    "mixtral": dict(hidden=4096, heads=32, kv=8, hd=128, experts=8, k=2, inter=14336, theta=1e6),
}


def block(family, s):
    h, hd = s["hidden"], s["hd"]
    out = [("input_layernorm.weight", [h]), ("post_attention_layernorm.weight", [h]),
           ("self_attn.q_proj.weight", [s["heads"] * hd, h]), ("self_attn.k_proj.weight", [s["kv"] * hd, h]),
           ("self_attn.v_proj.weight", [s["kv"] * hd, h]), ("self_attn.o_proj.weight", [h, s["heads"] * hd])]
    if family == "qwen3_moe":
        out += [("self_attn.q_norm.weight", [hd]), ("self_attn.k_norm.weight", [hd]),
                ("mlp.gate.weight", [s["experts"], h])]
        names = [("mlp.experts.{e}.gate_proj", "mlp.experts.{e}.up_proj", "mlp.experts.{e}.down_proj")]
    else:
        out += [("block_sparse_moe.gate.weight", [s["experts"], h])]
        names = [("block_sparse_moe.experts.{e}.w1", "block_sparse_moe.experts.{e}.w3",
                  "block_sparse_moe.experts.{e}.w2")]
    g, u, d = names[0]
    for e in range(s["experts"]):
        out += [(g.format(e=e) + ".weight", [s["inter"], h]), (u.format(e=e) + ".weight", [s["inter"], h]),
                (d.format(e=e) + ".weight", [h, s["inter"]])]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", choices=list(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--tokenizer")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    s = SHAPES[a.family]
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    gen = torch.Generator(device=dev).manual_seed(a.seed)

    def rand(shape, norm):
        if norm:
            return torch.ones(shape, dtype=torch.bfloat16, device=dev)
        return (torch.randn(shape, generator=gen, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16)

    groups = [[("model.embed_tokens.weight", [a.vocab, s["hidden"]], False)]]
    for b in range(a.layers):
        groups.append([(f"model.layers.{b}.{rel}", shape, "norm" in rel) for rel, shape in block(a.family, s)])
    groups.append([("model.norm.weight", [s["hidden"]], True), ("lm_head.weight", [a.vocab, s["hidden"]], False)])
    weight_map, total = {}, 0
    for i, grp in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        total += write_shard(os.path.join(a.out, fname), [(n, rand(sh, nm)) for n, sh, nm in grp])
        for n, _, _ in grp:
            weight_map[n] = fname
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    cfg = {"model_type": a.family, "hidden_size": s["hidden"], "num_hidden_layers": a.layers,
           "num_attention_heads": s["heads"], "num_key_value_heads": s["kv"], "head_dim": s["hd"],
           "vocab_size": a.vocab, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
           "rope_theta": s["theta"], "hidden_act": "silu", "tie_word_embeddings": False,
           "torch_dtype": "bfloat16", "num_experts_per_tok": s["k"], "bos_token_id": 151643,
           "eos_token_id": 151645}
    if a.family == "qwen3_moe":
        cfg.update(architectures=["Qwen3MoeForCausalLM"], num_experts=s["experts"], moe_intermediate_size=s["inter"],
                   intermediate_size=6144, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[])
    else:
        cfg.update(architectures=["MixtralForCausalLM"], num_local_experts=s["experts"],
                   intermediate_size=s["inter"], sliding_window=None)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    if a.tokenizer:
        for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if os.path.exists(os.path.join(a.tokenizer, fn)):
                shutil.copy(os.path.join(a.tokenizer, fn), os.path.join(a.out, fn))
    print(f"wrote {a.out}: {a.family}, {a.layers} blocks, {total / 1e9:.2f} GB bf16, {time.time() - t0:.1f} s on {dev}")


if __name__ == "__main__":
    main()
