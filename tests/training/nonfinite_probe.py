"""Run by test_nonfinite.py in place of pretrain_gpt.py: the same entry point,
with a NaN injected from test code. A forward hook on the model's output layer
(registered by wrapping build_model) turns the logits into NaN on the chosen
training iterations and rank, so the loss and every gradient of that rank's
micro-batches are NaN.

    python nonfinite_probe.py --nan-iters 5 --nan-rank 0 -- KEY=VALUE ...
    torchrun --nproc-per-node 2 nonfinite_probe.py --nan-iters 7- --nan-rank 0 -- KEY=VALUE ...
"""
from __future__ import annotations

import argparse
import os
import sys

import torch


def _iters(spec: str):
    if spec.endswith("-"):
        first = int(spec[:-1])
        return lambda it: it >= first
    chosen = {int(x) for x in spec.split(",")}
    return lambda it: it in chosen


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nan-iters", required=True, help="'5', '5,6' or '7-' (7 and later), 1-based")
    ap.add_argument("--nan-rank", type=int, default=0)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    poisoned = _iters(a.nan_iters)

    from megatron_snow.training import model as model_mod

    real_build = model_mod.build_model
    num_micro = {}

    def build_with_hook(cfg, par, vocab, seq, dtype, training=None, kern=None):
        model = real_build(cfg, par, vocab, seq, dtype, training=training, kern=kern)
        calls = {"train": 0}
        dp = torch.distributed.get_world_size() // (par.tensor_model_parallel_size * par.pipeline_model_parallel_size)
        num_micro["n"] = training.global_batch_size // (training.micro_batch_size * dp)

        def hook(module, inputs, output):
            if not module.training:  # validation
                return output
            iteration = calls["train"] // num_micro["n"] + 1
            calls["train"] += 1
            if poisoned(iteration) and int(os.environ.get("RANK", "0")) == a.nan_rank:
                logits, bias = output
                return logits * float("nan"), bias
            return output

        model.output_layer.register_forward_hook(hook)
        return model

    model_mod.build_model = build_with_hook
    import pretrain_gpt

    return pretrain_gpt.main(a.overrides)


if __name__ == "__main__":
    sys.exit(main())
