#!/usr/bin/env python
"""Select the phase-2 dataset: top-scored documents per language up to a token budget, phase-1 language mix.

Writes the records dataset, blend.json (with the repetition factor), selection_report.json and funnel.json.
See megatron_snow/phase2/selection.py.
"""
# This file shares its name with the stdlib module `select`, which subprocess, asyncio
# and torch import. Two guards, both before any other import:
# - run as a script: drop this directory from sys.path, so `import select` finds the stdlib;
# - imported as `select` by a sibling script of this directory (whose sys.path[0] is here):
#   load the stdlib module and put it in sys.modules in place of this file, so the
#   importer gets the real one.
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
if __name__ == "__main__":
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here]
else:
    import importlib.machinery
    import importlib.util

    _spec = importlib.machinery.PathFinder.find_spec(
        __name__, [p for p in sys.path if os.path.abspath(p or os.getcwd()) != _here])
    _real = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_real)
    sys.modules[__name__] = _real
    globals().update({k: v for k, v in vars(_real).items() if not k.startswith("__")})


def main(argv=None):
    from megatron_snow.phase2.cli import parse_config, run_or_exit
    from megatron_snow.phase2.selection import SelectConfig, select

    cfg, args = parse_config(
        SelectConfig, __doc__,
        "python tools/preprocess/select.py corpus=data/phase1 tokenizer=tok/tokenizer.model out=data/phase2 "
        "budget_tokens=12500000000 repetition=4",
        argv)
    run_or_exit(lambda: select(cfg, show_progress=not args.quiet))


if __name__ == "__main__":
    main()
