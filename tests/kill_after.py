"""Test-only fault injection: run a step's command line, SIGKILL this process after it finished N units.

    python tests/kill_after.py N phase1 --config ...        (any step in megatron_snow.__main__.STEPS)

The runner itself has no such hook: this wraps its unit writer from the outside.
"""
from __future__ import annotations

import os
import signal
import sys

from megatron_snow import __main__ as cli
from megatron_snow.stages import runner


def main() -> int:
    limit, argv = int(sys.argv[1]), sys.argv[2:]
    written = 0
    write_unit = runner._write_unit

    def write_then_maybe_die(*args, **kwargs):
        nonlocal written
        write_unit(*args, **kwargs)
        written += 1
        if limit and written >= limit:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    runner._write_unit = write_then_maybe_die
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
