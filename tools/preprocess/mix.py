#!/usr/bin/env python
"""Phase-3 mix: synthetic + phase-2 indexed datasets -> per-language datasets, blend.json, token report.

Same as ``python -m megatron_snow mix``; see megatron_snow/synthesis/mixing.py.
"""
import sys

from megatron_snow.synthesis.mixing import main

if __name__ == "__main__":
    sys.exit(main())
