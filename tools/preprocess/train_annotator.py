#!/usr/bin/env python
"""Train the phase-2 quality annotator (encoder + linear head) and save it in transformers format.

See megatron_snow/phase2/annotator.py (training) and training_data.py (positives, negatives).
"""
from megatron_snow.phase2.annotator import TrainAnnotatorConfig, train_annotator
from megatron_snow.phase2.cli import parse_config, run_or_exit


def main(argv=None):
    cfg, _ = parse_config(
        TrainAnnotatorConfig, __doc__,
        "python tools/preprocess/train_annotator.py data.corpus=data/phase1 out=models/annotator mode=frozen",
        argv)
    result = run_or_exit(lambda: train_annotator(cfg))
    print(f"saved {cfg.out}: best epoch {result.best_epoch}; test {result.test.line()}")


if __name__ == "__main__":
    main()
