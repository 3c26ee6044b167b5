"""Pretrain a GPT model with megatron-core: the torchrun entry point.

    torchrun --nproc-per-node 8 pretrain_gpt.py --config examples/snowcoder_1.3b/phase1.yaml \\
        checkpoint.save=/ckpt/phase1 training.train_iters=1000

On a machine without CUDA the same command trains on CPU over gloo.
Restarting the same command resumes from the newest intact checkpoint (checked against
the checksums saved with it). SIGTERM or SIGUSR1 (to any rank), or
training.exit_duration_mins, make every rank save at the next iteration boundary and exit 0.
Exit status: 0 done or stopped after saving, 2 bad configuration or input (one line), 1 failure.
"""
from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="training YAML (see examples/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. training.train_iters=100")
    args = parser.parse_args(argv)

    import warnings

    # megatron-core says this once per module on every CPU run; the model line says it once.
    warnings.filterwarnings("ignore", message=".*(Transformer Engine|Apex) (and Apex )?(are|is) not installed")
    # Deprecations inside torch / megatron-core internals: nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="full scope is deprecated")

    from megatron_snow.config import ConfigError
    from megatron_snow.training.config import load_train_config
    from megatron_snow.training.trainer import run

    from megatron_snow.dist import describe_comm_failure, leave, rank_and_host

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every host's log says which ranks it runs
        print(f"pretrain_gpt: {rank_and_host()} (local rank {os.environ.get('LOCAL_RANK', '0')}), "
              f"process group at {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}",
              file=sys.stderr, flush=True)
    try:
        cfg = load_train_config(args.config, args.overrides)
        run(cfg)
    except ConfigError as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except Exception as e:
        lost = describe_comm_failure(e)
        if lost is None:
            raise
        # Another rank, its host or the network is gone: one line, then leave at once (the process
        # group cannot be shut down cleanly without the other side).
        print(f"error: {rank_and_host()}: {lost} (parallel.distributed_timeout_minutes sets the timeout)",
              file=sys.stderr, flush=True)
        leave(1)
    return 0


if __name__ == "__main__":  # dist_checkpointing's async writer starts workers with spawn
    sys.exit(main())
