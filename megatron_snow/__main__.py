"""One command line for every step: ``python -m megatron_snow STEP [--config FILE] [key=value ...]``.

Each step is a library function ``main(argv) -> int`` (exit code: 0 done, 1 failure,
2 bad input); the scripts under ``tools/`` are thin wrappers over the same
functions. Steps are listed in the recipe's order.
"""
from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help). Add a step with one line here.
STEPS: dict[str, tuple[str, str]] = {
    "fetch-benchmarks": ("megatron_snow.benchmarks_fetch:main", "download the full benchmark sets (online)"),
    "report": ("megatron_snow.report:main", "report.md with plots for a run directory"),
}


def _usage() -> str:
    width = max(len(n) for n in STEPS)
    lines = ["usage: python -m megatron_snow STEP [--help] [--config FILE] [key=value ...]", "", "steps:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in STEPS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in STEPS:
        print(f"megatron_snow: unknown step {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = STEPS[name]
    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
