"""The one place that lets megatron-core 0.16.1 run on a machine without CUDA.

NVIDIA ships no CPU path in megatron-core, yet development machines and CI have
no GPU, and the trainer must still be exercised for real there (same model,
parallel layers, pipeline schedules, optimizer and checkpointing, over gloo).
megatron-core assumes CUDA in four ways (see docs/megatron-on-cpu.md):

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
"""
from __future__ import annotations

import contextlib
import threading

import torch
from torch.overrides import TorchFunctionMode

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
        # exactly as they would on GPU.
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
