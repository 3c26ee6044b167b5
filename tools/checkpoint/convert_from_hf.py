#!/usr/bin/env python
"""Same as ``python -m megatron_snow convert-from-hf``; see megatron_snow/convert/from_hf.py (``--help``)."""
import sys

from megatron_snow.convert.from_hf import main

if __name__ == "__main__":  # dist_checkpointing's writer starts workers with spawn
    sys.exit(main())
