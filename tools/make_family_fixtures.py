#!/usr/bin/env python3
"""Tiny random-initialised checkpoints of each model family of issue 18, with transformers' logits.

Run on the GPU machine (transformers 5.x, torch; CPU is enough):
    python3 tools/make_family_fixtures.py OUT_DIR [STORIES_TOKENIZER_DIR]

For each family (spec/MODELS.md § 11) it builds the model from a config with transformers, draws
weights with torch.manual_seed(0) (N(0, 1/in) matrices, routers and q/k sharper, norms near their
identity), saves it with save_pretrained (float32 safetensors), copies the stories260K tokenizer
files (vocabulary 512) next to it, and writes reference.safetensors:
  ids            int32 [3, 48]      the token sequences
  logits         f32   [48, V]      sequence 0, every position   (forward in float64, eager attention)
  last_logits    f32   [3, V]       every sequence, last position
  hidden_first   f32   [48, H]      sequence 0 after block 0
  hidden_last    f32   [48, H]      sequence 0 after the last block (before the final norm)
  logits_f32     f32   [48, V]      sequence 0 from the float32 model (to see the f32 spread)
and meta.json (config used, per-layer expert token counts for MoE, key names, f32-vs-f64 spread).
It also copies the transformers source files the spec's [tf] items are checked against to OUT/tf_src.
"""
import json
import math
import os
import shutil
import sys
import traceback

import torch
import transformers
from safetensors.torch import save_file

OUT = sys.argv[1]
TOK = sys.argv[2] if len(sys.argv) > 2 else None
V, H, SEQ = 512, 64, 48
os.makedirs(OUT, exist_ok=True)


def base(**kw):
    cfg = dict(vocab_size=V, hidden_size=H, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               intermediate_size=128, num_hidden_layers=2, max_position_embeddings=256, rms_norm_eps=1e-6,
               tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg.update(kw)
    return cfg


FAMILIES = {
    "qwen2_moe": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM", base(
        num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=64,
        norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=10000.0)),
    "qwen2_moe_norm": ("Qwen2MoeConfig", "Qwen2MoeForCausalLM", base(
        num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=64,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], rope_theta=10000.0)),
    "qwen3_moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", base(
        head_dim=32, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[], rope_theta=1000000.0)),
    "mixtral": ("MixtralConfig", "MixtralForCausalLM", base(
        intermediate_size=32, num_local_experts=4, num_experts_per_tok=2, rope_theta=1000000.0,
        sliding_window=None)),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", base(
        num_hidden_layers=4, sliding_window=8, attn_logit_softcapping=8.0, final_logit_softcapping=4.0,
        query_pre_attn_scalar=16, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
        rope_theta=10000.0)),
    "gemma3_text": ("Gemma3TextConfig", "Gemma3ForCausalLM", base(
        num_hidden_layers=6, sliding_window=8, query_pre_attn_scalar=16, rope_theta=1000000.0,
        rope_local_base_freq=10000.0, hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
    "gemma3_text_linear": ("Gemma3TextConfig", "Gemma3ForCausalLM", base(
        num_hidden_layers=6, sliding_window=8, query_pre_attn_scalar=16, rope_theta=1000000.0,
        rope_local_base_freq=10000.0, rope_scaling={"rope_type": "linear", "factor": 8.0},
        hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True)),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", base(
        num_key_value_heads=4, sliding_window=None, rope_theta=10000.0)),
    "phi3_longrope": ("Phi3Config", "Phi3ForCausalLM", base(
        num_key_value_heads=2, sliding_window=None, rope_theta=10000.0, partial_rotary_factor=0.75,
        original_max_position_embeddings=32, max_position_embeddings=128,
        rope_scaling={"type": "longrope", "short_factor": [1.0, 1.1, 1.3, 1.6, 2.0, 2.5],
                      "long_factor": [1.0, 1.5, 2.5, 4.0, 6.0, 9.0]})),
}

GEMMA = ("gemma",)


def init_weights(model, family):
    g = torch.Generator().manual_seed(0)
    offset_norms = family.startswith("gemma") or "gemma" in family
    for name, p in sorted(model.named_parameters()):
        with torch.no_grad():
            if p.dim() == 1:
                if "norm" in name or "layernorm" in name:
                    d = 0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64)
                    p.copy_(d if offset_norms else 1.0 + d)
                else:
                    p.copy_(0.1 * torch.randn(p.shape, generator=g, dtype=torch.float64))
                continue
            gain = 1.0
            if name.endswith("mlp.gate.weight") or "block_sparse_moe.gate.weight" in name or \
                    name.endswith("router.weight") or name.endswith("gate.weight") and "proj" not in name:
                gain = 4.0
            if "q_proj" in name or "k_proj" in name or "qkv_proj" in name:
                gain = 1.5
            std = gain / math.sqrt(p.shape[-1])
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=torch.float64))


