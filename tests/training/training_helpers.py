"""Helpers for the training tests: a tiny learnable indexed dataset, torchrun
subprocesses (gloo, 2 processes) and the metrics they write. (A uniquely named
module: every test directory has its own conftest.py.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
VOCAB = 256  # ids < 256; padded table stays 256 at TP=1 and TP=2 (divisible by 64)
EOD = 255


def tiny_documents(n_docs: int = 300, seed: int = 0):
    """Documents following a noisy fixed rule (next = 7*prev + 3 mod 200): easy to learn."""
    rng = np.random.default_rng(seed)
    for _ in range(n_docs):
        length = int(rng.integers(40, 300))
        tok = int(rng.integers(0, 200))
        doc = []
        for _ in range(length):
            doc.append(tok)
            tok = (7 * tok + 3) % 200 if rng.random() > 0.1 else int(rng.integers(0, 200))
        yield doc + [EOD]


def tiny_overrides(prefix: Path, work: Path, **extra) -> list[str]:
    """key=value overrides for a 2-layer, hidden-64 model on the tiny dataset."""
    values = {
        "model.num_layers": 2,
        "model.hidden_size": 64,
        "model.ffn_hidden_size": 128,
        "model.num_attention_heads": 4,
        "model.num_query_groups": 2,
        "model.vocab_size": VOCAB,
        "model.make_vocab_size_divisible_by": 64,
        "data.blend": f"[[1.0, {prefix}]]",
        "data.split": "90,10,0",
        "data.seq_length": 64,
        "data.eod_id": EOD,
        "data.index_cache_dir": str(work / "index_cache"),
        "optimizer.lr": 3e-3,
        "optimizer.min_lr": 3e-4,
        "optimizer.lr_warmup_iters": 2,
        "training.micro_batch_size": 2,
        "training.global_batch_size": 8,
        "training.train_iters": 12,
        "training.eval_iters": 1,
        "logging.log_interval": 1,
        "logging.metrics_file": str(work / "metrics.jsonl"),
        "checkpoint.save": str(work / "ckpt"),
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def train_command(nproc: int, overrides: list[str], script: Path | None = None) -> list[str]:
    """pretrain_gpt.py (or a test's stand-in ``script`` taking the same arguments)."""
    script = str(script or REPO / "pretrain_gpt.py")
    if nproc == 1:
        return [sys.executable, script, *overrides]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(_free_port()), script, *overrides]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, overrides: list[str], timeout: float = 240, check: bool = True,
           script: Path | None = None) -> subprocess.CompletedProcess:
    """Run pretrain_gpt.py (or ``script``) under torchrun (nproc > 1) or plain python."""
    proc = subprocess.run(train_command(nproc, overrides, script), cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"training failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def start(nproc: int, overrides: list[str]) -> subprocess.Popen:
    """Start a run in its own process group (so a test can SIGKILL all of it)."""
    return subprocess.Popen(train_command(nproc, overrides), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def read_metrics(path: Path, split: str = "train") -> dict[int, dict]:
    """iteration -> metrics (the last line wins, so a resumed run overrides)."""
    out: dict[int, dict] = {}
    if not Path(path).is_file():
        return out
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == split:
            out[rec["iteration"]] = rec
    return out


def all_losses(path: Path) -> dict[int, set[float]]:
    """iteration -> every train loss logged for it (a killed run and its restart, or every rank's log)."""
    out: dict[int, set[float]] = {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == "train":
            out.setdefault(rec["iteration"], set()).add(rec["loss"])
    return out
