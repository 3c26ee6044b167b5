"""Parameter count and training FLOPs per token of a config, from its shape.

Used by tools/model_info.py (no model is built) and for MFU in the trainer.
A test checks the count against a real megatron-core model.
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

    # 6 FLOPs per weight per token for the matmuls (2 forward, 4 backward), the
    # output projection included even when tied; plus attention scores and
    # values: 2 matmuls of seq x head_dim per head, x3 for backward, causal
    # halving not applied (Megatron's convention).
    matmul_weights = L * (attn + mlp) + v * h
    attention = L * 2 * 2 * seq_length * h
    flops = 6 * matmul_weights + 3 * attention
    return ModelSize(
        params=params,
        embedding_params=embedding + output,
        non_embedding_params=params - embedding - output,
        flops_per_token=float(flops),
    )
