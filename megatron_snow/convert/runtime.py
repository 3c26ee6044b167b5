"""The one-process world that megatron-core's checkpoint reader and writer need."""
from __future__ import annotations

import contextlib
import socket
import warnings


def quiet_megatron_warnings() -> None:
    # megatron-core says this once per module on every CPU run; nothing a user can act on.
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex) (and Apex )?(are|is) not installed")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="full scope is deprecated")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def single_process_group(model_parallel: bool = False):
    """A gloo world of one (unless a process group already exists), with megatron's parallel
    state at TP=PP=1 when ``model_parallel``; torn down on exit if it was made here."""
    import torch
    from megatron.core import parallel_state

    from megatron_snow.training import cpu_compat

    made = not torch.distributed.is_initialized()
    if made:
        cpu_compat.install()
        torch.distributed.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    made_mp = model_parallel and not parallel_state.model_parallel_is_initialized()
    if made_mp:
        from megatron.core import tensor_parallel

        parallel_state.initialize_model_parallel(1, 1)
        tensor_parallel.model_parallel_cuda_manual_seed(1234)  # the RNG tracker that model building reads
    try:
        yield
    finally:
        if made_mp:
            parallel_state.destroy_model_parallel()
        if made:
            torch.distributed.destroy_process_group()


