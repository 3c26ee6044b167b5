"""Per-GPU memory estimate of a training config, from its shape, before anything is built.

The paper's 1.3B at sequence 8192 ran out of memory on a 140 GiB GPU with
megatron-core's unfused attention; this says so before the model is built
(the trainer warns), and tools/model_info.py prints it for any parallel
layout, micro-batch and recomputation setting. The terms, per rank of the
most loaded pipeline stage (the first, which also holds the embedding and,
under 1F1B, the most micro-batches in flight):

- weights: this rank's parameters in the training dtype;
- gradient buffer: megatron DDP accumulates in fp32 (``grad_reduce_in_fp32``);
- optimizer: Adam's two fp32 moments, plus fp32 master weights when training
  in bf16/fp16; divided over data-parallel ranks with the distributed optimizer;
- activations: the tensors autograd keeps per layer (counted below), times the
  layers on the stage and the micro-batches in flight; full recomputation
  keeps only each layer's input plus one layer's worth while it is recomputed;
  selective recomputation drops the core attention's internals;
- logits: the output layer's [s, b, vocab/TP] logits and the fp32 copies the
  vocab-parallel cross entropy makes.

Not counted: the CUDA context, allocator fragmentation and communication
buffers (leave ~10% headroom). A test checks the estimate against the measured
peak of a real CPU run.
"""
from __future__ import annotations

from dataclasses import dataclass

from megatron_snow.training.config import TrainConfig, padded_vocab_size

GiB = 1024 ** 3


@dataclass
class MemoryEstimate:
    weights: float
    grad_buffer: float
    optimizer: float
    activations: float  # with the configured recomputation
    activations_no_recompute: float
    activations_full_recompute: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.grad_buffer + self.optimizer + self.activations + self.logits

    def describe(self) -> str:
        g = lambda b: f"{b / GiB:.2f} GiB" if b >= GiB / 4 else f"{b / 2**20:.1f} MiB"  # noqa: E731
        return (f"weights {g(self.weights)}, gradient buffer {g(self.grad_buffer)}, optimizer {g(self.optimizer)}, "
                f"activations {g(self.activations)} (no recompute {g(self.activations_no_recompute)}, full "
                f"{g(self.activations_full_recompute)}), logits {g(self.logits)}; total {g(self.total)}")


def _dtype_bytes(precision: str, on_gpu: bool) -> int:
    if precision == "auto":
        return 2 if on_gpu else 4
    return 4 if precision == "fp32" else 2


def layer_activation_bytes(cfg: TrainConfig, attention: str, dtype_bytes: int, selective: bool = False,
                           explicit_mask: bool = False, swiglu_fusion: bool = False) -> float:
    """Bytes autograd keeps for one transformer layer and one micro-batch on one TP rank.

    The tensors were listed with torch.autograd.graph.saved_tensors_hooks on megatron-core
    0.16.1's local spec (tests/training/test_flops_memory.py checks the sum against a
    measured peak). ``explicit_mask``: a [b, 1, s, s] mask is passed (CPU runs, or
    data.reset_attention_mask), which SDPA turns into an additive mask per layer.
    ``swiglu_fusion``: megatron's fused SwiGLU keeps only its input, not silu(gate) and the
    intermediate the plain ops keep."""
    m, t = cfg.model, cfg.training
    tp = cfg.parallel.tensor_model_parallel_size
    h, f = m.hidden_size, m.ffn_hidden_size
    heads = m.num_attention_heads
    groups = m.num_query_groups or heads
    hkv = h // heads * groups
    s, b = cfg.data.seq_length, t.micro_batch_size
    tokens = s * b
    # Replicated over TP ranks (no sequence parallelism on the local spec): the two RMSNorms'
    # inputs and outputs (the QKV and FC1 GEMM inputs) and the residual stream.
    replicated = 5 * h
    # Split over TP: the QKV GEMM output (v stays a view of it), q and k after RoPE, the
    # attention output and its [s, b, h] copy (output projection input), SwiGLU's FC1 output
    # (gate and up), silu(gate), the product (FC2 input) and one more f-sized intermediate.
    split = (h + 2 * hkv) + (h + hkv) + 2 * h + 2 * f + (1 if swiglu_fusion else 3) * f
    elements = tokens * (replicated + split / tp)
    core = 0.0
    if not selective:
        if attention == "unfused":
            # Softmax probabilities kept for backward (fp32 softmax), plus the low-precision
            # copy kept by the probs x V GEMM when training in bf16/fp16.
            core = b * heads / tp * s * s * (4 + (dtype_bytes if dtype_bytes < 4 else 0))
        else:
            # Flash / memory-efficient kernels keep the output (counted above) and one fp32
            # log-sum-exp per query and head.
            core = b * heads / tp * s * 4
            if explicit_mask:
                core += b * s * s * dtype_bytes
    return elements * dtype_bytes + core


