"""Activation recomputation from the config (megatron-core's recompute_granularity,
recompute_method, recompute_num_layers): full and selective recomputation train
exactly like keeping every activation (same loss and gradient norm at every
iteration, on CPU in fp32). That recomputation really drops activations is
measured in test_flops_memory.py."""
from __future__ import annotations

import pytest

from training_helpers import launch, read_metrics, tiny_overrides

pytestmark = pytest.mark.slow


def _run(tiny_data, work, **extra) -> dict[int, dict]:
    values = {"training.train_iters": 4, **extra}
    over = [o for o in tiny_overrides(tiny_data, work, **values) if not o.startswith("checkpoint.save=")]
    out = launch(1, over)
    assert "saved checkpoint" not in out.stdout
    return read_metrics(work / "metrics.jsonl")


def test_full_and_selective_recompute_match_no_recompute(tiny_data, tmp_path):
    ref = _run(tiny_data, tmp_path / "none")
    full = _run(tiny_data, tmp_path / "full", **{"training.recompute_granularity": "full",
                                                  "training.recompute_method": "uniform",
                                                  "training.recompute_num_layers": 1})
    selective = _run(tiny_data, tmp_path / "selective", **{"training.recompute_granularity": "selective",
                                                            "model.attention_impl": "unfused"})
    ref_unfused_first = ref[1]["loss"]
    assert sorted(ref) == sorted(full) == sorted(selective) == [1, 2, 3, 4]
    for it in ref:
        assert ref[it]["grad_norm"] > 0
        assert full[it]["loss"] == pytest.approx(ref[it]["loss"], rel=1e-6, abs=1e-6)
        assert full[it]["grad_norm"] == pytest.approx(ref[it]["grad_norm"], rel=1e-6, abs=1e-6)
        # (unfused vs SDPA attention differ by float rounding only)
        assert selective[it]["loss"] == pytest.approx(ref[it]["loss"], rel=1e-5, abs=1e-5)
        assert selective[it]["grad_norm"] == pytest.approx(ref[it]["grad_norm"], rel=1e-5, abs=1e-5)
    assert ref[4]["loss"] < ref_unfused_first  # it trained


def test_recompute_settings_are_checked():
    from megatron_snow.config import ConfigError
    from megatron_snow.training.config import load_train_config

    with pytest.raises(ConfigError, match="recompute_method"):
        load_train_config(None, ["training.recompute_granularity=full"])
    with pytest.raises(ConfigError, match="only with"):
        load_train_config(None, ["training.recompute_method=uniform", "training.recompute_num_layers=1"])
