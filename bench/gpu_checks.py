#!/usr/bin/env python
"""The GPU checks of the training path, one command, each part under its own time limit.

    python bench/gpu_checks.py --out gpu_results            # everything, about 8 minutes on one H200
    python bench/gpu_checks.py --out r --parts resume,convert

Parts (each prints its own lines and a summary line at the end):
- ``train``: bench/bench_train.py on examples/snowcoder_1.3b/phase1.yaml (the paper's 1.3B at
  sequence 8192, micro-batch 1, bf16, one GPU): the trainer with SDPA (fused SwiGLU and cross
  entropy), the same without the fusions, with full recomputation, with micro-batch 2, and
  the transformers LlamaForCausalLM reference; tokens/s, MFU (Megatron's formula), peak
  torch.cuda.max_memory_allocated beside the model-info estimate; one step profiled.
- ``resume``: bf16, 20 iterations straight vs the same run SIGKILLed after iteration 10 and
  restarted with the same command: losses compared iteration by iteration.
- ``convert``: the straight run's bf16 checkpoint through convert-to-hf; logits of the Hugging
  Face model vs the megatron model on the GPU (fp32 and bf16).
- ``annotate``: bench/bench_annotate.py (arctic-embed-m's shape, bf16) vs a transformers
  pipeline on the same windows, and the GPU bf16 scores vs CPU fp32 scores.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL = ["model.num_layers=4", "model.hidden_size=512", "model.ffn_hidden_size=1408", "model.num_attention_heads=8",
         "model.vocab_size=4096", "data.seq_length=1024", "training.micro_batch_size=2",
         "training.global_batch_size=16", "training.train_iters=20", "training.precision=bf16",
         "parallel.use_distributed_optimizer=true", "optimizer.lr=0.0003", "optimizer.lr_warmup_iters=2",
         "training.eval_interval=0", "checkpoint.save_interval=5", "checkpoint.keep_last=5",
         "data.split=100,0,0", "logging.log_interval=1"]


def sh(cmd: list[str], timeout: float, log: Path, env: dict | None = None) -> int:
    """Run ``cmd`` with output to the console and ``log``; a timeout is reported, not raised."""
    print(f"$ {' '.join(cmd)}", flush=True)
    with open(log, "a") as f:
        try:
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout, env=env or dict(os.environ), cwd=REPO)
        except subprocess.TimeoutExpired as e:
            out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
            f.write(out)
            print(out[-4000:], flush=True)
            print(f"TIMEOUT after {timeout:.0f}s", flush=True)
            return 124
        f.write(proc.stdout)
        print(proc.stdout[-6000:], flush=True)
        return proc.returncode


TRAIN_VARIANTS = ",".join(["sdpa", "sdpa+model.fusions=none",
                           "sdpa+training.recompute_granularity=full+training.recompute_method=uniform"
                           "+training.recompute_num_layers=1",
                           "sdpa+training.micro_batch_size=2"])


def part_train(out: Path, timeout: float) -> str:
    variants = os.environ.get("GPU_CHECKS_TRAIN_VARIANTS", TRAIN_VARIANTS)
    sh([sys.executable, "-m", "megatron_snow.training.model_info", "--config",
        "examples/snowcoder_1.3b/phase1.yaml", "--gpu-memory-gib", "80"], 60, out / "train.log")
    rc = sh([sys.executable, "bench/bench_train.py", "--config", "examples/snowcoder_1.3b/phase1.yaml",
             "training.global_batch_size=4", "--steps", "3", "--warmup", "2", "--impls", variants,
             "--profile-dir", str(out / "profile")], timeout, out / "train.log")
    return f"train: exit {rc} (table in train.log)"


def _losses(metrics: Path) -> dict[int, float]:
    """The last logged training loss of each iteration (a resumed run re-logs from its checkpoint)."""
    losses = {}
    for line in metrics.read_text().splitlines():
        r = json.loads(line)
        if r.get("split") == "train":
            losses[r["iteration"]] = r["loss"]
    return losses


def _random_data(work: Path) -> str:
    import numpy as np

    from megatron_snow.indexed import write_indexed_dataset

    rng = np.random.default_rng(0)
    prefix = work / "data" / "random"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    docs = (rng.integers(0, 4095, int(rng.integers(200, 3000))).tolist() + [4095] for _ in range(600))
    write_indexed_dataset(prefix, docs, 4096)
    return str(prefix)


REHEARSAL = ["model.hidden_size=128", "model.ffn_hidden_size=352", "model.num_attention_heads=4",
             "data.seq_length=256", "training.global_batch_size=4"]


def _train_cmd(data: str, save: Path) -> list[str]:
    small = SMALL + (REHEARSAL if os.environ.get("GPU_CHECKS_REHEARSAL") else [])
    return [sys.executable, "pretrain_gpt.py", *small, f"data.blend=[[1.0,{data}]]", "data.eod_id=4095",
            f"data.index_cache_dir={save.parent / 'cache'}", f"checkpoint.save={save}",
            f"logging.metrics_file={save / 'metrics.jsonl'}"]


def part_resume(out: Path, timeout: float) -> str:
    work = out / "resume"
    data = _random_data(work)
    straight, killed = work / "straight", work / "killed"
    log = out / "resume.log"
    t_end = time.time() + timeout
    rc = sh(_train_cmd(data, straight), timeout / 2, log)
    if rc:
        return f"resume: the straight run failed (exit {rc})"
    # The same run, SIGKILLed once its log shows iteration 10, then restarted as it was.
    killed.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        proc = subprocess.Popen(_train_cmd(data, killed), stdout=f, stderr=subprocess.STDOUT, cwd=REPO,
                                start_new_session=True)
        metrics = killed / "metrics.jsonl"
        killed_at = None
        while proc.poll() is None and time.time() < t_end:
            if metrics.is_file() and max(_losses(metrics) or [0]) >= 10:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                killed_at = max(_losses(metrics))
                break
            time.sleep(0.005)
    if killed_at is None:
        return "resume: the run ended before it could be killed after iteration 10"
    rc = sh(_train_cmd(data, killed), max(30.0, t_end - time.time()), log)
    a, b = _losses(straight / "metrics.jsonl"), _losses(metrics)
    same = sorted(a) == sorted(b) and all(a[i] == b[i] for i in a)
    diff = max(abs(a[i] - b.get(i, float("inf"))) for i in a)
    rows = " ".join(f"{i}:{a[i]:.4f}/{b.get(i, float('nan')):.4f}" for i in sorted(a))
    print(f"losses straight/resumed: {rows}")
    return (f"resume: killed (SIGKILL) after iteration {killed_at}, restart exit {rc}; 20 losses bitwise equal: "
            f"{same}; max |diff| {diff:.3g}")


def part_convert(out: Path, timeout: float) -> str:
    save = out / "resume" / "straight"
    if not (save / "config.yaml").is_file():
        return "convert: no checkpoint (the resume part did not run)"
    log = out / "convert.log"
    for dtype in ("fp32", "bf16"):
        rc = sh([sys.executable, "-m", "megatron_snow", "convert-to-hf", "--load", str(save), "--save",
                 str(out / f"hf_{dtype}"), "--dtype", dtype, "--no-progress"], timeout / 3, log)
        if rc:
            return f"convert: convert-to-hf --dtype {dtype} failed (exit {rc})"
    rc = sh([sys.executable, str(Path(__file__).resolve()), "--out", str(out), "--logits-child"], timeout / 3, log)
    line = next((x for x in reversed(log.read_text().splitlines()) if x.startswith("convert:")), None)
    return line or f"convert: logits comparison failed (exit {rc})"


def logits_child(out: Path) -> None:
    """Megatron model from the checkpoint (one process) vs the converted HF models, on this device."""
    import torch
    from transformers import LlamaForCausalLM

    from megatron_snow.training import checkpoint as ckpt
    from megatron_snow.training.config import load_train_config
    from megatron_snow.training.model import build_model
    from megatron_snow.training.trainer import init_distributed

    save = out / "resume" / "straight"
    cfg = load_train_config(str(save / "config.yaml"), [])
    os.environ.setdefault("MASTER_PORT", "29533")
    init_distributed(cfg)
    model = build_model(cfg.model, cfg.parallel, cfg.model.vocab_size, cfg.data.seq_length, torch.bfloat16,
                        training=cfg.training)
    ckpt.load_checkpoint(ckpt.iter_dir(save, ckpt.latest_iteration(save)), model)
    model.eval()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokens = torch.randint(0, 4095, (1, 256), generator=torch.Generator().manual_seed(1)).to(dev)
    pos = torch.arange(256, device=dev)[None]
    results = []
    with torch.no_grad():
        ref_bf16 = model(tokens, pos, None).float()[0, :, :4096]
        model.float()
        ref_fp32 = model(tokens, pos, None).float()[0, :, :4096]
        for dtype, ref in (("fp32", ref_fp32), ("bf16", ref_bf16)):
            hf = LlamaForCausalLM.from_pretrained(out / f"hf_{dtype}", dtype=getattr(torch, {
                "fp32": "float32", "bf16": "bfloat16"}[dtype])).to(dev).eval()
            logits = hf(tokens).logits.float()[0]
            results.append(f"{dtype} max |diff| {(logits - ref).abs().max().item():.3g} "
                           f"(logits std {ref.std().item():.3g})")
    print("convert: HF vs megatron logits on " + str(dev) + ": " + "; ".join(results), flush=True)


def part_annotate(out: Path, timeout: float) -> str:
    rc = sh([sys.executable, "bench/bench_annotate.py", "--docs", "1000", "--max-chars", "8000", "--layers", "12",
             "--hidden", "768", "--batch-size", "128", "--repeats", "2", "--compare-cpu", "64"], timeout,
            out / "annotate.log")
    return f"annotate: exit {rc} (table in annotate.log)"


PARTS = {"train": (part_train, 300), "resume": (part_resume, 150), "convert": (part_convert, 90),
         "annotate": (part_annotate, 120)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="directory for logs, checkpoints and the profile")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every part's time limit")
    ap.add_argument("--train-variants", default=TRAIN_VARIANTS, help="bench_train.py --impls for the train part")
    ap.add_argument("--rehearsal", action="store_true",
                    help="a smaller resume/convert model, to rehearse the script on a CPU")
    ap.add_argument("--logits-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.rehearsal:
        os.environ["GPU_CHECKS_REHEARSAL"] = "1"
    os.environ["GPU_CHECKS_TRAIN_VARIANTS"] = args.train_variants
    if args.logits_child:
        logits_child(out)
        return 0
    import torch

    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device "
          f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU'}", flush=True)
    summary = []
    for name in args.parts.split(","):
        fn, limit = PARTS[name]
        t0 = time.time()
        try:
            line = fn(out, limit * args.scale)
        except Exception as e:  # one part's failure must not cost the others their turn
            line = f"{name}: {type(e).__name__}: {e}"
        summary.append(f"{line} [{time.time() - t0:.0f}s]")
        print(summary[-1], flush=True)
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(["== summary =="] + summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
