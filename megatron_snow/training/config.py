"""The training config tree: model, parallelism, data, optimizer and schedule,
checkpointing, logging. Loaded from YAML plus ``a.b=value`` overrides through
megatron_snow.config.load_config, so unknown keys and wrong types fail with
one line naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from megatron_snow.config import Config, ConfigError, load_config, setting


def _at_least_1(cfg: Config, *names: str) -> None:
    """``None`` (where allowed) or >= 1; the message these keys have always had."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and value < 1:
            raise ConfigError(f"{cfg.key(name)}: must be at least 1, got {value}")


@dataclass
class ModelConfig(Config):
    """A Llama-2 style decoder (RMSNorm, SwiGLU, RoPE, tied embeddings)."""

    num_layers: int = setting(2, help="transformer layers (at least 1)")
    hidden_size: int = setting(64, help="model width (at least 1, a multiple of num_attention_heads)")
    ffn_hidden_size: int = setting(176, help="SwiGLU inner width (at least 1)")
    num_attention_heads: int = setting(4, help="attention heads (at least 1)")
    num_query_groups: int | None = setting(
        None, help="key/value heads for grouped-query attention; None = one per attention head")
    vocab_size: int | None = setting(None, help="needed unless data.tokenizer_path gives it")
    make_vocab_size_divisible_by: int = setting(
        128, help="the embedding table is padded to a multiple of this x TP (Megatron's rule)")
    rotary_base: int = setting(10000, help="RoPE base", range="> 0")
    norm_epsilon: float = setting(1e-5, help="RMSNorm epsilon", range="> 0")
    init_method_std: float = setting(0.02, help="std of the normal weight init", range="> 0")
    tie_embeddings: bool = setting(True, help="the output layer shares the embedding table")
    transformer_impl: Literal["auto", "local", "transformer_engine"] = setting(
        "auto", help='"auto": Transformer Engine when installed and CUDA is present, else local')
    attention_impl: Literal["auto", "sdpa", "unfused", "te"] = setting(
        "auto", help='core attention. "auto": Transformer Engine\'s fused attention with the TE spec, else "sdpa" '
                     "(torch scaled_dot_product_attention: flash / memory-efficient kernels, no s x s matrix kept); "
                     '"unfused": megatron-core\'s DotProductAttention (materialises s x s)')
    fusions: Literal["auto", "none"] = setting(
        "auto", help="fused elementwise kernels megatron-core compiles with torch.compile (SwiGLU, and the "
                     'vocab-parallel cross entropy): "auto" = on with CUDA and Triton, "none" = plain torch ops')

    def validate(self) -> None:
        _at_least_1(self, "num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
                    "vocab_size", "make_vocab_size_divisible_by")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"{self.key('hidden_size')} ({self.hidden_size}) is not divisible by "
                              f"{self.key('num_attention_heads')} ({self.num_attention_heads})")
        if self.num_query_groups is not None and self.num_attention_heads % self.num_query_groups:
            raise ConfigError(f"{self.key('num_attention_heads')} ({self.num_attention_heads}) is not divisible by "
                              f"{self.key('num_query_groups')} ({self.num_query_groups})")


@dataclass
class ParallelConfig(Config):
    tensor_model_parallel_size: int = setting(1, help="TP: ranks a layer's matrices are split over (at least 1)")
    pipeline_model_parallel_size: int = setting(1, help="PP: pipeline stages (at least 1)")
    sequence_parallel: bool = setting(False, help="split norms and dropout along the sequence over TP (needs TE)")
    use_distributed_optimizer: bool = setting(False, help="shard optimizer state over data-parallel ranks")
    overlap_grad_reduce: bool = setting(False, help="overlap gradient all-reduce with backward (GPU runs; harmless "
                                                    "on CPU)")
    distributed_timeout_minutes: float = setting(
        30.0, help="how long a collective waits for the other ranks before the run fails with one line (a host "
                   "that died or hangs, a network that went down). Megatron-LM's --distributed-timeout-minutes; its "
                   "default is 10, this one gives slow shared file systems room during checkpoint saves")

    def validate(self) -> None:
        _at_least_1(self, "tensor_model_parallel_size", "pipeline_model_parallel_size")
        if not self.distributed_timeout_minutes > 0:
            raise ConfigError(f"{self.key('distributed_timeout_minutes')}: must be above 0, got "
                              f"{self.distributed_timeout_minutes}")


