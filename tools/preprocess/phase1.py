#!/usr/bin/env python
"""Phase 1 data: ingest -> filter -> exact dedup -> near dedup -> decontaminate -> PII -> group.

Single process:   python tools/preprocess/phase1.py --config examples/tiny/data_phase1.yaml
MPI (N ranks):    mpiexec -n 4 python tools/preprocess/phase1.py --config ... output_dir=/data/p1
Slurm:            srun python tools/preprocess/phase1.py --config ...
Re-running the same command resumes: finished shards and stages are skipped.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from megatron_snow.config import ConfigError, load_config  # noqa: E402
from megatron_snow.phase1.pipeline import STAGES, Phase1Config, run_phase1  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML file for Phase1Config (see examples/*/data_phase1.yaml)")
    ap.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: all enabled)")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. output_dir=/tmp/p1 near_dedup.threshold=0.8")
    args = ap.parse_args(argv)
    overrides = list(args.overrides)
    if args.stages:
        overrides.append(f"stages=[{args.stages}]")
    try:
        cfg = load_config(Phase1Config, args.config, overrides)
        run_phase1(cfg)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        from megatron_snow.dist import get_comm

        get_comm().fail(f"phase1: error: {e}")  # under MPI: ends every rank
    return 0


if __name__ == "__main__":
    sys.exit(main())
