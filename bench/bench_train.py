"""Training speed of the project's trainer, per attention implementation, beside
the loop a user would write instead, all in one run on one device.

    python bench/bench_train.py                                      # CPU: a small config
    python bench/bench_train.py --config examples/snowcoder_1.3b/phase1.yaml \\
        training.global_batch_size=8 --steps 5                       # GPU: the paper's 1.3B at seq 8192

For each attention implementation (sdpa, unfused, and te when Transformer Engine
is installed) it runs N steps of the real trainer (megatron_snow.training.trainer:
megatron-core GPTModel, DDP, megatron optimizer, the config's micro-batch,
recomputation and precision) on random tokens, then the reference: a
`transformers` LlamaForCausalLM of the same shape (SDPA attention, tied
embeddings, same sequence length and micro-batch, gradient accumulation to the
same global batch, AdamW fused where CUDA has it; bf16 weights on GPU, fp32 on
CPU). Each variant runs in its own process so that peak memory is its own
(torch.cuda.max_memory_allocated on GPU, the peak RSS it added on CPU).
Prints tokens/s, TFLOP/s per device and MFU by Megatron-LM's formula
(megatron_snow.training.flops; MFU needs --peak-tflops on CPU), peak memory,
and each variant's speed as a ratio to the reference. Steps after --warmup
count; the median step time is used.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMALL_CPU = ["model.num_layers=4", "model.hidden_size=256", "model.ffn_hidden_size=704",
             "model.num_attention_heads=4", "model.num_query_groups=4", "model.vocab_size=4096",
             "data.seq_length=512", "training.micro_batch_size=2", "training.global_batch_size=4"]


def _load(args):
    from megatron_snow.training.config import load_train_config

    cfg = load_train_config(args.config, (SMALL_CPU if args.config is None else []) + args.overrides)
    if cfg.model.vocab_size is None:
        raise SystemExit("error: model.vocab_size must be set for the benchmark (it uses random tokens)")
    return cfg


def _random_data(cfg, steps: int, work: Path) -> str:
    """An indexed dataset of random tokens, enough for the run's steps."""
    import numpy as np

    from megatron_snow.indexed import write_indexed_dataset

    s = cfg.data.seq_length
    tokens = (steps + 2) * cfg.training.global_batch_size * (s + 1) * 1.1
    n_docs = int(tokens // s) + 4
    rng = np.random.default_rng(0)
    vocab = cfg.model.vocab_size
    prefix = work / "random"
    write_indexed_dataset(prefix, (rng.integers(0, vocab - 1, s).tolist() + [vocab - 1] for _ in range(n_docs)), vocab)
    return str(prefix)


def _peak_bytes(rss_before: int) -> float:
    import torch

    if torch.cuda.is_available():
        return float(torch.cuda.max_memory_allocated())
    import resource

    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before)


def run_trainer(args, variant: str) -> dict:
    """N steps of the project's trainer: ``variant`` is an attention implementation, optionally
    followed by ``+key=value`` overrides (e.g. ``sdpa+training.recompute_granularity=full``)."""
    import psutil
    import torch

    from megatron_snow.training import trainer
    from megatron_snow.training.memory import estimate_memory
    from megatron_snow.training.model import kernels

    attention, *extra = variant.split("+")
    args.overrides = list(args.overrides) + extra
    cfg = _load(args)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.model.attention_impl = attention
        cfg.model.transformer_impl = "transformer_engine" if attention == "te" else "local"
        cfg.data.blend = [[1.0, _random_data(cfg, args.steps + args.warmup, Path(tmp))]]
        cfg.data.tokenizer_path = None
        cfg.data.eod_id = cfg.model.vocab_size - 1
        cfg.data.split = "100,0,0"
        cfg.data.index_cache_dir = str(Path(tmp) / "cache")
        cfg.training.train_iters = args.steps + args.warmup
        cfg.training.exit_at_iter = 0
        cfg.training.eval_interval = 0
        cfg.checkpoint.save = None
        cfg.checkpoint.load_from = None
        cfg.logging.metrics_file = str(Path(tmp) / "metrics.jsonl")
        cfg.logging.tensorboard_dir = None
        cfg.logging.wandb_project = None
        cfg.logging.log_interval = 1
        if args.profile_dir:
            cfg.logging.profile_iters = [args.warmup + 1, args.warmup + 2]
            cfg.logging.profile_dir = args.profile_dir
        dtype = torch.bfloat16 if torch.cuda.is_available() and cfg.training.precision in ("auto", "bf16") else \
            torch.float32
        kern = kernels(cfg.model, dtype)
        est = estimate_memory(cfg, cfg.model.vocab_size, kern.attention, dp=1, on_gpu=torch.cuda.is_available(),
                              swiglu_fusion=kern.swiglu_fusion).total
        rss_before = psutil.Process().memory_info().rss
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.run(cfg)
        rows = [json.loads(line) for line in Path(cfg.logging.metrics_file).read_text().splitlines()]
    steps = [r["step_s"] for r in rows if r["split"] == "train" and r["iteration"] > args.warmup]
    return {"step_s": statistics.median(steps), "peak_bytes": _peak_bytes(rss_before),
            "loss": rows[-1]["loss"] if rows else float("nan"), "estimate_bytes": est}


