#!/usr/bin/env python
"""Phase 1 data: ingest -> filter -> exact dedup -> near dedup -> decontaminate -> PII -> group.

Single process:   python tools/preprocess/phase1.py --config examples/tiny/data_phase1.yaml
MPI (N ranks):    mpiexec -n 4 python tools/preprocess/phase1.py --config ... output_dir=/data/p1
Slurm:            srun python tools/preprocess/phase1.py --config ...
Same as:          python -m megatron_snow phase1 --config ...
Re-running the same command resumes: finished units and stages are skipped. Output made with other
settings or inputs is refused (--force replaces it).
"""
import sys

from megatron_snow.phase1.cli import main

if __name__ == "__main__":
    sys.exit(main())
