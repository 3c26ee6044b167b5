#!/usr/bin/env python
"""Same as ``python -m megatron_snow alignment``; see megatron_snow/phase2/alignment.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.phase2.alignment import main

if __name__ == "__main__":
    sys.exit(main())