def run_reference(args) -> dict:
    """The same shape as a transformers LlamaForCausalLM in a plain loop."""
    import psutil
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = _load(args)
    m, t, s = cfg.model, cfg.training, cfg.data.seq_length
    cuda = torch.cuda.is_available()
    dev = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    rss_before = psutil.Process().memory_info().rss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    torch.manual_seed(0)
    hf = LlamaConfig(vocab_size=m.vocab_size, hidden_size=m.hidden_size, intermediate_size=m.ffn_hidden_size,
                     num_hidden_layers=m.num_layers, num_attention_heads=m.num_attention_heads,
                     num_key_value_heads=m.num_query_groups or m.num_attention_heads, max_position_embeddings=s,
                     rms_norm_eps=m.norm_epsilon, rope_theta=float(m.rotary_base), tie_word_embeddings=m.tie_embeddings,
                     attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM._from_config(hf, attn_implementation="sdpa", torch_dtype=dtype).to(dev)
    model.gradient_checkpointing_disable()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=cuda)
    n_micro = t.global_batch_size // t.micro_batch_size
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, m.vocab_size, (t.micro_batch_size, s), generator=g).to(dev) for _ in range(n_micro)]
    times = []
    for step in range(args.steps + args.warmup):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for ids in batches:
            loss = model(input_ids=ids, labels=ids).loss / n_micro
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times), "peak_bytes": _peak_bytes(rss_before), "loss": float(loss) * n_micro}


def _child(args, variant: str, profile_dir: str | None = None) -> dict | None:
    """Run one variant in a fresh process; None (with the reason printed) when it fails."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", variant, "--steps", str(args.steps),
           "--warmup", str(args.warmup)] + (["--config", args.config] if args.config else []) + \
        (["--profile-dir", profile_dir] if profile_dir else []) + args.overrides
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    print(f"{variant}: failed (exit {proc.returncode}): {tail}", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="training YAML (default: a small CPU config)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=1, help="untimed first steps")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run every variant this many times, round-robin, and keep the median (noisy machines)")
    ap.add_argument("--impls", default="auto",
                    help="trainer variants, comma-separated: an attention implementation (sdpa, unfused, te), "
                         "optionally with +key=value overrides, e.g. sdpa,sdpa+model.fusions=none,"
                         "sdpa+training.recompute_granularity=full; auto = every available attention")
    ap.add_argument("--profile-dir", default=None,
                    help="profile one step of the first variant (torch.profiler) and print its top kernels")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense peak per device for MFU (default: 989 on H100/H200 bf16; none on CPU)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the training config")
    args = ap.parse_args(argv)

    if args.one:
        result = run_reference(args) if args.one == "reference" else run_trainer(args, args.one)
        print(json.dumps(result), flush=True)
        return 0

    import torch

    from megatron_snow.training.flops import model_size
    from megatron_snow.training.model import te_available

    cfg = _load(args)
    impls = args.impls.split(",") if args.impls != "auto" else ["sdpa", "unfused"] + (["te"] if te_available() else [])
    peak = args.peak_tflops
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    if peak is None and torch.cuda.is_available() and ("H100" in device or "H200" in device):
        peak = 989.0
    m, t, s = cfg.model, cfg.training, cfg.data.seq_length
    flops = model_size(m, m.vocab_size, s).flops_per_token
    tokens = t.global_batch_size * s
    print(f"device: {device}; {m.num_layers} layers x {m.hidden_size}, ffn {m.ffn_hidden_size}, heads "
          f"{m.num_attention_heads} (kv {m.num_query_groups or m.num_attention_heads}), vocab {m.vocab_size}, seq {s}, "
          f"micro-batch {t.micro_batch_size}, global batch {t.global_batch_size}, recompute "
          f"{t.recompute_granularity or 'none'}; {flops / 1e9:.3f} GFLOP/token (Megatron-LM formula); "
          f"median of {args.steps} steps after {args.warmup}, median over {args.repeats} run(s)", flush=True)
    runs: dict[str, list] = {v: [] for v in [*impls, "reference"]}
    for r in range(args.repeats):  # round-robin, so a busy moment hits every variant alike
        for variant in runs:
            prof = args.profile_dir if (r == 0 and variant == impls[0] and args.profile_dir) else None
            runs[variant].append(_child(args, variant, prof))
    results = {}
    for variant, rs in runs.items():
        ok = [r for r in rs if r is not None]
        results[variant] = None if not ok else {
            "step_s": statistics.median(r["step_s"] for r in ok), "peak_bytes": max(r["peak_bytes"] for r in ok),
            "estimate_bytes": ok[0].get("estimate_bytes")}
    ref = results.get("reference")
    width = max(34, *(len(v) + 24 for v in results))
    header = (f"{'variant':<{width}}{'tokens/s':>12}{'TFLOP/s':>10}{'MFU':>8}{'peak GiB':>10}{'vs ref':>8}"
              f"{'est. GiB':>10}{'est/peak':>9}")
    print(header)
    for variant, r in results.items():
        name = "transformers Llama (SDPA, AdamW)" if variant == "reference" else f"megatron_snow trainer, {variant}"
        if r is None:
            print(f"{name:<{width}}{'failed (see above)':>40}")
            continue
        tps = tokens / r["step_s"]
        tflops = tps * flops / 1e12
        mfu = f"{tflops / peak:.3f}" if peak else "-"
        ratio = f"{ref['step_s'] / r['step_s']:.2f}x" if ref else "-"
        est = r.get("estimate_bytes")
        est_cols = f"{est / 2**30:>10.2f}{est / r['peak_bytes']:>9.3f}" if est else ""
        print(f"{name:<{width}}{tps:>12,.0f}{tflops:>10.3f}{mfu:>8}"
              f"{r['peak_bytes'] / 2**30:>10.2f}{ratio:>8}{est_cols}")
    if args.profile_dir and (Path(args.profile_dir) / "top_kernels.txt").is_file():
        print(f"profile of one step of {impls[0]} ({args.profile_dir}/top_kernels.txt):")
        print((Path(args.profile_dir) / "top_kernels.txt").read_text())
    return 0 if all(r is not None for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
