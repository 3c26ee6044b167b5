"""No non-finite value is trained on or saved: an iteration whose loss or gradient
norm is NaN (injected by a forward hook in test code, nonfinite_probe.py) is
skipped and counted; after training.max_nonfinite_in_a_row in a row the run
stops with one line and exit status 1, writes no checkpoint, and the last good
checkpoint stays the newest (and resumes). With DP=2 the NaN is on one rank only:
every rank must still decide the same."""
from __future__ import annotations

import math

import pytest

from training_helpers import REPO, launch, read_metrics, tiny_overrides

PROBE = REPO / "tests" / "training" / "nonfinite_probe.py"

pytestmark = pytest.mark.slow


def test_one_nan_iteration_is_skipped_and_counted(tiny_data, tmp_path):
    over = tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 8, "checkpoint.save_interval": 4,
                                                  "training.max_nonfinite_in_a_row": 2})
    out = launch(1, ["--nan-iters", "5", "--nan-rank", "0", *over], script=PROBE)
    m = read_metrics(tmp_path / "metrics.jsonl")
    assert sorted(m) == list(range(1, 9))
    assert math.isnan(m[5]["loss"]) and m[5]["nonfinite"] == 1 and m[5]["skipped"] == 1
    assert all(math.isfinite(m[i]["loss"]) and m[i]["nonfinite"] == 0 for i in m if i != 5)
    assert [m[i]["nonfinite_total"] for i in (4, 5, 8)] == [0, 1, 1]
    # No update at 5: the schedule did not advance either (lr of 6 is the lr 5 would have used).
    assert m[6]["lr"] == m[5]["lr"]
    valid = read_metrics(tmp_path / "metrics.jsonl", "valid")[8]["loss"]
    assert math.isfinite(valid) and valid < m[1]["loss"]
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "8"
    assert "error:" not in out.stderr


@pytest.mark.distributed
def test_nan_streak_stops_without_saving_and_keeps_last_good_checkpoint(tiny_data, tmp_path):
    over = tiny_overrides(tiny_data, tmp_path, **{"checkpoint.save_interval": 2, "checkpoint.keep_last": 2,
                                                  "training.max_nonfinite_in_a_row": 3})
    out = launch(2, ["--nan-iters", "7-", "--nan-rank", "0", *over], script=PROBE, check=False)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: 3 iterations in a row (7-9) had a non-finite loss or gradient norm and were skipped "
                      "(training.max_nonfinite_in_a_row=3); stopping without saving; the last checkpoint is "
                      "iteration 6"]
    assert "DP=2" in out.stdout  # two data-parallel ranks; only rank 0 saw the NaN
    m = read_metrics(tmp_path / "metrics.jsonl")
    assert sorted(m) == list(range(1, 10))
    assert [m[i]["nonfinite"] for i in range(1, 10)] == [0] * 6 + [1] * 3
    ckpt = tmp_path / "ckpt"
    assert (ckpt / "latest").read_text().strip() == "6"
    assert sorted(p.name for p in ckpt.glob("iter_*")) == ["iter_0000004", "iter_0000006"]  # nothing at 8

    # The kept checkpoint is good: the same command without the NaN resumes from it and trains on.
    out = launch(2, over)
    assert f"resumed from {ckpt / 'iter_0000006'}" in out.stdout
    m = read_metrics(tmp_path / "metrics.jsonl")
    assert all(math.isfinite(m[i]["loss"]) and m[i]["nonfinite"] == 0 for i in range(7, 13))
    assert math.isfinite(read_metrics(tmp_path / "metrics.jsonl", "valid")[12]["loss"])
