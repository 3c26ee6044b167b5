"""The LR schedules of the example configs, through megatron's OptimizerParamScheduler
exactly as the trainer builds it (one scheduler step per iteration)."""
from __future__ import annotations

import math

import pytest
import torch

from training_helpers import REPO
from megatron_snow.training.config import OptimizerConfig, load_train_config
from megatron_snow.training.trainer import build_scheduler


def _lrs(o: OptimizerConfig, train_iters: int, at: list[int]) -> dict[int, float]:
    opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=o.lr)
    sched = build_scheduler(opt, o, train_iters)
    out, done = {}, 0
    for it in sorted(at):
        sched.step(it - done)
        done = it
        out[it] = opt.param_groups[0]["lr"]
    return out


def test_phase1_warmup_then_cosine_to_min():
    c = load_train_config(REPO / "examples/snowcoder_1.3b/phase1.yaml")
    n = c.training.train_iters
    lr = _lrs(c.optimizer, n, [0, 300, 600, (600 + n) // 2, n])
    assert lr[0] == 0.0 and lr[300] == pytest.approx(5.3e-4 / 2) and lr[600] == pytest.approx(5.3e-4)
    assert lr[(600 + n) // 2] == pytest.approx((5.3e-4 + 5.3e-5) / 2, rel=1e-3)  # cosine midpoint
    assert lr[n] == pytest.approx(5.3e-5)


@pytest.mark.parametrize("phase", [2, 3])
def test_later_phases_rewarm_from_zero_then_linear_to_zero(phase):
    c = load_train_config(REPO / f"examples/snowcoder_1.3b/phase{phase}.yaml")
    # train_iters: 0 = derived from the blend file; the paper's lengths are 50B and 5B tokens / 4.19M
    assert c.training.train_iters == 0
    n, w = {2: 11921, 3: 1192}[phase], c.optimizer.lr_warmup_iters  # w: 1000 (phase 2), 100 (phase 3)
    mid = (w + n) // 2
    lr = _lrs(c.optimizer, n, [0, w // 2, w, mid, n])
    assert lr[0] == 0.0 and lr[w // 2] == pytest.approx(2.65e-4) and lr[w] == pytest.approx(5.3e-4)
    assert lr[mid] == pytest.approx(5.3e-4 * (n - mid) / (n - w), rel=1e-3)
    assert lr[n] == pytest.approx(0.0, abs=1e-12)


def test_constant_and_wsd():
    const = OptimizerConfig(lr=1e-3, min_lr=1e-4, lr_warmup_iters=10, lr_decay_style="constant")
    assert _lrs(const, 100, [5, 50, 100]) == pytest.approx({5: 5e-4, 50: 1e-3, 100: 1e-3})
    wsd = OptimizerConfig(lr=1e-3, min_lr=1e-4, lr_warmup_iters=10, lr_decay_style="WSD", lr_wsd_decay_iters=20)
    lr = _lrs(wsd, 100, [50, 80, 90, 100])
    assert lr[50] == pytest.approx(1e-3) and lr[80] == pytest.approx(1e-3)  # stable until the last 20
    assert lr[90] == pytest.approx(5.5e-4) and lr[100] == pytest.approx(1e-4)  # then linear anneal
    assert all(math.isfinite(v) for v in lr.values())
