"""The one command-line front end of every data step: ``--config FILE``, ``key=value``, ``--force``.

``--help`` lists every setting of the step's config dataclass with its default and
meaning (the comment on the field's line in the source), generated here once.
Exit codes: 0 done, 2 bad input (a config error, stale output, missing input),
1 failure. Under MPI every rank exits with the same code and rank 0 prints the
one line.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from megatron_snow.config import ConfigError, load_config, settings_help
from megatron_snow.dist import Comm, get_comm
from megatron_snow.records import RecordError
from megatron_snow.stages.runner import StepError

def build_parser(prog: str, doc: str, config_cls: type) -> argparse.ArgumentParser:
    epilog = "settings (key=value on the command line, or in the --config YAML):\n" + "\n".join(
        settings_help(config_cls))
    epilog += "\n\nexit codes: 0 done, 1 failure, 2 bad input (config, stale output, missing input)"
    ap = argparse.ArgumentParser(prog=prog, description=doc, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help=f"YAML file for {config_cls.__name__}")
    ap.add_argument("--force", action="store_true",
                    help="replace existing output made with other settings or inputs (default: refuse)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the settings below")
    return ap


def run_cli(argv: list[str] | None, *, prog: str, doc: str, config_cls: type,
            run: Callable[[Any, argparse.Namespace, Comm], Any],
            add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
            extra_overrides: Callable[[argparse.Namespace], list[str]] | None = None) -> int:
    """Parse, load the config (range-checked), call ``run(cfg, args, comm)``; map errors to one line and
    an exit code. ``add_arguments`` adds step-specific flags; ``extra_overrides`` turns them into overrides."""
    ap = build_parser(prog, doc, config_cls)
    if add_arguments:
        add_arguments(ap)
    args = ap.parse_args(argv)  # bad flags: argparse prints usage and exits 2
    comm = get_comm()

    def say(msg: str) -> None:
        if comm.is_root:
            print(f"{prog}: error: {msg}".replace("\n", " "), file=sys.stderr, flush=True)

    overrides = list(args.overrides) + (extra_overrides(args) if extra_overrides else [])
    try:
        cfg = load_config(config_cls, args.config, overrides)
    except ConfigError as e:  # deterministic: the same on every rank
        say(str(e))
        return 2
    if args.quiet and hasattr(cfg, "progress"):
        cfg.progress = False
    try:
        run(cfg, args, comm)
    except StepError as e:  # agreed: raised on every rank with the same line
        say(str(e))
        return e.exit_code
    except (ConfigError, FileNotFoundError, RecordError) as e:
        if comm.size == 1:
            say(str(e))
            return 2
        comm.fail(f"{prog}: error: {e}", code=2)  # maybe one rank only: end the job
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        if comm.size == 1:
            say(f"{type(e).__name__}: {e}")
            return 1
        comm.fail(f"{prog}: error: {type(e).__name__}: {e}", code=1)
    return 0
