#!/usr/bin/env python
"""Phase-3 synthetic code files from seed snippets through an OpenAI-compatible server.

Same as ``python -m megatron_snow synthesize``; see megatron_snow/synthesis/generate.py.
"""
import sys

from megatron_snow.synthesis.generate import main

if __name__ == "__main__":
    sys.exit(main())
