#!/usr/bin/env python
"""Same as ``python -m megatron_snow make-tiny-encoder``; see megatron_snow/phase2/tiny_encoder.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.phase2.tiny_encoder import main

if __name__ == "__main__":
    sys.exit(main())
