"""Print a training config's parameter count, FLOPs per token (Megatron-LM's
formula, as the trainer's MFU) and per-GPU memory estimate, without training.

    python -m megatron_snow model-info --config examples/snowcoder_1.3b/phase1.yaml   # or tools/model_info.py
    python tools/model_info.py --config examples/snowcoder_1.3b/phase1.yaml
    python tools/model_info.py --config examples/snowcoder_1.3b/phase1.yaml --world-size 8 \\
        parallel.tensor_model_parallel_size=2 training.micro_batch_size=2 training.recompute_granularity=selective

The parallel layout, micro-batch and recomputation come from the config and its
key=value overrides; --world-size gives the data-parallel size (world / (TP x PP)).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow.training.config import TrainConfig
from megatron_snow.training.flops import model_size
from megatron_snow.training.memory import GiB, estimate_memory


def resolve_vocab(cfg) -> int:
    vocab = cfg.model.vocab_size
    if vocab is None and cfg.data.tokenizer_path:
        from megatron_snow.tokenization.tokenizer import load_tokenizer

        vocab = load_tokenizer(cfg.data.tokenizer_path).vocab_size
    if vocab is None:
        raise ConfigError("model.vocab_size: not set (give it, or data.tokenizer_path)")
    return vocab


def describe(cfg, world_size: int = 1, attention: str | None = None, gpu_memory_gib: float = 80.0,
             on_gpu: bool = True) -> str:
    """The report; ``attention``: sdpa / unfused / te, default what this config resolves to with TE absent."""
    vocab = resolve_vocab(cfg)
    par, t = cfg.parallel, cfg.training
    tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
    if world_size % (tp * pp):
        raise ConfigError(f"--world-size {world_size} is not divisible by TP x PP = {tp} x {pp}")
    dp = world_size // (tp * pp)
    s = model_size(cfg.model, vocab, cfg.data.seq_length, tp)
    tokens = t.global_batch_size * cfg.data.seq_length
    m = cfg.model
    if attention is None:
        te = m.transformer_impl == "transformer_engine" or m.attention_impl == "te"
        attention = "te" if te else ("unfused" if m.attention_impl == "unfused" else "sdpa")
    lines = [
        f"layers {m.num_layers}, hidden {m.hidden_size}, ffn {m.ffn_hidden_size}, heads {m.num_attention_heads}"
        f" (kv {m.num_query_groups or m.num_attention_heads}), vocab {vocab}, seq {cfg.data.seq_length},"
        f" tied embeddings {m.tie_embeddings}",
        f"parameters: {s.params:,} ({s.params / 1e9:.3f}B; embedding {s.embedding_params:,},"
        f" non-embedding {s.non_embedding_params:,})",
        f"training FLOPs per token (Megatron-LM formula, causal attention halved): {s.flops_per_token:,.0f}"
        f" ({s.flops_per_token / 1e9:.2f} GFLOP)",
        f"per step ({t.global_batch_size} x {cfg.data.seq_length} = {tokens:,} tokens):"
        f" {s.flops_per_token * tokens:.4g} FLOPs; whole run ({t.train_iters} iters):"
        f" {s.flops_per_token * tokens * t.train_iters:.4g} FLOPs",
    ]
    recompute = t.recompute_granularity or "none"
    if t.recompute_granularity == "full":
        recompute += f" ({t.recompute_method}, {t.recompute_num_layers} layers)"
    precision = t.precision if t.precision != "auto" else ("bf16" if on_gpu else "fp32")
    lines.append(f"memory per {'GPU' if on_gpu else 'CPU rank'} (estimate; TP={tp} PP={pp} DP={dp}, "
                 f"micro-batch {t.micro_batch_size}, precision {precision}, recompute {recompute}, "
                 f"distributed optimizer {par.use_distributed_optimizer}):")
    for att in dict.fromkeys([attention, "sdpa", "unfused"]):
        e = estimate_memory(cfg, vocab, att, dp=dp, on_gpu=on_gpu)
        fits = "fits" if e.total <= gpu_memory_gib * GiB * 0.9 else "does NOT fit"
        mark = " (this config)" if att == attention else ""
        lines.append(f"  attention {att}{mark}: {e.describe()} -> {fits} {gpu_memory_gib:g} GiB with 10% headroom")
    return "\n".join(lines)


@dataclass
class ModelInfoConfig(TrainConfig, Config):
    """Settings of ``model-info``: a training config (``--config`` is the training YAML) and four of its own."""

    world_size: int = setting(1, help="GPUs in the run (data-parallel size = this / (TP x PP))", range=">= 1")
    attention: Literal["sdpa", "unfused", "te"] | None = setting(
        None, help="core attention to estimate for (null: what the config resolves to without TE)")
    gpu_memory_gib: float = setting(80.0, help="GPU memory to compare with", range="> 0")
    cpu: bool = setting(False, help="estimate a CPU run (fp32 by default, explicit masks)")


def cli_run(cfg: ModelInfoConfig, args, comm) -> None:
    """The ``model-info`` command."""
    print(describe(cfg, cfg.world_size, cfg.attention, cfg.gpu_memory_gib, on_gpu=not cfg.cpu))


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow model-info`` / ``tools/model_info.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["model-info"].main(argv)


if __name__ == "__main__":
    sys.exit(main())
