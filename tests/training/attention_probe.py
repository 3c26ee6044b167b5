"""Run by test_attention.py: SDPAttention against megatron-core's unfused
DotProductAttention inside real GPTModels, at the tensor-parallel size given.

    python attention_probe.py OUT_DIR                               # TP=1, one process
    torchrun --nproc-per-node 2 attention_probe.py OUT_DIR --tp 2   # TP=2, gloo

Each rank writes OUT_DIR/rank{N}.json: per case (GQA or not, explicit mask or
is_causal), the largest |difference| of logits, and of every parameter's
gradient relative to its largest entry, between the two attention implementations (fp32, same weights, same
tokens), and the logit difference a non-causal attention makes (to show the
tolerance can fail).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch


def _init(tp: int) -> None:
    from megatron.core import parallel_state, tensor_parallel

    from megatron_snow.training import cpu_compat

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
    cpu_compat.install()
    torch.distributed.init_process_group("gloo")
    parallel_state.initialize_model_parallel(tensor_model_parallel_size=tp)
    torch.manual_seed(1)
    tensor_parallel.model_parallel_cuda_manual_seed(1)


def _build(groups: int, attention: str):
    from megatron_snow.training.config import ModelConfig, ParallelConfig
    from megatron_snow.training.model import build_model

    tp = torch.distributed.get_world_size()
    cfg = ModelConfig(num_layers=2, hidden_size=64, ffn_hidden_size=128, num_attention_heads=4,
                      num_query_groups=groups, vocab_size=256, make_vocab_size_divisible_by=64,
                      init_method_std=0.1, attention_impl=attention, transformer_impl="local")
    return build_model(cfg, ParallelConfig(tensor_model_parallel_size=tp), 256, 32, torch.float32)


def _run(model, tokens, mask, weight):
    model.zero_grad(set_to_none=True)
    pos = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
    logits = model(tokens, pos, mask)  # [b, s, vocab / TP]
    (logits * weight).sum().backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return logits.detach(), grads


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--tp", type=int, default=1)
    a = ap.parse_args()
    _init(a.tp)
    from megatron.core import parallel_state as ps

    rank, tp_rank = torch.distributed.get_rank(), ps.get_tensor_model_parallel_rank()
    b, s = 2, 32
    g = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, 256, (b, s), generator=g)
    weight = torch.randn(b, s, 256, generator=g)[..., tp_rank * 256 // a.tp:(tp_rank + 1) * 256 // a.tp]
    causal = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)[None, None].expand(b, 1, s, s)
    nothing_masked = torch.zeros_like(causal)
    report = {"rank": rank, "tp": a.tp, "tp_rank": tp_rank, "cases": []}
    for groups in (4, 2):  # no GQA, GQA (2 heads per key/value group)
        unfused = _build(groups, "unfused")
        sdpa = _build(groups, "sdpa")
        # Same weights: the unfused model's state dict loads into the SDPA model as it is.
        sdpa.load_state_dict(unfused.state_dict(), strict=True)
        assert type(sdpa.decoder.layers[0].self_attention.core_attention).__name__ == "SDPAttention"
        assert type(unfused.decoder.layers[0].self_attention.core_attention).__name__ == "DotProductAttention"
        for mask_name, mask in (("explicit_mask", causal), ("is_causal", None)):
            ref_logits, ref_grads = _run(unfused, tokens, mask, weight)
            got_logits, got_grads = _run(sdpa, tokens, mask, weight)
            # Per parameter: largest |difference| relative to that gradient's largest entry.
            grad_diff = max(float((ref_grads[n] - got_grads[n]).abs().max() / ref_grads[n].abs().max().clamp(min=1e-12))
                            for n in ref_grads)
            grad_scale = min(float(ref_grads[n].abs().max()) for n in ref_grads)
            open_logits, _ = _run(sdpa, tokens, nothing_masked, weight)
            report["cases"].append({
                "groups": groups, "mask": mask_name, "params": len(ref_grads),
                "logits_max_abs": float(ref_logits.abs().max()), "grad_min_of_max_abs": grad_scale,
                "logits_diff": float((ref_logits - got_logits).abs().max()), "grad_rel_diff": grad_diff,
                "non_causal_logits_diff": float((open_logits - got_logits).abs().max()),
            })
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"rank{rank}.json").write_text(json.dumps(report))
    ps.destroy_model_parallel()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
