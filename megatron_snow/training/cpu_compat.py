"""The one place that changes megatron-core 0.16.1's own code: the layer that lets it run without CUDA,
and the two patches checkpointing needs. Each patch names the upstream function it replaces or wraps;
re-check each against that function when megatron-core is upgraded.

**Without CUDA.** NVIDIA ships no CPU path in megatron-core, yet development machines and CI have
no GPU, and the trainer must still be exercised for real there (same model,
parallel layers, pipeline schedules, optimizer and checkpointing, over gloo).
megatron-core assumes CUDA in four ways:

1. the RNG tracker reads and writes CUDA generator state;
2. devices are named literally (``device="cuda"``, ``torch.cuda.current_device()``,
   ``.cuda()``);
3. tensor type strings are compared with ``torch.cuda.FloatTensor`` & co.;
4. ``torch.cuda.synchronize()`` / streams / ``empty_cache()`` are called.

``install()`` answers all four, once per process, before the model is built:
the CUDA RNG functions are mapped onto the CPU generator, the device helpers
become harmless, and a ``TorchFunctionMode`` rewrites CUDA devices to CPU and
reports CUDA type strings. It does nothing when CUDA is available, so GPU runs
use megatron-core untouched. Call sites that an API can fix are fixed at the
call site instead (``use_cpu_initialization=True``, explicit attention masks,
``pipeline_dtype``), which keeps this layer small.

**Distributed optimizer over torch Adam** (CPU runs, or GPU nodes without Apex/Transformer
Engine): ``prepare_optimizer_load`` makes its checkpoint load keep Adam's step; it does nothing
when Apex/TE provide fused Adam.

**Kill points in the checkpoint file writer** (tests/test_kills.py only):
``kill_points_in_checkpoint_writer``, installed only while ``megatron_snow.faults`` is active.
"""
from __future__ import annotations

import contextlib
import functools
import threading
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from megatron_snow import faults

_installed = False
_lock = threading.Lock()


def _is_cuda_device(device) -> bool:
    if isinstance(device, torch.device):
        return device.type == "cuda"
    if isinstance(device, str):
        return device.startswith("cuda")
    # A bare int means "cuda:N" to torch.
    return isinstance(device, int) and not isinstance(device, bool)


def _cpu_if_cuda(device):
    return torch.device("cpu") if _is_cuda_device(device) else device


_CUDA_TYPE = {
    torch.float32: "torch.cuda.FloatTensor",
    torch.float16: "torch.cuda.HalfTensor",
    torch.bfloat16: "torch.cuda.BFloat16Tensor",
    torch.float64: "torch.cuda.DoubleTensor",
    torch.int64: "torch.cuda.LongTensor",
    torch.int32: "torch.cuda.IntTensor",
    torch.uint8: "torch.cuda.ByteTensor",
    torch.bool: "torch.cuda.BoolTensor",
}


