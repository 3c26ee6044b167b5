"""How megatron-core's GPTModel weights map onto Hugging Face ``LlamaForCausalLM``.

Megatron (this trainer's dist checkpoints) keeps one tensor per parameter
kind with the layers stacked on dim 0; Hugging Face keeps one tensor per
layer. The fused QKV weight holds, for each query group in turn, that
group's query heads, then its key head, then its value head;
``linear_fc1`` is [gate; up]. RoPE needs no permutation (both rotate
halves). The two RMSNorm weights of a layer are stored under Transformer
Engine names (``linear_qkv.layer_norm_weight``, ``linear_fc1.layer_norm_weight``)
by both layer specs; the local spec's module names are accepted too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from megatron_snow.config import ConfigError
from megatron_snow.training.model import SHAPE_FIELDS, config_kwargs

# Megatron stacked key -> (HF per-layer names, alternative megatron keys)
EMBEDDING = "embedding.word_embeddings.weight"
FINAL_NORM = "decoder.final_layernorm.weight"
OUTPUT = "output_layer.weight"
LAYER_KEYS: dict[str, tuple[str, ...]] = {
    # the first name is what both specs write; the others are local-spec module names
    "input_norm": ("self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight"),
    "qkv": ("self_attention.linear_qkv.weight",),
    "proj": ("self_attention.linear_proj.weight",),
    "mlp_norm": ("mlp.linear_fc1.layer_norm_weight", "pre_mlp_layernorm.weight"),
    "fc1": ("mlp.linear_fc1.weight",),
    "fc2": ("mlp.linear_fc2.weight",),
}
HF_LAYER = "model.layers.{}."


class ConvertError(ConfigError):
    """Bad input to a conversion (exit code 2); the message is one line saying what differs."""


@dataclass(frozen=True)
class Shape:
    """What both sides must agree on."""

    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_attention_heads: int
    num_query_groups: int
    vocab_size: int  # real (unpadded) vocabulary
    tie_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def megatron_shapes(self, padded_vocab: int) -> dict[str, tuple[int, ...]]:
        """Global tensor shapes in a checkpoint (layers stacked on dim 0), by role."""
        L, h, f, d = self.num_layers, self.hidden_size, self.ffn_hidden_size, self.head_dim
        qkv_rows = (self.num_attention_heads + 2 * self.num_query_groups) * d
        out = {
            "embedding": (padded_vocab, h),
            "final_norm": (h,),
            "input_norm": (L, h),
            "qkv": (L, qkv_rows, h),
            "proj": (L, h, self.num_attention_heads * d),
            "mlp_norm": (L, h),
            "fc1": (L, 2 * f, h),
            "fc2": (L, h, f),
        }
        if not self.tie_embeddings:
            out["output"] = (padded_vocab, h)
        return out

    def hf_names(self, role: str, layer: int | None = None) -> list[str]:
        p = HF_LAYER.format(layer)
        return {
            "embedding": ["model.embed_tokens.weight"],
            "final_norm": ["model.norm.weight"],
            "output": ["lm_head.weight"],
            "input_norm": [p + "input_layernorm.weight"],
            "qkv": [p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"],
            "proj": [p + "self_attn.o_proj.weight"],
            "mlp_norm": [p + "post_attention_layernorm.weight"],
            "fc1": [p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"],
            "fc2": [p + "mlp.down_proj.weight"],
        }[role]


def split_qkv(w: torch.Tensor, s: Shape) -> list[torch.Tensor]:
    """One layer's fused [g x (q heads, k, v)] rows -> q, k, v (copies)."""
    g, d, h = s.num_query_groups, s.head_dim, w.shape[-1]
    r = s.num_attention_heads // g
    w = w.reshape(g, r + 2, d, h)
    return [w[:, :r].reshape(g * r * d, h).clone(), w[:, r].reshape(g * d, h).clone(),
            w[:, r + 1].reshape(g * d, h).clone()]


def merge_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, s: Shape) -> torch.Tensor:
    g, d = s.num_query_groups, s.head_dim
    r = s.num_attention_heads // g
    h = q.shape[-1]
    return torch.cat([q.reshape(g, r, d, h), k.reshape(g, 1, d, h), v.reshape(g, 1, d, h)], dim=1).reshape(-1, h)


def to_hf_tensors(role: str, w: torch.Tensor, s: Shape) -> list[torch.Tensor]:
    """One layer's (or a global) megatron tensor -> its Hugging Face tensors, in ``hf_names`` order."""
    if role == "qkv":
        return split_qkv(w, s)
    if role == "fc1":
        f = s.ffn_hidden_size
        return [w[:f].clone(), w[f:].clone()]
    if role in ("embedding", "output"):
        return [w[: s.vocab_size].clone()]  # drop the vocabulary padding rows
    return [w.clone()]


