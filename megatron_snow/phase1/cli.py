"""Phase 1 data: ingest -> filter -> exact dedup -> near dedup -> decontaminate -> PII -> group.

Single process:   python -m megatron_snow phase1 --config examples/tiny/data_phase1.yaml
MPI (N ranks):    mpiexec -n 4 python -m megatron_snow phase1 --config ... output_dir=/data/p1
Slurm:            srun python tools/preprocess/phase1.py --config ...
Re-running the same command resumes: finished units and stages are skipped. Output made with
other settings or inputs is refused in one line; --force replaces it. ``--stages a,b`` is ``stages=[a,b]``.
"""
from __future__ import annotations

from megatron_snow.phase1.pipeline import run_phase1


def cli_run(cfg, args, comm) -> None:
    """The ``phase1`` command (megatron_snow/commands.py)."""
    run_phase1(cfg, comm, force=args.force)


def main(argv: list[str] | None = None) -> int:
    from megatron_snow.commands import COMMANDS

    return COMMANDS["phase1"].main(argv)
