#!/usr/bin/env python
"""Same as ``python -m megatron_snow train-annotator``; see megatron_snow/phase2/annotator.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.phase2.annotator import main

if __name__ == "__main__":
    sys.exit(main())
