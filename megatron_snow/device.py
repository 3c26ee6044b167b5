"""Where a model runs and in which precision: the one resolver for every step that runs a model.

``auto`` means the GPU of this process's local rank in bf16 when CUDA is present,
else the CPU in fp32 (bf16 matmuls on CPU are slow and fp16 is unsupported). A plain
``cuda`` is the local rank's GPU too, so N processes on a node (torchrun, MPI) use N GPUs.
"""
from __future__ import annotations

import os

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def local_rank() -> int:
    """This process's index on its node, from whichever launcher started it (torchrun, MPI, Slurm)."""
    for var in ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: this local rank's GPU when CUDA is present, else the CPU; otherwise as given."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is None:  # plain "cuda": this local rank's GPU, not GPU 0 for all
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return dev


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on GPU, fp32 elsewhere; otherwise the named dtype."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, {', '.join(DTYPES)}, got {dtype!r}") from None