def capture(model):
    """Hooks on the decoder layers: their outputs, in order."""
    outs = []
    layers = None
    for name, mod in model.named_modules():
        if name.endswith("layers") and isinstance(mod, torch.nn.ModuleList) and "vision" not in name \
                and "visual" not in name:
            layers = mod
            break
    hs = []

    def hook(_m, _i, o):
        hs.append((o[0] if isinstance(o, tuple) else o).detach())
    for layer in layers:
        outs.append(layer.register_forward_hook(hook))
    return hs, outs


def router_counts(model, ids, family):
    counts = {}
    hooks = []
    k = getattr(model.config, "num_experts_per_tok", None)

    def mk(name):
        def hook(_m, inp, out):
            logits = out[0] if isinstance(out, tuple) else out
            if logits.dim() == 3:
                logits = logits.reshape(-1, logits.shape[-1])
            p = torch.softmax(logits.double(), -1)
            idx = torch.topk(p, k, -1).indices
            c = torch.bincount(idx.flatten(), minlength=p.shape[-1])
            counts[name] = c.tolist()
            top = torch.topk(p, min(k + 1, p.shape[-1]), -1).values
            counts[name + ":min_gap"] = float((top[:, k - 1] - top[:, k]).min())
        return hook
    for name, mod in model.named_modules():
        if name.endswith("mlp.gate") or name.endswith("block_sparse_moe.gate"):
            hooks.append(mod.register_forward_hook(mk(name)))
    with torch.no_grad():
        model(input_ids=ids)
    for h in hooks:
        h.remove()
    return counts


def run_family(family, cfg_cls, model_cls, cfg_kw, ids):
    d = os.path.join(OUT, family)
    os.makedirs(d, exist_ok=True)
    cfg = getattr(transformers, cfg_cls)(**cfg_kw)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"  # transformers 5: grouped_mm has no float64
    torch.manual_seed(0)
    model = getattr(transformers, model_cls)(cfg).to(torch.float32).eval()
    if hasattr(model, "set_experts_implementation"):
        try:
            model.set_experts_implementation("eager")
        except Exception as e:
            print(family, "set_experts_implementation:", e)
    init_weights(model, family)
    model.save_pretrained(d, safe_serialization=True)
    if TOK:
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if os.path.exists(os.path.join(TOK, f)):
                shutil.copy(os.path.join(TOK, f), d)
    meta = {"family": family, "transformers": transformers.__version__, "torch": torch.__version__,
            "config_kwargs": cfg_kw}
    with torch.no_grad():
        out32 = model(input_ids=ids[:1]).logits[0].float()
        m64 = model.to(torch.float64)
        hs, hooks = capture(m64)
        out64 = m64(input_ids=ids[:1]).logits[0]
        for h in hooks:
            h.remove()
        last = m64(input_ids=ids).logits[:, -1, :]
    ref = {"ids": ids.to(torch.int32), "logits": out64.float(), "last_logits": last.float(),
           "hidden_first": hs[0][0].float(), "hidden_last": hs[-1][0].float(), "logits_f32": out32}
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(d, "reference.safetensors"))
    meta["f32_vs_f64_max_rel"] = float((out32.double() - out64).abs().max() / out64.abs().max())
    meta["logit_absmax"] = float(out64.abs().max())
    if "moe" in family or family == "mixtral":
        meta["router_counts_seq0"] = router_counts(m64, ids[:1], family)
        meta["router_counts_all"] = router_counts(m64, ids, family)
    from safetensors import safe_open
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        meta["keys"] = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(family, "ok", "f32/f64", meta["f32_vs_f64_max_rel"], "absmax", meta["logit_absmax"], flush=True)


