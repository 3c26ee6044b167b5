#!/usr/bin/env python
"""Score every document of a corpus with the annotator (top/middle/bottom windows averaged).

Resumable: re-run the same command after a failure and finished shards are skipped.
Several GPUs / nodes: launch with `mpiexec -n N` (or srun, or torchrun); shards are shared round-robin.
See megatron_snow/phase2/scoring.py.
"""
from megatron_snow.phase2.cli import parse_config, run_or_exit
from megatron_snow.phase2.scoring import AnnotateConfig, annotate_corpus


def main(argv=None):
    cfg, args = parse_config(
        AnnotateConfig, __doc__,
        "mpiexec -n 8 python tools/preprocess/annotate.py corpus=data/phase1 model=models/annotator batch_size=256",
        argv)
    run_or_exit(lambda: annotate_corpus(cfg, show_progress=not args.quiet))


if __name__ == "__main__":
    main()
