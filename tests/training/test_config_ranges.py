"""Every training setting is range-checked when the config loads: one line naming the key
(before, data.seq_length=0 died in a bare SIGFPE and optimizer.lr=-1 trained)."""
from __future__ import annotations

import pytest

from megatron_snow.config import ConfigError
from megatron_snow.training.config import load_train_config


@pytest.mark.parametrize("override, pattern", [
    ("data.seq_length=0", r"^data\.seq_length=0 is out of range >= 1$"),
    ("data.eod_id=-2", r"^data\.eod_id=-2 is out of range >= 0$"),
    ("optimizer.lr=-1", r"^optimizer\.lr=-1\.0 is out of range >= 0$"),
    ("optimizer.min_lr=-0.5", r"^optimizer\.min_lr=-0\.5 is out of range >= 0$"),
    ("optimizer.min_lr=0.1", r"^optimizer\.min_lr \(0\.1\) must not exceed optimizer\.lr \(0\.0003\)$"),
    ("optimizer.lr_warmup_iters=-5", r"^optimizer\.lr_warmup_iters=-5 is out of range >= 0$"),
    ("optimizer.lr_decay_iters=0", r"^optimizer\.lr_decay_iters=0 is out of range >= 1$"),
    ("optimizer.adam_beta2=1.0", r"^optimizer\.adam_beta2=1\.0 is out of range \[0, 1\)$"),
    ("optimizer.adam_eps=0", r"^optimizer\.adam_eps=0\.0 is out of range > 0$"),
    ("optimizer.clip_grad=-1", r"^optimizer\.clip_grad=-1\.0 is out of range >= 0$"),
    ("optimizer.weight_decay=-0.1", r"^optimizer\.weight_decay=-0\.1 is out of range >= 0$"),
    ("model.norm_epsilon=0", r"^model\.norm_epsilon=0\.0 is out of range > 0$"),
    ("model.init_method_std=-0.02", r"^model\.init_method_std=-0\.02 is out of range > 0$"),
    ("training.seed=-1", r"^training\.seed=-1 is out of range \[0, 4294967295\]$"),
    ("training.eval_iters=0", r"^training\.eval_iters=0 is out of range >= 1$"),
    ("training.exit_duration_mins=-1", r"^training\.exit_duration_mins=-1\.0 is out of range >= 0$"),
    ("checkpoint.keep_last=-1", r"^checkpoint\.keep_last=-1 is out of range >= 0$"),
    ("checkpoint.save_interval=-10", r"^checkpoint\.save_interval=-10 is out of range >= 0$"),
    ("checkpoint.optimizer_format=zero", r"^checkpoint\.optimizer_format: expected one of"),
    ("checkpoint.on_damaged=ignore", r"^checkpoint\.on_damaged: expected one of \['fallback', 'stop'\]"),
    ("logging.log_interval=-1", r"^logging\.log_interval=-1 is out of range >= 0$"),
    ("logging.peak_tflops=0", r"^logging\.peak_tflops=0\.0 is out of range > 0$"),
])
def test_out_of_range_settings_are_one_line_naming_the_key(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_train_config(None, [override])
    assert "\n" not in str(info.value)


def test_in_range_edges_are_accepted():
    cfg = load_train_config(None, ["data.seq_length=1", "optimizer.lr=0", "optimizer.min_lr=0", "optimizer.clip_grad=0",
                                   "training.seed=0", "checkpoint.keep_last=0", "training.exit_duration_mins=0.5",
                                   "checkpoint.optimizer_format=fully_reshardable", "checkpoint.on_damaged=stop"])
    assert cfg.data.seq_length == 1 and cfg.training.exit_duration_mins == 0.5


def test_the_cli_says_it_in_one_line_with_exit_2():
    import subprocess
    import sys

    from training_helpers import REPO

    out = subprocess.run([sys.executable, str(REPO / "pretrain_gpt.py"), "data.seq_length=0"], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: data.seq_length=0 is out of range >= 1"]
