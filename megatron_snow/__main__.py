"""``python -m megatron_snow STEP [--config FILE] [key=value ...]``: every step, training included.

The steps are the records in ``megatron_snow/commands.py`` (listed in the recipe's order by ``--help``).
"""
from __future__ import annotations

import sys

from megatron_snow.commands import run_command as main

if __name__ == "__main__":
    sys.exit(main())