class CudaOnCpuMode(TorchFunctionMode):
    """Rewrites CUDA device requests to CPU and reports CUDA type strings."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.type and len(args) == 1 and "dtype" not in kwargs:
            # megatron's optimizers assert 'torch.cuda.FloatTensor' for params/grads.
            return _CUDA_TYPE.get(args[0].dtype, func(*args, **kwargs))
        if func is torch.Tensor.type:
            target = args[1] if len(args) > 1 else kwargs.get("dtype")
            if isinstance(target, str) and target.startswith("torch.cuda."):
                target = "torch." + target[len("torch.cuda."):]
                return func(args[0], target)
        if "device" in kwargs:
            kwargs["device"] = _cpu_if_cuda(kwargs["device"])
        if func is torch.Tensor.to and len(args) > 1 and (_is_cuda_device(args[1])):
            args = (args[0], torch.device("cpu"), *args[2:])
        return func(*args, **kwargs)


def _cpu_get_rng_state(device="cuda", clone=False, graph_safe=False):
    return torch.get_rng_state()


def _cpu_set_rng_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


def install() -> bool:
    """Activate the CPU layer in this process; returns whether it is active.

    A no-op (False) when CUDA is available. Call it from the thread that runs
    training: torch function modes are per thread (megatron's checkpoint writer
    threads only move bytes and need none of this).
    """
    global _installed
    if torch.cuda.is_available():
        return False
    with _lock:
        if _installed:
            return True
        from megatron.core.tensor_parallel import random as tp_random

        # (1) RNG: the tracker keeps one CPU generator state per name. Seeding the
        # "CUDA" generator seeds the CPU one, so tracker states differ per TP rank
        # exactly as they would on GPU. Replaces megatron-core 0.16.1's
        # megatron.core.tensor_parallel.random._get_cuda_rng_state and _set_cuda_rng_state.
        tp_random._get_cuda_rng_state = _cpu_get_rng_state
        tp_random._set_cuda_rng_state = _cpu_set_rng_state
        torch.cuda.get_rng_state = lambda device="cuda": torch.get_rng_state()
        torch.cuda.set_rng_state = lambda new_state, device="cuda": torch.set_rng_state(new_state)
        # (torch.manual_seed itself calls torch.cuda.manual_seed_all: keep that a no-op.)
        torch.cuda.manual_seed = lambda seed: torch.default_generator.manual_seed(int(seed))
        torch.cuda.manual_seed_all = lambda seed: None

        # (2) + (4) device helpers that would raise without a CUDA driver.
        torch.cuda.current_device = lambda: 0
        torch.cuda.synchronize = lambda device=None: None
        torch.cuda.empty_cache = lambda: None
        torch.cuda.default_stream = lambda device=None: _NullStream()
        torch.cuda.current_stream = lambda device=None: _NullStream()
        torch.cuda.stream = lambda stream=None: contextlib.nullcontext()

        # (2) + (3) through a process-wide function mode (entered, never exited).
        CudaOnCpuMode().__enter__()
        _installed = True
        return True


def is_active() -> bool:
    return _installed


class _NullStream:
    """Stands in for a CUDA stream: everything already runs in order on CPU."""

    def wait_stream(self, other) -> None:
        return None

    def synchronize(self) -> None:
        return None


# --- megatron-core 0.16.1: the distributed optimizer over torch Adam (no Apex/TE) ---
# Without Apex or Transformer Engine (CPU runs, or GPU nodes without TE) the
# DistributedOptimizer keeps torch Adam's per-parameter "step", and two of its
# load paths trip over it: state_dict() asserts a common step that a fresh
# optimizer lacks, and the param-state loaders copy every state key, "step"
# included, from tensors that hold no saved step (fully_reshardable has none,
# dp_reshardable a non-persistent stale one; the step comes back through the
# param groups instead, as one tensor shared by all parameters, which torch
# Adam then increments once per parameter and step).


def prepare_optimizer_load(optimizer) -> None:
    """Call before loading a checkpoint into ``optimizer``: works around the two load paths above;
    nothing to do when Apex/TE provide fused Adam (megatron-core's HAVE_APEX_OR_TE)."""
    from megatron.core.optimizer import distrib_optimizer

    if distrib_optimizer.HAVE_APEX_OR_TE:
        return
    _prime_empty_optimizer_state(optimizer)
    _keep_step_when_loading_param_state()


def _prime_empty_optimizer_state(optimizer) -> None:
    """Create a fresh distributed optimizer's Adam state without changing weights
    (one step on zero gradients at lr 0 and weight decay 0); the load overwrites it.
    Calls megatron-core 0.16.1's private DistributedOptimizer._init_optimizer_states_with_dummy_values."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if not isinstance(opt, DistributedOptimizer) or len(opt.optimizer.state) > 0:
            continue
        saved = [(g["lr"], g["weight_decay"]) for g in opt.optimizer.param_groups]
        for g in opt.optimizer.param_groups:
            g["lr"], g["weight_decay"] = 0.0, 0.0
        opt._init_optimizer_states_with_dummy_values()
        for g, (lr, wd) in zip(opt.optimizer.param_groups, saved):
            g["lr"], g["weight_decay"] = lr, wd


def _keep_step_when_loading_param_state() -> None:
    """Give each parameter its own Adam "step" (the value restored from the checkpoint's
    param groups) when the param-state loader sets its state.

    Wraps megatron-core 0.16.1's private
    megatron.core.optimizer.distrib_optimizer.DistributedOptimizer._set_main_param_and_optimizer_states
    (process-wide, once)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    if getattr(DistributedOptimizer, "_snow_keeps_step", False):
        return
    original = DistributedOptimizer._set_main_param_and_optimizer_states

    def set_states(self, model_param, tensors):
        if not self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            group_index, group_order = self.model_param_group_index_map[model_param]
            main_param = self.optimizer.param_groups[group_index]["params"][group_order]
            state = self.optimizer.state[main_param]
            if "step" in state:
                # load_state_dict gave every parameter the SAME step tensor, which
                # torch Adam would then increment once per parameter: unshare it, and keep
                # that value (restored from the checkpoint's param groups). The checkpoint's
                # per-parameter tensors hold no step (fully_reshardable), or a non-persistent
                # one that is the loading optimizer's own stale value (dp_reshardable).
                state["step"] = state["step"].clone()
                tensors = {**tensors, "step": state["step"]}
        return original(self, model_param, tensors)

    DistributedOptimizer._set_main_param_and_optimizer_states = set_states
    DistributedOptimizer._snow_keeps_step = True


# --- megatron-core 0.16.1: kill points inside the torch_dist file writer (kill tests only) ---


def kill_points_in_checkpoint_writer() -> None:
    """A ``faults`` point after each item megatron's torch_dist writer puts into a checkpoint file
    (the item flushed, the file not yet whole), so a run can be killed with its files half written.
    The writer runs in forked processes; ``faults.kill`` ends the training process from there.

    Wraps megatron.core.dist_checkpointing.strategies.filesystem_async._write_item (torch's
    torch.distributed.checkpoint.filesystem._write_item as megatron-core 0.16.1 imports it; called by
    FileSystemWriterAsync.write_preloaded_data), process-wide, once."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    original = filesystem_async._write_item
    if getattr(original, "_snow_kill_point", False):
        return

    @functools.wraps(original)  # megatron inspects its signature
    def write_item(*args, **kwargs):
        result = original(*args, **kwargs)
        stream = next((a for a in args if hasattr(a, "flush") and hasattr(a, "name")), None)
        if stream is not None:
            stream.flush()
            name = Path(stream.name)
            faults.point(f"checkpoint.file_half:{name.parent.name}/{name.name}")
        return result

    write_item._snow_kill_point = True
    filesystem_async._write_item = write_item