@dataclass
class DataConfig(Config):
    blend: list[list[float | str]] = setting(
        help="[[weight, prefix], ...]: Megatron indexed datasets (PREFIX.bin / PREFIX.idx)", factory=list)
    blend_file: str | None = setting(
        None, help="instead of `blend`: a blend file (phase-2 selection's blend.json) naming prefixes with their "
                   "repetitions; training.train_iters=0 then derives the iterations from them (else it must match)")
    split: str = setting("98,2,0", help="train,valid,test ratios over the blend's documents")
    seq_length: int = setting(128, help="tokens per sample", range=">= 1")
    index_cache_dir: str | None = setting(
        None, help="where GPTDataset caches its document/sample/shuffle indices; None = beside the data")
    tokenizer_path: str | None = setting(
        None, help="a SentencePiece .model or tokenizer.json; gives vocab_size, eod_id and pad_id")
    eod_id: int | None = setting(None, help="end-of-document token id (else from the tokenizer)", range=">= 0")
    pad_id: int | None = setting(None, help="padding token id (else from the tokenizer)", range=">= -1")
    reset_position_ids: bool = setting(False, help="restart position ids after each end-of-document token")
    reset_attention_mask: bool = setting(False, help="no attention across end-of-document tokens")
    eod_mask_loss: bool = setting(False, help="no loss on end-of-document tokens")

    def validate(self) -> None:
        for i, item in enumerate(self.blend):
            if len(item) != 2 or isinstance(item[0], str) or not isinstance(item[1], str):
                raise ConfigError(f"{self.key(f'blend[{i}]')}: expected [weight, prefix], got {item!r}")
            if item[0] <= 0:
                raise ConfigError(f"{self.key('blend')}: weight {float(item[0])} must be positive")
        if self.blend and self.blend_file:
            raise ConfigError(f"{self.key('blend')} and {self.key('blend_file')} are both set: give one of them")
        try:
            ratios = [float(x) for x in self.split.split(",")]
            valid = len(ratios) == 3 and all(r >= 0 for r in ratios) and sum(ratios) > 0
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(f"{self.key('split')}: expected 'train,valid,test' ratios, got {self.split!r}")

    def prefixes(self) -> tuple[list[str], list[float]]:
        """The blend as (prefixes, weights)."""
        return [str(p) for _, p in self.blend], [float(w) for w, _ in self.blend]


@dataclass
class OptimizerConfig(Config):
    """Adam and the learning-rate schedule (iteration based)."""

    lr: float = setting(3e-4, help="peak learning rate", range=">= 0")
    min_lr: float = setting(3e-5, help="learning rate at the end of the decay", range=">= 0")
    lr_warmup_init: float = setting(
        0.0, help="LR at the start of warm-up (0 for a phase-2 style re-warm-up)", range=">= 0")
    lr_warmup_iters: int = setting(0, help="warm-up iterations", range=">= 0")
    lr_decay_style: Literal["cosine", "linear", "constant", "WSD"] = setting("cosine", help="the decay's shape")
    lr_decay_iters: int | None = setting(
        None, help="None = decay over the whole run (training.train_iters)", range=">= 1")
    lr_wsd_decay_iters: int | None = setting(
        None, help="WSD: how many final iterations anneal (required with lr_decay_style WSD)", range=">= 1")
    lr_wsd_decay_style: Literal["linear", "cosine", "exponential", "minus_sqrt"] = setting(
        "linear", help="WSD: the anneal's shape")
    weight_decay: float = setting(0.1, help="AdamW weight decay", range=">= 0")
    adam_beta1: float = setting(0.9, help="Adam beta1", range="[0, 1)")
    adam_beta2: float = setting(0.95, help="Adam beta2", range="[0, 1)")
    adam_eps: float = setting(1e-8, help="Adam epsilon", range="> 0")
    clip_grad: float = setting(1.0, help="gradient-norm clipping; 0 = none", range=">= 0")

    def validate(self) -> None:
        # megatron's OptimizerParamScheduler asserts these (a bare AssertionError mid-startup)
        for name in ("min_lr", "lr_warmup_init"):
            if self.lr < getattr(self, name):
                raise ConfigError(f"{self.key(name)} ({getattr(self, name)}) must not exceed "
                                  f"{self.key('lr')} ({self.lr})")
        if self.lr_decay_style == "WSD" and not self.lr_wsd_decay_iters:
            raise ConfigError(f"{self.key('lr_wsd_decay_iters')}: required with lr_decay_style WSD")


