#!/usr/bin/env python3
"""Makes tests/data/archs: one tiny random-weight HF checkpoint per architecture of issue 16 that
samq does not read yet, with HF transformers' float32 logits as the oracle for samq's engine.

  mistral    MistralForCausalLM: the llama graph plus sliding-window attention (window 16 < the
             33 fixture tokens, so the window is exercised)
  gemma3     Gemma3ForCausalLM (text): embedding scale, pre/post norms around attention and FFN,
             GeGLU (gelu tanh), q/k norm, query_pre_attn_scalar != head_dim, alternating
             sliding (window 16, local RoPE base) and full layers, tied embeddings
  phi3       Phi3ForCausalLM: fused qkv_proj and gate_up_proj
  mixtral    MixtralForCausalLM: 4 experts, top-2, routing weights renormalised
  qwen3moe   Qwen3MoeForCausalLM: 4 experts, top-2, norm_topk_prob false (refmoe-31m has true)

Each folder: config.json + model.safetensors (bf16, save_pretrained), the refcode-32m tokenizer
files (tokenizer.json, tokenizer_config.json: the fixture's ids are all that matter), and
reference-logits.f32 + reference-logits.json: the float32 forward of the saved bf16 weights,
eager attention, on BOS + the first 32 ids of golden/tokenizer/sample2.ids, shape (33, 8192).

Weights: seeded normal, matrices N(0, 1/fan_in) so activations keep their scale through the two
layers (transformers' default init of 0.02 gives almost uniform logits), embedding N(0, 0.5^2),
norm weights 1 + 0.1 N(0, 1) (Gemma's (1 + w) norms: w = 0.1 N(0, 1)).

Needs torch and transformers 5 (the GPU machine has both; CPU is enough).
Usage: make_arch_fixtures.py --shared ../shared --out tests/data/archs [--only mistral,phi3]
"""
import argparse
import json
import os
import shutil
import sys

import torch
import transformers as tf

VOCAB = 8192
N_TOK = 33


def common(**kw):
    base = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=1, pad_token_id=None)
    base.update(kw)
    return base


def configs():
    return {
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM,
                    common(head_dim=16, sliding_window=16, rope_theta=1e6, tie_word_embeddings=False)),
        "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM,
                   common(head_dim=16, query_pre_attn_scalar=24, sliding_window=16,
                          layer_types=["sliding_attention", "full_attention"], rope_theta=1e6,
                          rope_local_base_freq=10000.0, final_logit_softcapping=None,
                          attn_logit_softcapping=None, hidden_activation="gelu_pytorch_tanh",
                          tie_word_embeddings=True)),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM,
                 common(rope_theta=10000.0, original_max_position_embeddings=1024, sliding_window=None,
                        tie_word_embeddings=False)),
        "mixtral": (tf.MixtralConfig, tf.MixtralForCausalLM,
                    common(intermediate_size=128, num_local_experts=4, num_experts_per_tok=2,
                           sliding_window=None, rope_theta=1e6, tie_word_embeddings=False)),
        "qwen3moe": (tf.Qwen3MoeConfig, tf.Qwen3MoeForCausalLM,
                     common(head_dim=16, moe_intermediate_size=96, num_experts=4, num_experts_per_tok=2,
                            norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[],
                            rope_theta=1e6, tie_word_embeddings=False)),
    }


def randomize(model, name, gen):
    gemma = name == "gemma3"
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() >= 2:
                std = 0.5 if "embed" in pname else p.shape[-1] ** -0.5
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif "norm" in pname:
                noise = torch.randn(p.shape, generator=gen) * 0.1
                p.copy_(noise if gemma else 1.0 + noise)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default="../shared")
    ap.add_argument("--out", default="tests/data/archs")
    ap.add_argument("--only", default="")
    ap.add_argument("--ids", default="", help="token ids file (default: SHARED/golden/tokenizer/sample2.ids)")
    a = ap.parse_args()
    ids = json.load(open(a.ids or os.path.join(a.shared, "golden/tokenizer/sample2.ids")))
    tokens = [0] + ids[: N_TOK - 1]
    tok_dir = os.path.join(a.shared, "models/refcode-32m")
    only = set(x for x in a.only.split(",") if x)
    for seed, (name, (cfg_cls, model_cls, kw)) in enumerate(configs().items()):
        if only and name not in only:
            continue
        d = os.path.join(a.out, name)
        os.makedirs(d, exist_ok=True)
        cfg = cfg_cls(**kw)
        torch.manual_seed(1000 + seed)
        model = model_cls(cfg).to(torch.float32)
        randomize(model, name, torch.Generator().manual_seed(2000 + seed))
        model = model.to(torch.bfloat16)
        model.save_pretrained(d)
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok_dir, f), d)
        ref = model_cls.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
        with torch.no_grad():
            logits = ref(torch.tensor([tokens])).logits[0].to(torch.float32).contiguous()
        assert logits.shape == (N_TOK, VOCAB), logits.shape
        logits.numpy().astype("<f4").tofile(os.path.join(d, "reference-logits.f32"))
        meta = {"tokens": tokens, "shape": [N_TOK, VOCAB], "dtype": "float32 little-endian, row-major",
                "computed_by": f"transformers {tf.__version__}, float32 forward (eager attention) of the saved bf16 weights",
                "made_by": "scripts/make_arch_fixtures.py"}
        json.dump(meta, open(os.path.join(d, "reference-logits.json"), "w"), indent=1)
        top1 = logits.argmax(-1).tolist()
        print(f"{name}: {model_cls.__name__}, {sum(p.numel() for p in model.parameters())} params, "
              f"logit std {logits.std().item():.3f}, distinct top-1 {len(set(top1))}/{N_TOK}")
        from safetensors import safe_open
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            for k in sorted(f.keys()):
                print(f"  {k} {list(f.get_slice(k).get_shape())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
