"""Phase 1 data: ingest -> filter -> exact dedup -> near dedup -> decontaminate -> PII -> group.

Single process:   python -m megatron_snow phase1 --config examples/tiny/data_phase1.yaml
MPI (N ranks):    mpiexec -n 4 python -m megatron_snow phase1 --config ... output_dir=/data/p1
Slurm:            srun python tools/preprocess/phase1.py --config ...
Re-running the same command resumes: finished units and stages are skipped. Output made with
other settings or inputs is refused in one line; --force replaces it.
"""
from __future__ import annotations

from megatron_snow.phase1.pipeline import STAGES, Phase1Config, run_phase1
from megatron_snow.stages.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(
        argv, prog="phase1", doc=__doc__, config_cls=Phase1Config,
        run=lambda cfg, args, comm: run_phase1(cfg, comm, force=args.force),
        add_arguments=lambda ap: ap.add_argument(
            "--stages", help=f"comma-separated subset of {','.join(STAGES)} (default: all enabled)"),
        extra_overrides=lambda args: [f"stages=[{args.stages}]"] if args.stages else [])
