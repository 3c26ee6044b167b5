#!/usr/bin/env python
"""Same as ``python -m megatron_snow train-tokenizer``; see megatron_snow/tokenization/train.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.tokenization.train import main

if __name__ == "__main__":
    sys.exit(main())
