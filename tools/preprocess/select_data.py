#!/usr/bin/env python
"""Same as ``python -m megatron_snow select``; see megatron_snow/phase2/selection.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.phase2.selection import main

if __name__ == "__main__":
    sys.exit(main())
