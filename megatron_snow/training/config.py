"""The training config tree: model, parallelism, data, optimizer and schedule,
checkpointing, logging. Loaded from YAML plus ``a.b=value`` overrides through
megatron_snow.config.load_config, so unknown keys and wrong types fail with
one line naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from megatron_snow.config import ConfigError, load_config


def _positive(key: str, value) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{key}: must be at least 1, got {value}")


@dataclass
class ModelConfig:
    """A Llama-2 style decoder (RMSNorm, SwiGLU, RoPE, tied embeddings)."""

    num_layers: int = 2
    hidden_size: int = 64
    ffn_hidden_size: int = 176
    num_attention_heads: int = 4
    # Key/value heads for grouped-query attention; None = one per attention head.
    num_query_groups: int | None = None
    # Needed unless data.tokenizer_path gives it.
    vocab_size: int | None = None
    # The embedding table is padded to a multiple of this x TP (Megatron's rule).
    make_vocab_size_divisible_by: int = 128
    rotary_base: int = 10000
    norm_epsilon: float = 1e-5
    init_method_std: float = 0.02
    tie_embeddings: bool = True
    # "auto": Transformer Engine when installed and CUDA is present, else local.
    transformer_impl: Literal["auto", "local", "transformer_engine"] = "auto"
    # Core attention. "auto": Transformer Engine's fused attention with the TE spec, else
    # "sdpa" (torch scaled_dot_product_attention: flash / memory-efficient kernels, no s x s
    # matrix kept); "unfused": megatron-core's DotProductAttention (materialises s x s).
    attention_impl: Literal["auto", "sdpa", "unfused", "te"] = "auto"
    # Fused elementwise kernels megatron-core compiles with torch.compile (SwiGLU, and the
    # vocab-parallel cross entropy): "auto" = on with CUDA and Triton, "none" = plain torch ops.
    fusions: Literal["auto", "none"] = "auto"
    RANGES = {"rotary_base": "> 0", "norm_epsilon": "> 0", "init_method_std": "> 0"}

    def __post_init__(self):
        for name in ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                     "vocab_size", "make_vocab_size_divisible_by"):
            _positive(f"model.{name}", getattr(self, name))
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"model.hidden_size ({self.hidden_size}) is not divisible by "
                f"model.num_attention_heads ({self.num_attention_heads})"
            )
        if self.num_query_groups is not None and self.num_attention_heads % self.num_query_groups:
            raise ConfigError(
                f"model.num_attention_heads ({self.num_attention_heads}) is not divisible by "
                f"model.num_query_groups ({self.num_query_groups})"
            )


@dataclass
class ParallelConfig:
    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    sequence_parallel: bool = False
    use_distributed_optimizer: bool = False
    # Overlap gradient all-reduce with backward (GPU runs; harmless on CPU).
    overlap_grad_reduce: bool = False
    # How long a collective waits for the other ranks before the run fails with one line (a host that
    # died or hangs, a network that went down). Megatron-LM's --distributed-timeout-minutes; its
    # default is 10, this one gives slow shared file systems room during checkpoint saves.
    distributed_timeout_minutes: float = 30.0

    def __post_init__(self):
        _positive("parallel.tensor_model_parallel_size", self.tensor_model_parallel_size)
        _positive("parallel.pipeline_model_parallel_size", self.pipeline_model_parallel_size)
        if not self.distributed_timeout_minutes > 0:
            raise ConfigError("parallel.distributed_timeout_minutes: must be above 0, got "
                              f"{self.distributed_timeout_minutes}")


@dataclass
class DataConfig:
    # [[weight, prefix], ...]: Megatron indexed datasets (PREFIX.bin / PREFIX.idx).
    blend: list[list[float | str]] = field(default_factory=list)
    # Instead of `blend`: a blend file (phase-2 selection's blend.json) naming prefixes with their
    # repetitions; training.train_iters=0 then derives the iterations from them (else it must match).
    blend_file: str | None = None
    # train,valid,test ratios over the blend's documents.
    split: str = "98,2,0"
    seq_length: int = 128
    # Where GPTDataset caches its document/sample/shuffle indices; None = beside the data.
    index_cache_dir: str | None = None
    # A SentencePiece .model or tokenizer.json; gives vocab_size, eod_id and pad_id.
    tokenizer_path: str | None = None
    eod_id: int | None = None
    pad_id: int | None = None
    reset_position_ids: bool = False
    reset_attention_mask: bool = False
    eod_mask_loss: bool = False
    RANGES = {"seq_length": ">= 1", "eod_id": ">= 0", "pad_id": ">= -1"}

    def prefixes(self) -> tuple[list[str], list[float]]:
        """The blend as (prefixes, weights), checked."""
        prefixes, weights = [], []
        for i, item in enumerate(self.blend):
            if len(item) != 2 or isinstance(item[0], str) or not isinstance(item[1], str):
                raise ConfigError(f"data.blend[{i}]: expected [weight, prefix], got {item!r}")
            weights.append(float(item[0]))
            prefixes.append(item[1])
        return prefixes, weights


@dataclass
class OptimizerConfig:
    """Adam and the learning-rate schedule (iteration based)."""

    lr: float = 3e-4
    min_lr: float = 3e-5
    # LR at the start of warm-up (0 for a phase-2 style re-warm-up).
    lr_warmup_init: float = 0.0
    lr_warmup_iters: int = 0
    lr_decay_style: Literal["cosine", "linear", "constant", "WSD"] = "cosine"
    # None = decay over the whole run (training.train_iters).
    lr_decay_iters: int | None = None
    # WSD: how many final iterations anneal, and their shape.
    lr_wsd_decay_iters: int | None = None
    lr_wsd_decay_style: Literal["linear", "cosine", "exponential", "minus_sqrt"] = "linear"
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    RANGES = {"lr": ">= 0", "min_lr": ">= 0", "lr_warmup_init": ">= 0", "lr_warmup_iters": ">= 0",
              "lr_decay_iters": ">= 1", "lr_wsd_decay_iters": ">= 1", "weight_decay": ">= 0",
              "adam_beta1": "[0, 1)", "adam_beta2": "[0, 1)", "adam_eps": "> 0", "clip_grad": ">= 0"}

    def __post_init__(self):
        # megatron's OptimizerParamScheduler asserts these (a bare AssertionError mid-startup)
        for name in ("min_lr", "lr_warmup_init"):
            if 0 <= self.lr < getattr(self, name):  # (a negative lr is reported by RANGES)
                raise ConfigError(f"optimizer.{name} ({getattr(self, name)}) must not exceed optimizer.lr ({self.lr})")


@dataclass
class TrainingConfig:
    micro_batch_size: int = 1
    global_batch_size: int = 8
    train_iters: int = 10
    seed: int = 1234
    # Torch threads per process when training on CPU, fixed so that the losses do not depend on the
    # machine's thread count (OMP_NUM_THREADS); 0 leaves the machine's (megatron_snow.determinism).
    cpu_threads: int = 1
    # "auto": bf16 on GPU, fp32 on CPU.
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    eval_interval: int = 0  # 0 = validate only at the end
    eval_iters: int = 1  # global batches per validation
    # Stop (after saving) once this iteration is reached; 0 = run to train_iters.
    exit_at_iter: int = 0
    # Stop (after saving) at the first iteration boundary once the process has run this
    # long (set it below the job's time limit); 0 = no limit. SIGTERM and SIGUSR1 do the same.
    exit_duration_mins: float = 0.0
    # Activation recomputation (megatron-core's TransformerConfig fields): granularity
    # "selective" recomputes recompute_modules (default core attention), "full" whole layers
    # chosen by recompute_method ("uniform": groups of recompute_num_layers; "block": the
    # first recompute_num_layers of each pipeline stage). None = keep all activations.
    recompute_granularity: Literal["selective", "full"] | None = None
    recompute_method: Literal["uniform", "block"] | None = None
    recompute_num_layers: int | None = None
    recompute_modules: list[str] | None = None
    # Non-finite guard: megatron's per-bucket NaN/Inf check of local gradients, and the
    # number of iterations in a row with a non-finite loss or gradient norm (each skipped,
    # no update) after which the run stops without saving.
    check_for_nan_in_grad: bool = True
    max_nonfinite_in_a_row: int = 5
    RANGES = {"seed": "[0, 4294967295]", "exit_duration_mins": ">= 0", "eval_iters": ">= 1", "cpu_threads": ">= 0"}

    def __post_init__(self):
        if self.recompute_granularity == "full" and (self.recompute_method is None or not self.recompute_num_layers):
            raise ConfigError("training.recompute_granularity=full needs training.recompute_method "
                              "(uniform or block) and training.recompute_num_layers >= 1")
        if self.recompute_granularity != "full" and (self.recompute_method or self.recompute_num_layers):
            raise ConfigError("training.recompute_method / recompute_num_layers apply only with "
                              "training.recompute_granularity=full")
        _positive("training.max_nonfinite_in_a_row", self.max_nonfinite_in_a_row)
        for name in ("micro_batch_size", "global_batch_size"):
            _positive(f"training.{name}", getattr(self, name))
        for name in ("train_iters", "eval_interval", "eval_iters", "exit_at_iter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training.{name}: must not be negative, got {getattr(self, name)}")


@dataclass
class CheckpointConfig:
    # This run's checkpoints; a restart resumes from its latest complete one.
    save: str | None = None
    save_interval: int = 0  # 0 = only at the end
    keep_last: int = 2
    # The previous phase's checkpoint dir: weights only (fresh optimizer, schedule and
    # iteration count), used when `save` holds no checkpoint yet.
    load_from: str | None = None
    # The distributed optimizer's state on disk: "dp_reshardable" (each rank's shard as is: the
    # fastest save and load; resumes at any DP size but the saved TP/PP) or "fully_reshardable"
    # (per parameter: resumes at any TP/PP/DP; a save gathers every buffer).
    optimizer_format: Literal["dp_reshardable", "fully_reshardable"] = "dp_reshardable"
    # A damaged or incomplete newest checkpoint (files checked against the checksums saved
    # with it): "fallback" says so and resumes from the newest intact one; "stop" stops.
    on_damaged: Literal["fallback", "stop"] = "fallback"
    RANGES = {"save_interval": ">= 0", "keep_last": ">= 0"}


@dataclass
class LoggingConfig:
    log_interval: int = 1
    tensorboard_dir: str | None = None
    # One JSON line per logged step/validation (also what tests read).
    metrics_file: str | None = None
    wandb_project: str | None = None
    wandb_run_name: str | None = None
    # Dense bf16 peak per GPU for MFU (H100 SXM: 989 TFLOP/s).
    peak_tflops: float = 989.0
    # torch.profiler over iterations [start, end) on global rank 0: the top kernels by device
    # time are logged and a Chrome trace is written to profile_dir (default: beside the metrics
    # file). Megatron-LM's --profile-step-start/--profile-step-end.
    profile_iters: list[int] | None = None
    profile_dir: str | None = None
    RANGES = {"log_interval": ">= 0", "peak_tflops": "> 0"}

    def __post_init__(self):
        p = self.profile_iters
        if p is not None and (len(p) != 2 or not all(isinstance(i, int) for i in p) or not 1 <= p[0] < p[1]):
            raise ConfigError(f"logging.profile_iters: [start, end) with 1 <= start < end, got {p}")


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def load_train_config(path: str | None, overrides=()) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron's rule: pad the table to a multiple of divisible_by x TP."""
    multiple = divisible_by * tp
    return ((vocab_size + multiple - 1) // multiple) * multiple
