"""Run by test_flops_memory.py in a fresh process: train a few steps of a small
model on CPU and print, as one JSON line, the peak resident memory the training
added (process peak RSS minus the RSS just before the Trainer is built) beside
megatron_snow.training.memory's estimate for the same config.

    MALLOC_MMAP_THRESHOLD_=65536 python memory_probe.py KEY=VALUE ...

(A fixed mmap threshold makes glibc return freed large blocks to the system,
so the RSS peak follows what is live, as the GPU allocator's peak would.)
"""
from __future__ import annotations

import gc
import json
import resource
import sys


def main(argv: list[str]) -> None:
    import psutil

    from megatron_snow.training.config import load_train_config
    from megatron_snow.training.memory import estimate_memory
    from megatron_snow.training.model import kernels
    from megatron_snow.training.trainer import Trainer, init_distributed, preflight

    cfg = load_train_config(None, argv)
    plan = preflight(cfg, 1)
    init_distributed(cfg)
    gc.collect()
    before = psutil.Process().memory_info().rss
    Trainer(cfg, plan).train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    est = estimate_memory(cfg, plan.facts.vocab_size, kernels(cfg.model).attention, dp=1, on_gpu=False,
                          num_microbatches=plan.num_microbatches)
    print(json.dumps({"measured": peak - before, "estimate": est.total, "weights": est.weights,
                      "grad_buffer": est.grad_buffer, "optimizer": est.optimizer, "activations": est.activations,
                      "logits": est.logits}))


if __name__ == "__main__":
    main(sys.argv[1:])
