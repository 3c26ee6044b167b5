"""Core attention on ``torch.nn.functional.scaled_dot_product_attention``.

Without Transformer Engine, megatron-core's local layer spec uses its unfused
``DotProductAttention``: it materialises the full [b, heads, s, s] score and
probability matrices (about 6 GiB per layer at s = 8192, 16 heads, bf16), so
the paper's 1.3B at sequence 8192 does not fit a GPU, and it runs the softmax
in plain torch. ``SDPAttention`` is a drop-in ``core_attention`` for the local
spec (same constructor and forward arguments, tensors [s, b, heads, head_dim])
that hands the work to torch's SDPA: flash / memory-efficient kernels on CUDA
(causal, no s x s matrix kept), a fused kernel on CPU. Same softmax scale,
causal mask or megatron's boolean mask (True = masked out), grouped-query
attention without materialising repeated keys and values. It has no
parameters, so checkpoints move freely between it and the unfused module.
"""
from __future__ import annotations

import math
from typing import Optional

import torch.nn.functional as F
from torch import Tensor

from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig


class SDPAttention(MegatronModule):
    """Causal (or masked) self-attention through torch SDPA; see the module docstring."""

    def __init__(
        self,
        config: TransformerConfig,
        layer_number: int,
        attn_mask_type: AttnMaskType,
        attention_type: str,
        attention_dropout: Optional[float] = None,
        softmax_scale: Optional[float] = None,
        cp_comm_type: Optional[str] = None,
        pg_collection=None,
    ):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("SDPAttention: context parallelism needs Transformer Engine's attention")
        if getattr(config, "softmax_type", "vanilla") != "vanilla":
            raise ValueError(f"SDPAttention: softmax_type {config.softmax_type!r} is not supported")
        if getattr(config, "window_size", None) is not None:
            raise ValueError("SDPAttention: sliding-window attention is not supported")
        self.layer_number = max(1, layer_number)
        self.attn_mask_type = attn_mask_type
        tp = pg_collection.tp.size() if pg_collection is not None else \
            parallel_state.get_tensor_model_parallel_world_size()
        self.heads = config.num_attention_heads // tp
        self.groups = config.num_query_groups // tp
        self.head_dim = config.kv_channels
        # DotProductAttention divides its scale by the layer number under
        # apply_query_key_layer_scaling and multiplies it back inside the softmax:
        # the effective scale is this one either way.
        self.softmax_scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(self.head_dim)
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attention_mask: Optional[Tensor],
        attn_mask_type: Optional[AttnMaskType] = None,
        attention_bias: Optional[Tensor] = None,
        packed_seq_params=None,
    ) -> Tensor:
        if packed_seq_params is not None:
            raise ValueError("SDPAttention: packed sequences need Transformer Engine's attention")
        if attention_bias is not None:
            raise ValueError("SDPAttention: attention bias is not supported")
        sq, b = query.shape[0], query.shape[1]
        mask_type = attn_mask_type if attn_mask_type is not None else self.attn_mask_type
        # [s, b, h, d] -> [b, h, s, d]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        if attention_mask is not None:
            # megatron's masks are True where attention is NOT allowed; SDPA's the opposite.
            mask, causal = ~attention_mask, False
        else:
            mask, causal = None, mask_type == AttnMaskType.causal and sq > 1
        p = self.dropout_p if self.training else 0.0
        kwargs = dict(attn_mask=mask, dropout_p=p, is_causal=causal, scale=self.softmax_scale,
                      enable_gqa=self.heads != self.groups)
        if p > 0.0:
            with tensor_parallel.get_cuda_rng_tracker().fork():
                out = F.scaled_dot_product_attention(q, k, v, **kwargs)
        else:
            out = F.scaled_dot_product_attention(q, k, v, **kwargs)
        # [b, h, s, d] -> [s, b, h * d]
        return out.permute(2, 0, 1, 3).reshape(sq, b, self.heads * self.head_dim)
