"""Same inputs, settings and seed give the same bytes, whatever the machine's thread count.

Float sums split over threads are added in an order that depends on how many threads
there are (and some CPU kernels, the embedding gradient among them, are not even
repeatable run to run with several threads). Steps that run torch therefore fix the
number of intra-op threads from their settings (default 1) instead of taking the
machine's, ask torch for deterministic algorithms, and record both beside their output.
Same bytes holds on the same kind of CPU (another instruction set can round differently).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch


@contextlib.contextmanager
def fixed_threads(threads: int) -> Iterator[dict]:
    """Run the body on ``threads`` torch threads with deterministic algorithms; yields what to record."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before, det_before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what cuBLAS needs to be deterministic
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield {"torch_threads": threads, "deterministic_algorithms": True}
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(det_before)
