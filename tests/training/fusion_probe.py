"""Run by test_fusions.py: the GPU path's compiled fusions (megatron-core's SwiGLU and
fused vocab-parallel cross entropy, both torch.compile) against plain torch ops, inside
real GPTModels on CPU, at the tensor-parallel size given.

    python fusion_probe.py OUT_DIR                               # TP=1, one process
    torchrun --nproc-per-node 2 fusion_probe.py OUT_DIR --tp 2   # TP=2, gloo

Each rank writes OUT_DIR/rank{N}.json: per fusion (SwiGLU, cross entropy, both), the
per-token loss difference and every parameter's gradient difference (relative to its
largest entry) against the plain model (fp32, same weights, same tokens), and the loss
difference a changed label makes (to show the tolerance can fail).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from attention_probe import _init  # the same one-process / torchrun world (this folder is on sys.path)


def _build(swiglu: bool, cross_entropy: bool):
    from megatron.core import tensor_parallel

    from megatron_snow.training.config import ModelConfig, ParallelConfig
    from megatron_snow.training.model import Kernels, build_model

    torch.manual_seed(1)
    tensor_parallel.model_parallel_cuda_manual_seed(1)
    tp = torch.distributed.get_world_size()
    cfg = ModelConfig(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                      vocab_size=256, make_vocab_size_divisible_by=64, init_method_std=0.1,
                      attention_impl="sdpa", transformer_impl="local")
    kern = Kernels("local", "sdpa", False, False, False, swiglu_fusion=swiglu, cross_entropy_fusion=cross_entropy)
    return build_model(cfg, ParallelConfig(tensor_model_parallel_size=tp), 256, 32, torch.float32, kern=kern)


def _run(model, tokens, labels):
    model.zero_grad(set_to_none=True)
    pos = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    loss = model(tokens, pos, None, labels=labels)  # [b, s] per-token loss
    loss.sum().backward()
    return loss.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tp", type=int, default=1)
    args = ap.parse_args()
    _init(args.tp)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 256, (2, 32), generator=g)
    labels = torch.roll(tokens, -1, dims=1)
    plain = _build(False, False)
    loss_p, grads_p = _run(plain, tokens, labels)
    out = {"rank": torch.distributed.get_rank(), "tp": args.tp}
    for name, flags in (("swiglu", (True, False)), ("cross_entropy", (False, True)), ("both", (True, True))):
        fused = _build(*flags)
        loss_f, grads_f = _run(fused, tokens, labels)
        out[name] = {"loss_diff": float((loss_p - loss_f).abs().max()), "grad_diff": max(
            float((grads_p[n] - grads_f[n]).abs().max() / grads_p[n].abs().max().clamp(min=1e-12)) for n in grads_p)}
    out["fused_flags"] = [fused.config.bias_activation_fusion, fused.config.cross_entropy_loss_fusion]
    other = labels.clone()
    other[:, 5] = (other[:, 5] + 1) % 256
    loss_o, _ = _run(plain, tokens, other)
    out["changed_label_diff"] = float((loss_p - loss_o).abs().max())
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"rank{out['rank']}.json").write_text(json.dumps(out))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