def from_hf_tensors(role: str, ws: list[torch.Tensor], s: Shape, padded_vocab: int) -> torch.Tensor:
    if role == "qkv":
        return merge_qkv(*ws, s)
    if role == "fc1":
        return torch.cat(ws, dim=0)
    if role in ("embedding", "output"):
        w = ws[0]
        pad = torch.zeros(padded_vocab - w.shape[0], w.shape[1], dtype=w.dtype)
        return torch.cat([w, pad], dim=0)
    return ws[0]


# --- Hugging Face config <-> our ModelConfig -------------------------------------------------

_HF_ARCH = "LlamaForCausalLM"
# LlamaConfig's names for the Shape fields it calls otherwise (the others share their names).
_HF_NAMES = {"num_hidden_layers": "num_layers", "intermediate_size": "ffn_hidden_size",
             "num_key_value_heads": "num_query_groups", "tie_word_embeddings": "tie_embeddings"}


def hf_config_dict(s: Shape, rotary_base: float, norm_epsilon: float, init_std: float, max_positions: int,
                   dtype: str, token_ids: dict) -> dict:
    """config.json of a LlamaForCausalLM (written for the installed transformers, plus
    ``rope_theta`` / ``torch_dtype`` at top level for older readers such as vLLM's)."""
    from transformers import LlamaConfig

    cfg = LlamaConfig(
        **config_kwargs(s, "vocab_size", "hidden_size", "num_attention_heads", "head_dim", **_HF_NAMES),
        hidden_act="silu",
        max_position_embeddings=max_positions,
        initializer_range=init_std,
        rms_norm_eps=norm_epsilon,
        rope_theta=float(rotary_base),
        attention_bias=False,
        mlp_bias=False,
        **token_ids,
    )
    d = cfg.to_dict()
    d["architectures"] = [_HF_ARCH]
    d["rope_theta"] = float(rotary_base)
    d["dtype"] = d["torch_dtype"] = dtype
    d.pop("transformers_version", None)
    return d


def read_hf_config(hf: dict, where: str) -> dict:
    """Our model settings from a Hugging Face config.json; anything not a plain Llama is refused."""
    archs = hf.get("architectures") or []
    mt = hf.get("model_type")
    if mt != "llama" or (archs and _HF_ARCH not in archs):
        got = ", ".join(archs) if archs else "none"
        raise ConvertError(f"{where}: not a Llama model: model_type {mt!r}, architectures {got} "
                           f"(expected model_type 'llama', {_HF_ARCH})")
    heads = hf["num_attention_heads"]
    hidden = hf["hidden_size"]
    groups = hf.get("num_key_value_heads") or heads
    rope = hf.get("rope_parameters") or {}
    theta = hf.get("rope_theta", rope.get("rope_theta", 10000.0))
    problems = []
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act {hf['hidden_act']!r} (silu needed)")
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        problems.append("biases in attention or MLP")
    scaling = hf.get("rope_scaling") or {}
    rope_types = {rope.get("rope_type"), scaling.get("rope_type") or scaling.get("type")} - {None, "default"}
    if rope_types:
        problems.append(f"RoPE scaling {', '.join(map(repr, sorted(rope_types)))}")
    if hf.get("head_dim") not in (None, hidden // heads):
        problems.append(f"head_dim {hf['head_dim']} != hidden_size / num_attention_heads ({hidden // heads})")
    if hf.get("pretraining_tp", 1) != 1:
        problems.append(f"pretraining_tp {hf['pretraining_tp']}")
    if float(theta) != int(theta):
        problems.append(f"rope_theta {theta} is not an integer (model.rotary_base is)")
    if problems:
        raise ConvertError(f"{where}: Llama features megatron-snow's GPT model lacks: {', '.join(problems)}")
    return {
        "num_layers": hf["num_hidden_layers"],
        "hidden_size": hidden,
        "ffn_hidden_size": hf["intermediate_size"],
        "num_attention_heads": heads,
        "num_query_groups": groups,
        "vocab_size": hf["vocab_size"],
        "rotary_base": int(theta),
        "norm_epsilon": float(hf.get("rms_norm_eps", 1e-6)),
        "init_method_std": float(hf.get("initializer_range", 0.02)),
        "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
    }


def shape_of(model_cfg, vocab_size: int) -> Shape:
    shape = config_kwargs(model_cfg, *SHAPE_FIELDS, "tie_embeddings")
    shape["num_query_groups"] = model_cfg.num_query_groups or model_cfg.num_attention_heads
    return Shape(**shape, vocab_size=vocab_size)