def vlm(family, ids):
    """Tiny VLMs: the text-only forward's reference, and the checkpoint's key layout."""
    d = os.path.join(OUT, family)
    os.makedirs(d, exist_ok=True)
    T = transformers
    if family == "qwen2_5_vl":
        text = dict(vocab_size=V, hidden_size=H, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, num_hidden_layers=2, max_position_embeddings=256, rms_norm_eps=1e-6,
                    rope_theta=10000.0, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]},
                    tie_word_embeddings=False)
        vis = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=H, patch_size=14,
                   spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[0], window_size=56)
        cfg = T.Qwen2_5_VLConfig(text_config=text, vision_config=vis, image_token_id=500, video_token_id=501,
                                 vision_start_token_id=502, vision_end_token_id=503, bos_token_id=1,
                                 eos_token_id=2)
        model_cls = T.Qwen2_5_VLForConditionalGeneration
    elif family == "gemma3":
        text = dict(vocab_size=V, hidden_size=H, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    intermediate_size=128, num_hidden_layers=6, sliding_window=8, query_pre_attn_scalar=16,
                    rope_theta=1000000.0, rope_local_base_freq=10000.0, hidden_activation="gelu_pytorch_tanh",
                    max_position_embeddings=256)
        vis = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                   image_size=28, patch_size=14)
        cfg = T.Gemma3Config(text_config=text, vision_config=vis, mm_tokens_per_image=4, image_token_index=500,
                             boi_token_index=501, eoi_token_index=502)
        model_cls = T.Gemma3ForConditionalGeneration
    else:  # mllama
        text = dict(vocab_size=V, hidden_size=H, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, num_hidden_layers=3, cross_attention_layers=[1],
                    max_position_embeddings=256, rope_theta=10000.0, rope_scaling=None,
                    pad_token_id=0, bos_token_id=1, eos_token_id=2)
        vis = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_global_layers=1,
                   attention_heads=2, image_size=28, patch_size=14, vision_output_dim=64,
                   intermediate_layers_indices=[0], max_num_tiles=1, supported_aspect_ratios=[[1, 1]])
        cfg = T.MllamaConfig(text_config=text, vision_config=vis, image_token_index=500)
        model_cls = T.MllamaForConditionalGeneration
    cfg._attn_implementation = "eager"
    try:
        cfg.text_config._attn_implementation = "eager"
    except Exception:
        pass
    torch.manual_seed(0)
    model = model_cls(cfg).to(torch.float32).eval()
    init_weights(model, family)
    model.save_pretrained(d, safe_serialization=True)
    if TOK:
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if os.path.exists(os.path.join(TOK, f)):
                shutil.copy(os.path.join(TOK, f), d)
    try:
        ip = {"qwen2_5_vl": "Qwen2VLImageProcessor", "gemma3": "Gemma3ImageProcessor",
              "mllama": "MllamaImageProcessor"}[family]
        getattr(T, ip)().save_pretrained(d)
    except Exception as e:  # processor classes may need torchvision/PIL
        print(family, "image processor not saved:", e)
    meta = {"family": family, "transformers": T.__version__}
    from safetensors import safe_open
    with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        meta["keys"] = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
    if family != "mllama":
        with torch.no_grad():
            m64 = model.to(torch.float64)
            hs, hooks = capture(m64)
            out64 = m64(input_ids=ids[:1]).logits[0]
            for h in hooks:
                h.remove()
            last = m64(input_ids=ids).logits[:, -1, :]
        ref = {"ids": ids.to(torch.int32), "logits": out64.float(), "last_logits": last.float(),
               "hidden_first": hs[0][0].float(), "hidden_last": hs[-1][0].float()}
        save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(d, "reference.safetensors"))
        meta["logit_absmax"] = float(out64.abs().max())
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(family, "ok", flush=True)


def copy_sources():
    src = os.path.dirname(transformers.__file__)
    dst = os.path.join(OUT, "tf_src")
    os.makedirs(dst, exist_ok=True)
    rels = ["masking_utils.py", "modeling_rope_utils.py", "conversion_mapping.py", "core_model_loading.py",
            "integrations/moe.py", "integrations/sdpa_attention.py", "activations.py"]
    for m in ("qwen2_moe", "qwen3_moe", "mixtral", "gemma2", "gemma3", "phi3", "qwen2_5_vl", "mllama"):
        for kind in ("modeling", "configuration"):
            rels.append(f"models/{m}/{kind}_{m}.py")
    for r in rels:
        p = os.path.join(src, r)
        if os.path.exists(p):
            shutil.copy(p, os.path.join(dst, r.replace("/", "__")))
        else:
            print("missing source", r)


def main():
    copy_sources()
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, V, (3, SEQ), generator=g)
    for family, (cc, mc, kw) in FAMILIES.items():
        try:
            run_family(family, cc, mc, kw, ids)
        except Exception:
            print(family, "FAILED")
            traceback.print_exc()
    for family in ("qwen2_5_vl", "gemma3", "mllama"):
        try:
            vlm(family, ids)
        except Exception:
            print(family, "FAILED")
            traceback.print_exc()


if __name__ == "__main__":
    main()
