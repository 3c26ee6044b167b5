#!/usr/bin/env python
"""Same as ``python -m megatron_snow annotate``; see megatron_snow/phase2/scoring.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.phase2.scoring import main

if __name__ == "__main__":
    sys.exit(main())