@dataclass
class TrainingConfig(Config):
    micro_batch_size: int = setting(1, help="samples per forward/backward on one rank (at least 1)")
    global_batch_size: int = setting(8, help="samples per optimizer step over all ranks (at least 1)")
    train_iters: int = setting(10, help="optimizer steps in the whole run (not negative)")
    seed: int = setting(1234, help="random seed", range="[0, 4294967295]")
    cpu_threads: int = setting(
        1, help="torch threads per process when training on CPU, fixed so that the losses do not depend on the "
                "machine's thread count (OMP_NUM_THREADS); 0 leaves the machine's (megatron_snow.determinism)",
        range=">= 0")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = setting("auto", help='"auto": bf16 on GPU, fp32 on CPU')
    eval_interval: int = setting(0, help="0 = validate only at the end (not negative)")
    eval_iters: int = setting(1, help="global batches per validation", range=">= 1")
    exit_at_iter: int = setting(
        0, help="stop (after saving) once this iteration is reached; 0 = run to train_iters (not negative)")
    exit_duration_mins: float = setting(
        0.0, help="stop (after saving) at the first iteration boundary once the process has run this long (set it "
                  "below the job's time limit); 0 = no limit. SIGTERM and SIGUSR1 do the same", range=">= 0")
    recompute_granularity: Literal["selective", "full"] | None = setting(
        None, help='activation recomputation (megatron-core\'s TransformerConfig fields): "selective" recomputes '
                   'recompute_modules (default core attention), "full" whole layers chosen by recompute_method. '
                   "None = keep all activations")
    recompute_method: Literal["uniform", "block"] | None = setting(
        None, help='with granularity full: "uniform" = groups of recompute_num_layers; "block" = the first '
                   "recompute_num_layers of each pipeline stage")
    recompute_num_layers: int | None = setting(None, help="with granularity full: layers per group / per stage")
    recompute_modules: list[str] | None = setting(None, help="with granularity selective: the modules recomputed")
    check_for_nan_in_grad: bool = setting(True, help="megatron's per-bucket NaN/Inf check of local gradients")
    max_nonfinite_in_a_row: int = setting(
        5, help="iterations in a row with a non-finite loss or gradient norm (each skipped, no update) after which "
                "the run stops without saving (at least 1)")

    def validate(self) -> None:
        if self.recompute_granularity == "full" and (self.recompute_method is None or not self.recompute_num_layers):
            raise ConfigError(f"{self.key('recompute_granularity')}=full needs {self.key('recompute_method')} "
                              f"(uniform or block) and {self.key('recompute_num_layers')} >= 1")
        if self.recompute_granularity != "full" and (self.recompute_method or self.recompute_num_layers):
            raise ConfigError(f"{self.key('recompute_method')} / recompute_num_layers apply only with "
                              f"{self.key('recompute_granularity')}=full")
        _at_least_1(self, "max_nonfinite_in_a_row", "micro_batch_size", "global_batch_size")
        for name in ("train_iters", "eval_interval", "exit_at_iter"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{self.key(name)}: must not be negative, got {getattr(self, name)}")


@dataclass
class CheckpointConfig(Config):
    save: str | None = setting(None, help="this run's checkpoints; a restart resumes from its latest complete one")
    save_interval: int = setting(0, help="0 = only at the end", range=">= 0")
    keep_last: int = setting(2, help="checkpoints kept (the oldest are deleted); 0 = all", range=">= 0")
    load_from: str | None = setting(
        None, help="the previous phase's checkpoint dir: weights only (fresh optimizer, schedule and iteration "
                   "count), used when `save` holds no checkpoint yet")
    optimizer_format: Literal["dp_reshardable", "fully_reshardable"] = setting(
        "dp_reshardable", help='the distributed optimizer\'s state on disk: "dp_reshardable" (each rank\'s shard '
                               "as is: the fastest save and load; resumes at any DP size but the saved TP/PP) or "
                               '"fully_reshardable" (per parameter: resumes at any TP/PP/DP; a save gathers every '
                               "buffer)")
    on_damaged: Literal["fallback", "stop"] = setting(
        "fallback", help="a damaged or incomplete newest checkpoint (files checked against the checksums saved with "
                         'it): "fallback" says so and resumes from the newest intact one; "stop" stops')


@dataclass
class LoggingConfig(Config):
    log_interval: int = setting(1, help="iterations between train-loss lines; 0 = none", range=">= 0")
    tensorboard_dir: str | None = setting(None, help="TensorBoard event files; None = none")
    metrics_file: str | None = setting(
        None, help="one JSON line per logged step/validation (also what tests read)")
    wandb_project: str | None = setting(None, help="Weights & Biases project; None = no wandb")
    wandb_run_name: str | None = setting(None, help="Weights & Biases run name")
    peak_tflops: float = setting(989.0, help="dense bf16 peak per GPU for MFU (H100 SXM: 989 TFLOP/s)", range="> 0")
    profile_iters: list[int] | None = setting(
        None, help="torch.profiler over iterations [start, end) on global rank 0: the top kernels by device time "
                   "are logged and a Chrome trace is written to profile_dir (default: beside the metrics file). "
                   "Megatron-LM's --profile-step-start/--profile-step-end")
    profile_dir: str | None = setting(None, help="where the profiler's Chrome trace goes")

    def validate(self) -> None:
        p = self.profile_iters
        if p is not None and (len(p) != 2 or not all(isinstance(i, int) for i in p) or not 1 <= p[0] < p[1]):
            raise ConfigError(f"{self.key('profile_iters')}: [start, end) with 1 <= start < end, got {p}")


@dataclass
class TrainConfig(Config):
    model: ModelConfig = setting(help="the model", factory=ModelConfig)
    parallel: ParallelConfig = setting(help="parallelism", factory=ParallelConfig)
    data: DataConfig = setting(help="the data", factory=DataConfig)
    optimizer: OptimizerConfig = setting(help="optimizer and schedule", factory=OptimizerConfig)
    training: TrainingConfig = setting(help="batch sizes, iterations, stopping", factory=TrainingConfig)
    checkpoint: CheckpointConfig = setting(help="checkpoints", factory=CheckpointConfig)
    logging: LoggingConfig = setting(help="logs and metrics", factory=LoggingConfig)

    def validate(self) -> None:
        m, tp, pp = self.model, self.parallel.tensor_model_parallel_size, self.parallel.pipeline_model_parallel_size
        if m.num_layers % pp:
            raise ConfigError(f"{self.key('model.num_layers')} ({m.num_layers}) is not divisible by pipeline size {pp}")
        groups = m.num_query_groups or m.num_attention_heads
        if m.num_attention_heads % tp or groups % tp or m.ffn_hidden_size % tp:
            raise ConfigError(f"{self.key('model')}: heads, query groups and ffn_hidden_size must be divisible by "
                              f"TP={tp}")


def load_train_config(path: str | None, overrides=()) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)


def padded_vocab_size(vocab_size: int, divisible_by: int, tp: int) -> int:
    """Megatron's rule: pad the table to a multiple of divisible_by x TP."""
    multiple = divisible_by * tp
    return ((vocab_size + multiple - 1) // multiple) * multiple
