"""Run by test_flops_memory.py in a fresh process: train a few steps of a small
model on CPU and print, as one JSON line, the peak resident memory the training
added (this process's own RSS high-water mark during training minus its RSS just
before the Trainer is built) beside megatron_snow.training.memory's estimate.

    MALLOC_MMAP_THRESHOLD_=65536 python memory_probe.py KEY=VALUE ...

(A fixed mmap threshold makes glibc return freed large blocks to the system,
so the RSS peak follows what is live, as the GPU allocator's peak would.)

Why not ``getrusage(RUSAGE_SELF).ru_maxrss``: Linux keeps it across execve and
folds in the high-water mark of the memory the process had before exec. Python
starts subprocesses with vfork, so before exec that is the *parent's* memory:
launched from a long pytest run, ru_maxrss is pytest's own peak RSS whatever
this probe does (inside the full suite both probes read the same 576 MB). The
peak here is /proc/self/status VmHWM, which belongs to the exec'd process only,
reset just before training by writing 5 to /proc/self/clear_refs, so it counts
neither pytest nor this process's own import-time peak.
"""
from __future__ import annotations

import gc
import json
import sys


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def main(argv: list[str]) -> None:
    from megatron_snow.training.config import load_train_config
    from megatron_snow.training.memory import estimate_memory
    from megatron_snow.training.model import kernels
    from megatron_snow.training.trainer import Trainer, init_distributed, preflight

    cfg = load_train_config(None, argv)
    plan = preflight(cfg, 1)
    init_distributed(cfg)
    gc.collect()
    reset = reset_peak()
    before = _status_kib("VmRSS") * 1024
    hwm_before = _status_kib("VmHWM") * 1024
    Trainer(cfg, plan).train()
    peak = _status_kib("VmHWM") * 1024
    est = estimate_memory(cfg, plan.facts.vocab_size, kernels(cfg.model).attention, dp=1, on_gpu=False,
                          num_microbatches=plan.num_microbatches)
    print(json.dumps({"measured": peak - before, "estimate": est.total, "weights": est.weights,
                      "grad_buffer": est.grad_buffer, "optimizer": est.optimizer, "activations": est.activations,
                      "logits": est.logits, "rss_before": before, "peak_before": hwm_before, "peak": peak,
                      "peak_reset": reset}))


if __name__ == "__main__":
    main(sys.argv[1:])
