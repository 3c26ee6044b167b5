"""Evaluate a Hugging Face checkpoint (or a server, or given samples) on the paper's benchmarks.

    python tools/evaluate.py --model HF_DIR --benchmarks humaneval+,mbpp+,evoeval,bigcodebench --out DIR

Same as ``python -m megatron_snow evaluate``; ``--help`` lists every option
(megatron_snow/evaluate/cli.py).
"""
import sys

from megatron_snow.evaluate.cli import main

if __name__ == "__main__":
    sys.exit(main())
