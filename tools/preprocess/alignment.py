#!/usr/bin/env python
"""Alignment of an annotator with downstream tasks (the paper's Fig. 2): ROC-AUC per benchmark.

Positives: benchmark canonical solutions; negatives: held-out random corpus documents.
See megatron_snow/phase2/alignment.py.
"""
from megatron_snow.phase2.alignment import AlignmentConfig, alignment
from megatron_snow.phase2.cli import parse_config, run_or_exit


def main(argv=None):
    cfg, _ = parse_config(
        AlignmentConfig, __doc__,
        "python tools/preprocess/alignment.py model=models/annotator corpus=data/phase1 "
        "out=alignment.json",
        argv)
    run_or_exit(lambda: alignment(cfg))


if __name__ == "__main__":
    main()
