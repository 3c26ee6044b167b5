"""Training on CPU gives the same losses whatever the machine's thread count (training.cpu_threads, issue 27)."""
from __future__ import annotations

import os
import subprocess

import pytest

from training_helpers import REPO, _env, read_metrics, tiny_overrides, train_command

pytestmark = pytest.mark.slow  # two 12-iteration runs of a 2-layer model, one process each


def test_same_losses_with_one_and_four_omp_threads(tiny_data, tmp_path):
    runs = {}
    for threads in (1, 4):
        work = tmp_path / f"omp{threads}"
        env = {**_env(), "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.run(train_command(1, tiny_overrides(tiny_data, work)), cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[threads] = read_metrics(work / "metrics.jsonl")
    assert len(runs[1]) == 12 and os.cpu_count()
    assert [runs[1][i]["loss"] for i in sorted(runs[1])] == [runs[4][i]["loss"] for i in sorted(runs[4])]
    assert [runs[1][i]["grad_norm"] for i in sorted(runs[1])] == [runs[4][i]["grad_norm"] for i in sorted(runs[4])]
