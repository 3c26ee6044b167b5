"""Stopping without losing work, with real signals: SIGTERM or SIGUSR1 to ONE rank of a
2-rank run makes both save at the same iteration boundary and exit 0 (and say why, also in
the SNOW_EXIT_STATUS file the sbatch scripts read); training.exit_duration_mins stops after
saving once the time is up; the same command then resumes from that checkpoint."""
from __future__ import annotations

import json
import signal
import subprocess
import time

import psutil
import pytest

from training_helpers import REPO, _env, launch, read_metrics, tiny_overrides, train_command

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_to_one_rank_saves_and_stops_all_ranks(tiny_data, tmp_path, sig):
    iters = 400  # far more than can run before the signal: the run must stop early
    over = tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": iters, "optimizer.lr_decay_iters": iters})
    status = tmp_path / "exit_status.json"
    proc = subprocess.Popen(train_command(2, over), cwd=REPO, env={**_env(), "SNOW_EXIT_STATUS": str(status)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not read_metrics(tmp_path / "metrics.jsonl"):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "no training step within 180 s"
            time.sleep(0.05)
        workers = sorted(psutil.Process(proc.pid).children(), key=lambda p: p.pid)
        assert len(workers) == 2
        workers[1].send_signal(sig)  # one rank only: the other learns it at the next boundary
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    done = read_metrics(tmp_path / "metrics.jsonl")
    k = max(done)
    assert k < iters
    assert f"stopped at iteration {k} of {iters} ({sig.name} received); saved; the same command resumes" in out
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == str(k)
    assert json.loads(status.read_text()) == {"status": "stopped", "iteration": k, "reason": f"{sig.name} received"}
    assert not read_metrics(tmp_path / "metrics.jsonl", "valid")  # no end-of-run validation on a stop


def test_exit_duration_mins_saves_and_stops_then_resumes(tiny_data, tmp_path):
    over = tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 6, "optimizer.lr_decay_iters": 6})
    # 0.001 min: the budget is spent during start-up, so the run stops at its first boundary
    out = launch(1, over + ["training.exit_duration_mins=0.001"])
    assert "stopped at iteration 1 of 6 (training.exit_duration_mins=0.001 reached after" in out.stdout
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "1"
    out = launch(1, over)
    assert f"resumed from {tmp_path / 'ckpt' / 'iter_0000001'} at iteration 1" in out.stdout
    assert sorted(read_metrics(tmp_path / "metrics.jsonl")) == list(range(1, 7))
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "6"
