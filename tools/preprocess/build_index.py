#!/usr/bin/env python
"""Same as ``python -m megatron_snow build-index``; see megatron_snow/tokenization/build_index.py
(``--help`` lists every setting)."""
import sys

from megatron_snow.tokenization.build_index import main

if __name__ == "__main__":
    sys.exit(main())
