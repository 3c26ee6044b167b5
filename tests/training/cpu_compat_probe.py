"""Run by test_cpu_compat.py in a fresh process (the layer is process-wide).

    python cpu_compat_probe.py active    # install on this CUDA-less machine, probe it
    python cpu_compat_probe.py cuda      # pretend CUDA is present: install must do nothing

Prints one JSON object of observations; the test asserts on them.
"""
from __future__ import annotations

import json
import os
import sys

import torch


def probe_cuda_present() -> dict:
    torch.cuda.is_available = lambda: True  # what a GPU node reports
    original_current_device = torch.cuda.current_device
    from megatron_snow.training import cpu_compat

    active = cpu_compat.install()
    return {
        "installed": active,
        "is_active": cpu_compat.is_active(),
        "current_device_untouched": torch.cuda.current_device is original_current_device,
        "function_modes": torch._C._len_torch_function_stack(),
    }


def probe_active() -> dict:
    from megatron_snow.training import cpu_compat

    out: dict = {"installed": cpu_compat.install(), "installed_again": cpu_compat.install()}
    out["zeros_device"] = str(torch.zeros(2, device="cuda").device)
    out["zeros_device_int"] = str(torch.empty(2, device=0).device)
    t = torch.ones(2)
    out["cuda_is_identity"] = t.cuda() is t
    out["to_cuda_device"] = str(t.to("cuda").device)
    out["to_cuda_dtype"] = str(t.to("cuda:0", torch.bfloat16).dtype)
    out["type_fp32"] = t.type()
    out["type_bf16"] = t.bfloat16().type()
    out["type_convert"] = str(t.type("torch.cuda.HalfTensor").dtype)
    out["current_device"] = torch.cuda.current_device()
    torch.cuda.synchronize()

    # CUDA RNG calls drive the CPU generator.
    torch.cuda.manual_seed(5)
    a = torch.rand(4)
    out["cuda_seed_drives_cpu"] = torch.equal(a, torch.rand(4, generator=torch.Generator().manual_seed(5)))
    state = torch.cuda.get_rng_state()
    b = torch.rand(4)
    torch.cuda.set_rng_state(state)
    out["cuda_rng_state_roundtrip"] = torch.equal(b, torch.rand(4))

    # megatron's tracker: a separate stream per name, the default stream untouched.
    from megatron.core import tensor_parallel

    tensor_parallel.model_parallel_cuda_manual_seed(123, tp_rank=0, ep_rank=0, etp_rank=0)
    with tensor_parallel.get_cuda_rng_tracker().fork():
        inside = torch.rand(3)
    outside = torch.rand(3)
    out["tracker_stream"] = torch.equal(inside, torch.rand(3, generator=torch.Generator().manual_seed(123 + 2718)))
    out["default_stream"] = torch.equal(outside, torch.rand(3, generator=torch.Generator().manual_seed(123)))

    # A real megatron-core GPTModel builds and runs; its size matches flops.model_size.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[2] if len(sys.argv) > 2 else "29613")
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    from megatron.core import parallel_state

    parallel_state.initialize_model_parallel(1, 1)
    from megatron_snow.training.config import ModelConfig, ParallelConfig
    from megatron_snow.training.flops import model_size
    from megatron_snow.training.model import build_model

    sizes = []
    for groups in (None, 2):
        cfg = ModelConfig(num_layers=2, hidden_size=64, ffn_hidden_size=176, num_attention_heads=4,
                          num_query_groups=groups, vocab_size=300)
        model = build_model(cfg, ParallelConfig(), 300, 32, torch.float32)
        counted = sum(p.numel() for p in model.parameters())
        sizes.append([counted, model_size(cfg, 300, 32).params])
    out["param_counts"] = sizes
    names = [n for n, _ in model.named_parameters()]
    out["no_output_layer_weight"] = not any(n.startswith("output_layer") for n in names)  # tied
    tokens = torch.randint(0, 300, (2, 32))
    pos = torch.arange(32).expand(2, -1)
    mask = torch.ones(1, 1, 32, 32, dtype=torch.bool).triu(1)
    loss = model(tokens, pos, mask, labels=tokens).mean()
    loss.backward()
    out["loss_finite"] = bool(torch.isfinite(loss))
    out["grads"] = all(p.grad is not None or getattr(p, "main_grad", None) is not None for p in model.parameters())
    torch.distributed.destroy_process_group()
    return out


if __name__ == "__main__":
    result = probe_cuda_present() if sys.argv[1] == "cuda" else probe_active()
    print("PROBE " + json.dumps(result))
