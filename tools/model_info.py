"""Print a training config's parameter count, FLOPs per token (Megatron-LM's
formula) and per-GPU memory estimate, without training; see
megatron_snow/training/model_info.py (also `python -m megatron_snow model-info`).

    python tools/model_info.py --config examples/snowcoder_1.3b/phase1.yaml --world-size 8
"""
import sys

from megatron_snow.training.model_info import main

if __name__ == "__main__":
    sys.exit(main())
