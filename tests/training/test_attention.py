"""SDPA core attention (megatron_snow.training.attention) against megatron-core's
unfused DotProductAttention: same logits and gradients in fp32 at TP=1 and TP=2
(real gloo ranks), with and without GQA, with megatron's explicit mask and with
is_causal; checkpoints move between the two; the kernel choice is logged first
and the TE configuration resolves without a silent fallback."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from training_helpers import REPO, _env, _free_port, launch, read_metrics, tiny_overrides

PROBE = REPO / "tests" / "training" / "attention_probe.py"
TOL = 1e-5


def _check_rank(report: dict, tp: int) -> None:
    assert report["tp"] == tp
    assert {(c["groups"], c["mask"]) for c in report["cases"]} == {
        (4, "explicit_mask"), (4, "is_causal"), (2, "explicit_mask"), (2, "is_causal")}
    for c in report["cases"]:
        assert c["logits_diff"] <= TOL, c
        assert c["grad_rel_diff"] <= TOL, c
        # The comparison can fail: dropping the causal mask moves the logits by O(1).
        assert c["non_causal_logits_diff"] > 0.1, c
        assert c["logits_max_abs"] > 0.5 and c["grad_min_of_max_abs"] > 1e-3, c


def test_sdpa_matches_unfused_tp1(tmp_path):
    subprocess.run([sys.executable, str(PROBE), str(tmp_path)], cwd=REPO, env=_env(), check=True,
                   capture_output=True, timeout=240)
    _check_rank(json.loads((tmp_path / "rank0.json").read_text()), tp=1)


@pytest.mark.distributed
@pytest.mark.slow
def test_sdpa_matches_unfused_tp2(tmp_path):
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                    str(_free_port()), str(PROBE), str(tmp_path), "--tp", "2"], cwd=REPO, env=_env(), check=True,
                   capture_output=True, timeout=240)
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["tp_rank"] for r in reports) == [0, 1]  # both tensor-parallel halves ran
    for r in reports:
        _check_rank(r, tp=2)


@pytest.mark.distributed
@pytest.mark.slow
def test_checkpoint_moves_between_sdpa_and_unfused(tiny_data, tmp_path):
    """Trained at TP=2 with SDPA, resumed at TP=1 with the unfused attention: the same
    validation loss; and the first log line names the layer spec and attention kernel."""
    over = tiny_overrides(tiny_data, tmp_path, **{"parallel.tensor_model_parallel_size": 2,
                                                  "model.attention_impl": "sdpa", "training.train_iters": 6})
    out = launch(2, over)
    assert out.stdout.splitlines()[0].startswith(
        "layer spec: megatron-core local; attention kernel: torch scaled_dot_product_attention")
    sdpa_valid = read_metrics(tmp_path / "metrics.jsonl", "valid")[6]["loss"]

    over1 = tiny_overrides(tiny_data, tmp_path, **{"model.attention_impl": "unfused", "training.train_iters": 6})
    out1 = launch(1, over1)
    assert out1.stdout.splitlines()[0].startswith(
        "layer spec: megatron-core local; attention kernel: megatron-core DotProductAttention (unfused")
    assert "resumed from" in out1.stdout and "iter_0000006" in out1.stdout
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["split"] == "valid" and rows[-1]["iteration"] == 6
    assert rows[-1]["loss"] == pytest.approx(sdpa_valid, rel=1e-5, abs=1e-5)


def test_kernel_choice_and_te_wiring():
    """The spec/attention/fusion table, TE present or not (no GPU needed: the choice is pure)."""
    from megatron_snow.config import ConfigError
    from megatron_snow.training.config import ModelConfig
    from megatron_snow.training.model import choose_kernels

    def pick(ti, ai, te, gpu=False):
        k = choose_kernels(ModelConfig(transformer_impl=ti, attention_impl=ai), te_present=te, on_gpu=gpu)
        return k.spec, k.attention

    assert pick("auto", "auto", te=False) == ("local", "sdpa")
    assert pick("auto", "auto", te=True) == ("transformer_engine", "te")
    assert pick("auto", "sdpa", te=True) == ("local", "sdpa")
    assert pick("auto", "unfused", te=False) == ("local", "unfused")
    assert pick("local", "auto", te=True) == ("local", "sdpa")
    assert pick("transformer_engine", "auto", te=True) == ("transformer_engine", "te")
    for ti, ai, te in [("auto", "te", False), ("local", "te", True), ("transformer_engine", "auto", False),
                       ("transformer_engine", "sdpa", True)]:
        with pytest.raises(ConfigError, match="model\\."):
            pick(ti, ai, te)

    # On a GPU with TE: gradient-accumulation fusion is TE's own; RoPE fusion only when
    # megatron found TE's fused RoPE (not importable here, so it must say off, not pretend).
    from megatron.core.models.common.embeddings import rope_utils

    k = choose_kernels(ModelConfig(), te_present=True, on_gpu=True)
    assert k.gradient_accumulation_fusion is True
    assert k.rope_fusion is (rope_utils.fused_apply_rotary_pos_emb is not None)
    assert "layer spec: Transformer Engine; attention kernel: Transformer Engine" in k.describe()
    assert "gradient_accumulation_fusion on" in k.describe()
    # CPU: no fused kernel is ever switched on.
    k = choose_kernels(ModelConfig(), te_present=False, on_gpu=False)
    assert not (k.gradient_accumulation_fusion or k.rope_fusion or k.masked_softmax_fusion)
