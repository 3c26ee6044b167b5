"""The ``train`` command: pretrain a GPT model with megatron-core (phases 1-3 of the recipe).

    python -m megatron_snow train --config examples/tiny/train_tiny.yaml training.train_iters=100
    torchrun --nproc-per-node 8 -m megatron_snow train --config examples/snowcoder_1.3b/phase1.yaml \\
        checkpoint.save=/ckpt/phase1 training.train_iters=1000
    torchrun --nproc-per-node 8 pretrain_gpt.py --config ...        # the same, Megatron-LM's entry point

On a machine without CUDA the same command trains on CPU over gloo.
Restarting the same command resumes from the newest intact checkpoint (checked against
the checksums saved with it). SIGTERM or SIGUSR1 (to any rank), or
training.exit_duration_mins, make every rank save at the next iteration boundary and exit 0.
Exit status: 0 done or stopped after saving, 2 bad configuration or input (one line), 1 failure.
"""
from __future__ import annotations

import os
import sys
import warnings


def _quiet_warnings() -> None:
    # megatron-core says this once per module on every CPU run; the model line says it once.
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex) (and Apex )?(are|is) not installed")
    # Deprecations inside torch / megatron-core internals: nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="full scope is deprecated")


def cli_run(cfg, args, comm) -> None:
    """Train with ``cfg`` (a TrainConfig). A lost peer (another rank, its host or the network gone) is one
    line, then this process leaves at once: the process group cannot be shut down without the other side."""
    _quiet_warnings()
    from megatron_snow.dist import describe_comm_failure, leave, rank_and_host
    from megatron_snow.training.trainer import run

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every host's log says which ranks it runs
        print(f"{args.prog}: {rank_and_host()} (local rank {os.environ.get('LOCAL_RANK', '0')}), "
              f"process group at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}",
              file=sys.stderr, flush=True)
    try:
        run(cfg)
    except Exception as e:
        lost = describe_comm_failure(e)
        if lost is None:
            raise
        print(f"error: {rank_and_host()}: {lost} (parallel.distributed_timeout_minutes sets the timeout)",
              file=sys.stderr, flush=True)
        leave(1)


def main(argv: list[str] | None = None, prog: str = "train") -> int:
    """``python -m megatron_snow train`` / ``pretrain_gpt.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["train"].main(argv, prog=prog)
