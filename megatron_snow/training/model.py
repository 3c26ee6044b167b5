"""The GPT model: megatron-core GPTModel configured Llama-2 style.

RMSNorm, SwiGLU, RoPE, no biases, tied input/output embeddings and optional
grouped-query attention. The Transformer Engine layer spec is used when TE is
installed and CUDA is present (fused kernels, bf16 on H100s); otherwise the
local spec of plain megatron-core modules, which also runs on CPU, with torch's
scaled_dot_product_attention as its core attention (attention.py) unless the
config asks for megatron's unfused one. ``choose_kernels`` makes that choice
in one place and the trainer logs it as its first line.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from megatron_snow.config import ConfigError
from megatron_snow.training.config import ModelConfig, ParallelConfig, TrainingConfig, padded_vocab_size


# The decoder's shape fields, named alike in ModelConfig, megatron's TransformerConfig and the converter's Shape.
SHAPE_FIELDS = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups")


def config_kwargs(obj, *names: str, **renamed: str) -> dict:
    """Keyword arguments for another library's config, copied from the fields of ``obj``: each of
    ``names`` under its own name, each ``theirs="ours"`` of ``renamed`` under theirs. The one place
    the trainer (megatron's OptimizerConfig), the model (TransformerConfig) and the converter
    (Shape, transformers' LlamaConfig) copy fields that map one to one."""
    kwargs = {name: getattr(obj, name) for name in names}
    kwargs.update({theirs: getattr(obj, ours) for theirs, ours in renamed.items()})
    return kwargs


def te_available() -> bool:
    if not torch.cuda.is_available():
        return False
    try:
        import transformer_engine  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class Kernels:
    """Which layer spec, core attention and fusions a run uses (logged first, never silent)."""

    spec: str  # "transformer_engine" | "local"
    attention: str  # "te" | "sdpa" | "unfused"
    gradient_accumulation_fusion: bool
    rope_fusion: bool
    masked_softmax_fusion: bool
    swiglu_fusion: bool = False  # megatron's bias_swiglu_impl (torch.compile)
    # megatron's fused vocab-parallel cross entropy (torch.compile); bf16 runs only: its
    # backward returns bf16 logit gradients, which an fp32 run must not get
    cross_entropy_fusion: bool = False

    def describe(self) -> str:
        attention = {"te": "Transformer Engine DotProductAttention (fused)",
                     "sdpa": "torch scaled_dot_product_attention (megatron_snow.training.attention)",
                     "unfused": "megatron-core DotProductAttention (unfused, s x s scores)"}[self.attention]
        on = lambda flag: "on" if flag else "off"  # noqa: E731
        return (f"layer spec: {'Transformer Engine' if self.spec == 'transformer_engine' else 'megatron-core local'}; "
                f"attention kernel: {attention}; gradient_accumulation_fusion {on(self.gradient_accumulation_fusion)}, "
                f"RoPE fusion {on(self.rope_fusion)}, masked softmax fusion {on(self.masked_softmax_fusion)}, "
                f"SwiGLU fusion {on(self.swiglu_fusion)}, cross-entropy fusion {on(self.cross_entropy_fusion)}")


def _fusion_kernels(spec: str, on_gpu: bool) -> tuple[bool, bool, bool]:
    """(gradient accumulation, RoPE, masked softmax) fusion: on exactly when the kernel exists."""
    if not on_gpu:
        return False, False, False
    grad_accum = spec == "transformer_engine" or importlib.util.find_spec("fused_weight_gradient_mlp_cuda") is not None
    rope = False
    if spec == "transformer_engine":
        from megatron.core.models.common.embeddings import rope_utils

        rope = rope_utils.fused_apply_rotary_pos_emb is not None
    # The fused softmax is a compiled extension that the megatron-core wheel lacks (it comes
    # with Megatron-LM builds or TE images); without it the unfused attention would crash in bf16.
    softmax = importlib.util.find_spec("scaled_masked_softmax_cuda") is not None
    return grad_accum, rope, softmax


def choose_kernels(cfg: ModelConfig, te_present: bool, on_gpu: bool | None = None, bf16: bool = True) -> Kernels:
    """Resolve model.transformer_impl x model.attention_impl; ConfigError on a contradiction."""
    if on_gpu is None:
        on_gpu = torch.cuda.is_available()
    ti, ai = cfg.transformer_impl, cfg.attention_impl
    if ti == "transformer_engine" and not te_present:
        raise ConfigError("model.transformer_impl: transformer_engine needs Transformer Engine and CUDA "
                          "(pip install -e '.[gpu]' on a GPU node), or use auto/local")
    if ai == "te":
        if ti == "local":
            raise ConfigError("model.attention_impl=te needs the Transformer Engine layer spec "
                              "(model.transformer_impl auto or transformer_engine)")
        if not te_present:
            raise ConfigError("model.attention_impl=te needs Transformer Engine and CUDA; "
                              "use auto or sdpa (torch scaled_dot_product_attention)")
    if ti == "transformer_engine" and ai in ("sdpa", "unfused"):
        raise ConfigError(f"model.attention_impl={ai} is a core attention for the local layer spec: "
                          "set model.transformer_impl=local (or attention_impl auto/te)")
    if ti == "transformer_engine" or ai == "te" or (ti == "auto" and ai == "auto" and te_present):
        spec, attention = "transformer_engine", "te"
    else:
        spec, attention = "local", ("unfused" if ai == "unfused" else "sdpa")
    # megatron-core compiles its SwiGLU and cross-entropy fusions with torch.compile: Triton
    # kernels on CUDA. On CPU they would compile C++ on the first step for little gain.
    compiled = on_gpu and cfg.fusions == "auto" and importlib.util.find_spec("triton") is not None
    return Kernels(spec, attention, *_fusion_kernels(spec, on_gpu), swiglu_fusion=compiled,
                   cross_entropy_fusion=compiled and bf16)


def kernels(cfg: ModelConfig, dtype: torch.dtype = torch.bfloat16) -> Kernels:
    """This machine's choice for cfg, training in ``dtype``."""
    return choose_kernels(cfg, te_available(), bf16=dtype == torch.bfloat16)


def use_transformer_engine(cfg: ModelConfig) -> bool:
    return kernels(cfg).spec == "transformer_engine"


def transformer_config(cfg: ModelConfig, par: ParallelConfig, dtype: torch.dtype,
                       training: TrainingConfig | None = None, kern: Kernels | None = None):
    """The megatron-core TransformerConfig of a Llama-2 style decoder."""
    from megatron.core.transformer.transformer_config import TransformerConfig

    on_gpu = torch.cuda.is_available()
    kern = kern or kernels(cfg, dtype)
    t = training or TrainingConfig()
    recompute = {}
    if t.recompute_granularity is not None:
        recompute = dict(recompute_granularity=t.recompute_granularity, recompute_method=t.recompute_method,
                         recompute_num_layers=t.recompute_num_layers)
        if t.recompute_modules is not None:
            recompute["recompute_modules"] = list(t.recompute_modules)
    try:
        return TransformerConfig(
            **config_kwargs(cfg, *SHAPE_FIELDS, "init_method_std", layernorm_epsilon="norm_epsilon"),
            normalization="RMSNorm",
            activation_func=F.silu,
            gated_linear_unit=True,  # SwiGLU
            add_bias_linear=False,
            add_qkv_bias=False,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            bias_dropout_fusion=False,
            # SwiGLU as one compiled kernel that keeps only its input for backward
            bias_activation_fusion=kern.swiglu_fusion,
            cross_entropy_loss_fusion=kern.cross_entropy_fusion,
            cross_entropy_fusion_impl="native",
            apply_rope_fusion=kern.rope_fusion,
            masked_softmax_fusion=kern.masked_softmax_fusion,
            gradient_accumulation_fusion=kern.gradient_accumulation_fusion,
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
            **recompute,
        )
    except (ValueError, AssertionError) as e:  # megatron's own check of the recompute settings
        raise ConfigError(f"training.recompute_*: {e}") from None


def layer_spec(cfg: ModelConfig, kern: Kernels | None = None):
    from megatron.core.models.gpt.gpt_layer_specs import (
        get_gpt_layer_local_spec,
        get_gpt_layer_with_transformer_engine_spec,
    )

    kern = kern or kernels(cfg)
    if kern.spec == "transformer_engine":
        return get_gpt_layer_with_transformer_engine_spec()
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    if kern.attention == "sdpa":
        from megatron_snow.training.attention import SDPAttention

        spec.submodules.self_attention.submodules.core_attention = SDPAttention
    return spec


def build_model(cfg: ModelConfig, par: ParallelConfig, vocab_size: int, seq_length: int, dtype: torch.dtype,
                training: TrainingConfig | None = None, kern: Kernels | None = None):
    """This rank's GPTModel (its pipeline stage and tensor slice), unwrapped."""
    from megatron.core import parallel_state
    from megatron.core.models.gpt import GPTModel

    kern = kern or kernels(cfg, dtype)
    config = transformer_config(cfg, par, dtype, training, kern)
    model = GPTModel(
        config=config,
        transformer_layer_spec=layer_spec(cfg, kern),
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
