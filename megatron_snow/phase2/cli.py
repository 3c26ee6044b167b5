"""Shared argparse plumbing of the phase-2 CLIs: ``--config FILE.yaml`` plus ``key=value`` overrides."""
from __future__ import annotations

import argparse
import sys

from megatron_snow.config import ConfigError, load_config


def parse_config(cls, description: str, example: str, argv=None):
    """(config, args) from ``--config`` and overrides; a bad config exits with its one-line error."""
    p = argparse.ArgumentParser(description=description, epilog=f"example:\n  {example}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML file with the settings (keys as in the overrides)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help=f"settings of {cls.__name__} (dotted keys for nested ones)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(cls, args.config, args.overrides)
    except ConfigError as e:
        sys.exit(f"error: {e}")
    return cfg, args


def run_or_exit(fn):
    """Turn the expected errors (bad input, missing files) into one-line messages;
    under MPI the whole job ends (the other ranks would otherwise wait for ever)."""
    try:
        return fn()
    except (ValueError, FileNotFoundError) as e:
        from megatron_snow.dist import get_comm

        get_comm().fail(f"error: {e}", code=1)
