"""``run_cli``: a stage-runner step that is not in the registry (a test's or a user's own) on the same
command line as the registered ones: ``--config FILE``, ``key=value``, ``--force``, ``--quiet``, and the
same exit codes. The registered steps are records in ``megatron_snow/commands.py``.
"""
from __future__ import annotations

from typing import Any, Callable


def run_cli(argv: list[str] | None, *, prog: str, doc: str, config_cls: type,
            run: Callable[[Any, Any, Any], Any]) -> int:
    """Parse, build ``config_cls`` (it checks itself), call ``run(cfg, args, comm)``; errors as in commands.py."""
    from megatron_snow.commands import Command

    return Command(prog, doc, config_cls, run, runner=True, doc=doc).main(argv)
