"""The GPT model: megatron-core GPTModel configured Llama-2 style.

RMSNorm, SwiGLU, RoPE, no biases, tied input/output embeddings and optional
grouped-query attention. The Transformer Engine layer spec is used when TE is
installed and CUDA is present (fused kernels, bf16 on H100s); otherwise the
local spec of plain megatron-core modules, which also runs on CPU.
"""
from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from megatron_snow.config import ConfigError
from megatron_snow.training.config import ModelConfig, ParallelConfig, padded_vocab_size


def te_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


def use_transformer_engine(cfg: ModelConfig) -> bool:
    if cfg.transformer_impl == "local":
        return False
    if cfg.transformer_impl == "transformer_engine":
        if not te_available():
            raise ConfigError("model.transformer_impl: transformer_engine needs Transformer Engine and CUDA "
                              "(pip install -e '.[gpu]' on a GPU node), or use auto/local")
        return True
    return te_available()


def transformer_config(cfg: ModelConfig, par: ParallelConfig, dtype: torch.dtype):
    """The megatron-core TransformerConfig of a Llama-2 style decoder."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    on_gpu = torch.cuda.is_available()
    return TransformerConfig(
        num_layers=cfg.num_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.ffn_hidden_size,
        num_attention_heads=cfg.num_attention_heads,
        num_query_groups=cfg.num_query_groups,
        init_method_std=cfg.init_method_std,
        layernorm_epsilon=cfg.norm_epsilon,
        normalization="RMSNorm",
        activation_func=F.silu,
        gated_linear_unit=True,  # SwiGLU
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bias_dropout_fusion=False,
        apply_rope_fusion=False,
        # The fused kernel is a compiled extension that the megatron-core wheel lacks (it comes
        # with Megatron-LM builds or TE images); without it the local spec would crash in bf16.
        masked_softmax_fusion=on_gpu and importlib.util.find_spec("scaled_masked_softmax_cuda") is not None,
        gradient_accumulation_fusion=False,
        persist_layer_norm=False,
        tensor_model_parallel_size=par.tensor_model_parallel_size,
        pipeline_model_parallel_size=par.pipeline_model_parallel_size,
        sequence_parallel=par.sequence_parallel and par.tensor_model_parallel_size > 1,
        pipeline_dtype=dtype,
        params_dtype=dtype,
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        # Initialise the full weight on CPU then keep this rank's slice: no CUDA
        # RNG needed and TP=N starts from the same weights as TP=1.
        use_cpu_initialization=not on_gpu,
        perform_initialization=True,
    )


def layer_spec(cfg: ModelConfig):
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    if use_transformer_engine(cfg):
        return get_gpt_layer_with_transformer_engine_spec()
    return get_gpt_layer_local_spec(normalization="RMSNorm")


def build_model(cfg: ModelConfig, par: ParallelConfig, vocab_size: int, seq_length: int, dtype: torch.dtype):
    """This rank's GPTModel (its pipeline stage and tensor slice), unwrapped."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    config = transformer_config(cfg, par, dtype)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(cfg),
        vocab_size=padded_vocab_size(vocab_size, cfg.make_vocab_size_divisible_by, par.tensor_model_parallel_size),
        max_sequence_length=seq_length,
        pre_process=parallel_state.is_pipeline_first_stage(),
        post_process=parallel_state.is_pipeline_last_stage(),
        share_embeddings_and_output_weights=cfg.tie_embeddings,
        position_embedding_type="rope",
        rotary_base=cfg.rotary_base,
    )
    if torch.cuda.is_available():
        model.cuda(torch.cuda.current_device())
    return model
