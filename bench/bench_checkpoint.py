"""Checkpoint save and load with 2 data-parallel CPU ranks (gloo), distributed optimizer:
bytes written/read per rank, peak extra host memory and time, for the two ways to save.

    python bench/bench_checkpoint.py                      # 4 layers, hidden 768: ~45M parameters
    python bench/bench_checkpoint.py --layers 8 --hidden 1024

"before": the optimizer gathered per parameter (megatron's fully_reshardable) and saved
without the fully parallel strategies (DP rank 0 writes every replicated tensor);
"after": this repository's default, fully parallel save/load with the optimizer in
dp_reshardable format. Both in the same run, on the same model and state.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VARIANTS = {  # name: (optimizer_format, fully_parallel)
    "before: fully_reshardable, no fully parallel": ("fully_reshardable", False),
    "after: dp_reshardable, fully parallel": ("dp_reshardable", True),
}


class PeakRSS:
    """Peak resident memory of this process above its level at start (sampled every 2 ms)."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _io():
    import psutil

    c = psutil.Process().io_counters()
    return c.write_chars, c.read_chars


def worker(args) -> None:
    import torch

    from megatron_snow.training import checkpoint as ckpt
    from megatron_snow.training.config import load_train_config
    from megatron_snow.training.trainer import Trainer, init_distributed, preflight

    over = [f"model.num_layers={args.layers}", f"model.hidden_size={args.hidden}",
            f"model.ffn_hidden_size={args.hidden * 11 // 4}", "model.num_attention_heads=8",
            f"model.vocab_size={args.vocab}", "model.make_vocab_size_divisible_by=128",
            f"data.blend=[[1.0, {args.data}]]", "data.split=90,10,0", "data.seq_length=64", "data.eod_id=0",
            f"data.index_cache_dir={args.work}/cache", "training.micro_batch_size=1", "training.global_batch_size=2",
            "training.train_iters=1", "parallel.use_distributed_optimizer=true", "logging.log_interval=0"]
    cfg = load_train_config(None, over)
    plan = preflight(cfg, int(os.environ["WORLD_SIZE"]))
    init_distributed(cfg)
    tr = Trainer(cfg, plan)
    tr.train_step()  # the optimizer holds real Adam state
    rank = torch.distributed.get_rank()
    results = {}
    meta = ckpt.recorded_facts(cfg, plan.shape)
    for name, (fmt, fully_parallel) in VARIANTS.items():
        root = Path(args.work) / name.split(":")[0]
        torch.distributed.barrier()
        w0, _ = _io()
        t0 = time.time()
        with PeakRSS() as mem:
            ckpt.save_checkpoint(root, 1, tr.model, tr.optimizer, tr.scheduler, meta, keep_last=1,
                                 optimizer_format=fmt, fully_parallel=fully_parallel)
        save_s = time.time() - t0
        written = _io()[0] - w0
        torch.distributed.barrier()
        _, r0 = _io()
        t0 = time.time()
        with PeakRSS() as lmem:
            ckpt.load_checkpoint(ckpt.iter_dir(root, 1), tr.model, tr.optimizer, tr.scheduler,
                                 fully_parallel=fully_parallel)
        load_s = time.time() - t0
        read = _io()[1] - r0
        files = ckpt.read_meta(ckpt.iter_dir(root, 1))["files"]
        results[name] = {"rank": rank, "save_written_MB": written / 1e6,
                         "save_peak_extra_MB": (mem.peak - mem.base) / 1e6, "save_s": save_s,
                         "load_read_MB": read / 1e6, "load_peak_extra_MB": (lmem.peak - lmem.base) / 1e6,
                         "load_s": load_s, "checkpoint_MB": sum(f["bytes"] for f in files.values()) / 1e6}
    gathered = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, results)
    if rank == 0:
        n_params = sum(p.numel() for p in tr.model.parameters())
        print("RESULT " + json.dumps({"params": n_params, "ranks": gathered}))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    import numpy as np

    from megatron_snow.indexed import write_indexed_dataset

    with tempfile.TemporaryDirectory(prefix="bench_ckpt_") as work:
        rng = np.random.default_rng(0)
        docs = ([int(x) for x in rng.integers(1, args.vocab, 200)] + [0] for _ in range(100))
        write_indexed_dataset(Path(work) / "data", docs, args.vocab)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__,
               "--worker", "--layers", str(args.layers), "--hidden", str(args.hidden), "--vocab", str(args.vocab),
               "--data", str(Path(work) / "data"), "--work", work]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            print(out.stdout[-3000:], out.stderr[-5000:], file=sys.stderr)
            return 1
    res = json.loads(line[len("RESULT "):])
    print(f"{res['params'] / 1e6:.1f}M parameters, 2 DP ranks (gloo, CPU), distributed optimizer")
    cols = ("save_written_MB", "save_peak_extra_MB", "save_s", "load_read_MB", "load_peak_extra_MB", "load_s")
    print(f"{'variant':48s} rank " + " ".join(f"{c:>18s}" for c in cols))
    for name in VARIANTS:
        for r in res["ranks"]:
            v = r[name]
            print(f"{name:48s} {v['rank']:4d} " + " ".join(f"{v[c]:18.2f}" for c in cols))
    before, after = (list(VARIANTS)[0], list(VARIANTS)[1])
    for c in ("save_written_MB", "save_peak_extra_MB", "load_read_MB"):
        b = max(r[before][c] for r in res["ranks"])
        a = max(r[after][c] for r in res["ranks"])
        print(f"max over ranks, {c}: after/before = {a:.1f}/{b:.1f} = {a / b if b else float('nan'):.2f}")
    print(f"checkpoint size: {res['ranks'][0][after]['checkpoint_MB']:.1f} MB (after), "
          f"{res['ranks'][0][before]['checkpoint_MB']:.1f} MB (before)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
