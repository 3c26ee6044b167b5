"""Pretrain a GPT model with megatron-core: Megatron-LM's entry point, the same as ``python -m megatron_snow train``.

    torchrun --nproc-per-node 8 pretrain_gpt.py --config examples/snowcoder_1.3b/phase1.yaml \\
        checkpoint.save=/ckpt/phase1 training.train_iters=1000

See megatron_snow/training/train_cli.py (``--help`` lists every setting). Exit status: 0 done or stopped
after saving, 2 bad configuration or input (one line), 1 failure.
"""
from __future__ import annotations

import sys

from megatron_snow.training.train_cli import main as _train


def main(argv: list[str] | None = None) -> int:
    return _train(argv, prog="pretrain_gpt")


if __name__ == "__main__":  # dist_checkpointing's async writer starts workers with spawn
    sys.exit(main())