def estimate_memory(cfg: TrainConfig, vocab_size: int, attention: str, dp: int = 1, on_gpu: bool = True,
                    num_microbatches: int | None = None, swiglu_fusion: bool | None = None) -> MemoryEstimate:
    """The estimate for one rank of the first pipeline stage; see the module docstring.

    ``attention``: "sdpa", "te" or "unfused" (model.choose_kernels). ``dp``: data-parallel size.
    ``swiglu_fusion``: as model.Kernels; None = what a GPU machine picks (model.fusions auto).
    """
    if swiglu_fusion is None:
        swiglu_fusion = on_gpu and cfg.model.fusions == "auto"
    m, par, t = cfg.model, cfg.parallel, cfg.training
    tp, pp = par.tensor_model_parallel_size, par.pipeline_model_parallel_size
    h, f, L = m.hidden_size, m.ffn_hidden_size, m.num_layers
    heads = m.num_attention_heads
    groups = m.num_query_groups or heads
    hkv = h // heads * groups
    v = padded_vocab_size(vocab_size, m.make_vocab_size_divisible_by, tp)
    nbytes = _dtype_bytes(t.precision, on_gpu)
    layers = L // pp

    per_layer_split = h * h + 2 * h * hkv + h * h + 3 * h * f  # QKV, out projection, SwiGLU
    params = layers * (per_layer_split / tp + 2 * h) + v * h / tp  # embedding on the first stage
    if pp == 1:
        params += h + (0 if m.tie_embeddings else v * h / tp)  # final norm, untied output layer
    weights = params * nbytes
    grad_buffer = params * 4
    opt_per_param = 8 + (4 if nbytes < 4 else 0)  # Adam m, v (+ fp32 master weights)
    optimizer = params * opt_per_param / (dp if par.use_distributed_optimizer else 1)

    s, b = cfg.data.seq_length, t.micro_batch_size
    if num_microbatches is None:
        num_microbatches = max(1, t.global_batch_size // (b * dp))
    in_flight = min(pp, num_microbatches) if pp > 1 else 1
    explicit_mask = not on_gpu or cfg.data.reset_attention_mask  # as training/data.py builds batches
    full_layer = layer_activation_bytes(cfg, attention, nbytes, explicit_mask=explicit_mask,
                                        swiglu_fusion=swiglu_fusion)
    layer_input = s * b * h * nbytes
    embeddings_out = s * b * h * nbytes
    no_recompute = (layers * full_layer + embeddings_out) * in_flight
    full = (layers * layer_input + embeddings_out) * in_flight + full_layer
    if t.recompute_granularity == "full":
        if t.recompute_method == "block":
            k = min(t.recompute_num_layers or layers, layers)
            activations = (k * layer_input + (layers - k) * full_layer + embeddings_out) * in_flight + full_layer
        else:
            activations = full
    elif t.recompute_granularity == "selective" and "core_attn" in (t.recompute_modules or ["core_attn"]):
        selective = layer_activation_bytes(cfg, attention, nbytes, selective=True, explicit_mask=explicit_mask,
                                           swiglu_fusion=swiglu_fusion)
        core = full_layer - selective
        activations = (layers * selective + embeddings_out) * in_flight + core
    else:
        activations = no_recompute
    # Logits [s, b, v/tp]: the fp32 softmax the vocab-parallel cross entropy keeps (its
    # gradient is computed in place) and the logits' gradient in the training dtype.
    logits = s * b * v / tp * (4 + nbytes) if pp == 1 else 0.0
    return MemoryEstimate(weights, grad_buffer, optimizer, activations, no_recompute, full, logits)


def device_memory_bytes() -> tuple[float, str]:
    """(capacity, name) of what a rank trains on: this GPU, else this machine's RAM."""
    import torch

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return float(props.total_memory), props.name
    import psutil

    return float(psutil.virtual_memory().total), "CPU RAM"


def memory_warning(estimate: MemoryEstimate, capacity: float, device: str) -> str | None:
    """A one-line warning when the estimate exceeds the device, else None."""
    if estimate.total <= capacity:
        return None
    return (f"warning: estimated memory per rank {estimate.total / GiB:.1f} GiB exceeds {device} "
            f"({capacity / GiB:.1f} GiB): {estimate.describe()}. Try training.recompute_granularity=full "
            f"(recompute_method=uniform, recompute_num_layers=1), a smaller training.micro_batch_size, "
            f"model.attention_impl=sdpa, or more tensor/pipeline parallelism")
