#!/usr/bin/env python3
"""Random-initialised Llama-family checkpoint at a real model's shape, generated on the GPU.

bench/make_random_llama.ts writes the same layout with the project's own writer, but draws its
normals in JavaScript (~8e9 of them at Llama-3-8B size: far too slow). This script draws them with
torch on the GPU and writes sharded safetensors itself (header + raw bytes; no safetensors package
needed), one shard per few blocks, with model.safetensors.index.json, config.json and the tokenizer
files copied in. Weights ~ N(0, 0.02²) in bf16, norms 1.

    python3 bench/make_random_llama.py --out /tmp/llama8b --layers 32 \\
        --tokenizer /path/to/qwen3-tokenizer            # Llama-3-8B shape, Qwen3 vocabulary

Defaults are Llama-3-8B's: hidden 4096, intermediate 14336, 32 heads, 8 kv heads, head_dim 128,
rope_theta 500000; vocabulary 151936 (Qwen3's, so the Qwen3 tokenizer and calibration ids fit).
"""
import argparse
import json
import os
import shutil
import struct
import time

import torch


def block_shapes(h, inter, heads, kv, hd):
    return [
        ("input_layernorm.weight", [h]),
        ("self_attn.q_proj.weight", [heads * hd, h]),
        ("self_attn.k_proj.weight", [kv * hd, h]),
        ("self_attn.v_proj.weight", [kv * hd, h]),
        ("self_attn.o_proj.weight", [h, heads * hd]),
        ("post_attention_layernorm.weight", [h]),
        ("mlp.gate_proj.weight", [inter, h]),
        ("mlp.up_proj.weight", [inter, h]),
        ("mlp.down_proj.weight", [h, inter]),
    ]


def write_shard(path, tensors):
    """safetensors: u64 little-endian header length, JSON header, then the raw little-endian data."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors:
        raw = t.contiguous().view(torch.int16).cpu().numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return offset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--hidden", type=int, default=4096)
    ap.add_argument("--intermediate", type=int, default=14336)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv_heads", type=int, default=8)
    ap.add_argument("--head_dim", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--rope_theta", type=float, default=500000.0)
    ap.add_argument("--blocks_per_shard", type=int, default=4)
    ap.add_argument("--tokenizer", help="folder whose tokenizer*.json files are copied in")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    t0 = time.time()
    os.makedirs(a.out, exist_ok=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    g = torch.Generator(device=dev).manual_seed(a.seed)

    def rand(shape, norm=False):
        if norm:
            return torch.ones(shape, dtype=torch.bfloat16, device=dev)
        return (torch.randn(shape, generator=g, device=dev, dtype=torch.float32) * 0.02).to(torch.bfloat16)

    weight_map, total = {}, 0
    shards = [("model.embed_tokens.weight", [a.vocab, a.hidden], False)]
    groups = [shards]
    for b in range(a.layers):
        if b % a.blocks_per_shard == 0:
            groups.append([])
        for rel, shape in block_shapes(a.hidden, a.intermediate, a.heads, a.kv_heads, a.head_dim):
            groups[-1].append((f"model.layers.{b}.{rel}", shape, "norm" in rel))
    groups.append([("model.norm.weight", [a.hidden], True), ("lm_head.weight", [a.vocab, a.hidden], False)])
    for i, grp in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        total += write_shard(os.path.join(a.out, fname), [(n, rand(s, norm)) for n, s, norm in grp])
        for n, _, _ in grp:
            weight_map[n] = fname
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": a.hidden,
        "intermediate_size": a.intermediate,
        "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads,
        "num_key_value_heads": a.kv_heads,
        "head_dim": a.head_dim,
        "vocab_size": a.vocab,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_theta": a.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "bos_token_id": 151643,
        "eos_token_id": 151645,
    }
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    if a.tokenizer:
        for fn in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            src = os.path.join(a.tokenizer, fn)
            if os.path.exists(src):
                shutil.copy(src, os.path.join(a.out, fn))
    print(f"wrote {a.out}: {a.layers} blocks, {total / 1e9:.2f} GB bf16 in {len(groups)} shards, "
          f"{time.time() - t0:.1f} s on {dev}")


if __name__ == "__main__":
    main()
