"""Parameter count and training FLOPs per token of a config, from its shape.

Used by tools/model_info.py (no model is built), for MFU in the trainer and in
bench/bench_train.py. A test checks the count against a real megatron-core
model. FLOPs follow Megatron-LM's ``num_floating_point_operations``
(core_v0.16.1, dense GPT branch), so an MFU printed here means what
Megatron's does: every GEMM 3 times (forward, weight and data gradients) at
2 FLOPs per multiply-add; causal attention counted as half of the s x s
products; SwiGLU's MLP as 3/2 of a plain one; the logit GEMM counted once
even when the embedding is tied; norms, softmax and RoPE not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from megatron_snow.training.config import ModelConfig, padded_vocab_size


@dataclass
class ModelSize:
    params: int  # all trainable parameters (tied embedding counted once)
    embedding_params: int
    non_embedding_params: int
    flops_per_token: float  # training (forward + backward), incl. attention


def model_size(cfg: ModelConfig, vocab_size: int, seq_length: int, tp: int = 1) -> ModelSize:
    h, f, L = cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_layers
    heads = cfg.num_attention_heads
    groups = cfg.num_query_groups or heads
    head_dim = h // heads
    v = padded_vocab_size(vocab_size, cfg.make_vocab_size_divisible_by, tp)

    attn = h * (heads * head_dim) + 2 * h * (groups * head_dim) + (heads * head_dim) * h
    mlp = 3 * h * f  # SwiGLU: gate, up, down
    norms = 2 * h
    per_layer = attn + mlp + norms
    embedding = v * h
    output = 0 if cfg.tie_embeddings else v * h
    params = L * per_layer + h + embedding + output  # + final norm

    return ModelSize(
        params=params,
        embedding_params=embedding + output,
        non_embedding_params=params - embedding - output,
        flops_per_token=megatron_flops_per_token(cfg, v, seq_length),
    )


def megatron_flops_per_token(cfg: ModelConfig, padded_vocab: int, seq_length: int) -> float:
    """Training FLOPs per token by Megatron-LM's formula (see the module docstring)."""
    h, f, L = cfg.hidden_size, cfg.ffn_hidden_size, cfg.num_layers
    heads = cfg.num_attention_heads
    groups = cfg.num_query_groups or heads
    kv_channels = h // heads
    q_size = kv_channels * heads
    fwd_bwd = 3 * 2  # 3 GEMMs per weight (fwd, wgrad, dgrad), 2 FLOPs per multiply-add
    mlp = fwd_bwd * 2 * h * f * 3 / 2  # two h x f GEMMs, SwiGLU's gate adds half again
    attention = fwd_bwd * (
        h * (q_size + 2 * kv_channels * groups)  # QKV projection
        + q_size * seq_length / 2 * 2  # QK^T and (QK^T)V, causal: half the matrix
        + q_size * h  # output projection
    )
    logits = fwd_bwd * h * padded_vocab
    return float(L * (mlp + attention) + logits)
