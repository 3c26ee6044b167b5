"""Phase 2 wired by its outputs: selection's blend file is what pretrain_gpt.py reads (data.blend_file),
and the number of iterations follows from the requested repetitions, not from GPTDataset's epochs."""
from __future__ import annotations

import numpy as np
import pytest

from megatron_snow.config import ConfigError
from megatron_snow.indexed import BlendEntry, read_blend_file, read_idx, write_blend_file, write_indexed_dataset
from megatron_snow.training.config import load_train_config
from megatron_snow.training.data import apply_blend_file

VOCAB, EOD = 300, 299


def _dataset(prefix, n_docs: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    docs = [rng.integers(0, EOD, int(rng.integers(20, 400))).tolist() + [EOD] for _ in range(n_docs)]
    write_indexed_dataset(prefix, docs, VOCAB)
    return sum(map(len, docs))


def _cfg(blend_file, **over):
    base = {"data.blend_file": str(blend_file), "data.split": "90,10,0", "data.seq_length": 64,
            "data.eod_id": EOD, "model.vocab_size": VOCAB, "training.global_batch_size": 8, "training.train_iters": 0}
    base.update(over)
    return load_train_config(None, [f"{k}={v}" for k, v in base.items()])


def _train_tokens(prefix, split=0.9) -> int:
    lengths = read_idx(prefix).sequence_lengths
    return int(lengths[: int(round(split * len(lengths)))].sum())


def test_iterations_follow_the_repetitions(tmp_path):
    a_tokens = _dataset(tmp_path / "a", 120, 1)
    b_tokens = _dataset(tmp_path / "b", 60, 2)
    blend = tmp_path / "sel" / "blend.json"
    write_blend_file(blend, [BlendEntry("../a", a_tokens, 4.0), BlendEntry(str(tmp_path / "b"), b_tokens, 1.0)])
    entries = read_blend_file(blend)
    assert entries[0].prefix == str(tmp_path / "sel" / "../a")  # relative to the blend file
    cfg = _cfg(blend)
    apply_blend_file(cfg)
    # exactly as many global batches as 4 passes over a's train split and 1 over b's hold
    samples = [(4 * _train_tokens(tmp_path / "a") - 1) // 64, (_train_tokens(tmp_path / "b") - 1) // 64]
    assert cfg.training.train_iters == sum(samples) // 8
    assert cfg.training.train_iters * 8 <= sum(samples) < (cfg.training.train_iters + 1) * 8
    (wa, pa), (wb, pb) = cfg.data.blend
    assert pa.endswith("a") and pb.endswith("b") and wa == pytest.approx(samples[0] / sum(samples))
    assert cfg.data.blend_file is None  # resolved into data.blend

    # an explicit train_iters must agree; the message gives the derived number
    derived = cfg.training.train_iters
    with pytest.raises(ConfigError, match=f"that is {derived} iterations"):
        apply_blend_file(_cfg(blend, **{"training.train_iters": derived + 5}))
    ok = _cfg(blend, **{"training.train_iters": derived})
    apply_blend_file(ok)
    assert ok.training.train_iters == derived


def test_stale_or_missing_index_is_refused(tmp_path):
    tokens = _dataset(tmp_path / "a", 50, 3)
    blend = tmp_path / "blend.json"
    write_blend_file(blend, [BlendEntry("a", tokens + 7, 4.0)])  # made for another index
    with pytest.raises(ConfigError, match="rebuild the index"):
        apply_blend_file(_cfg(blend))
    write_blend_file(blend, [BlendEntry("missing", tokens, 4.0)])
    with pytest.raises(ConfigError, match="not found"):
        apply_blend_file(_cfg(blend))
    blend.write_text("{}")
    with pytest.raises(ConfigError, match="not a blend file"):
        apply_blend_file(_cfg(blend))
    with pytest.raises(ConfigError, match="both set"):
        apply_blend_file(_cfg(blend, **{"data.blend": f"[[1.0, {tmp_path / 'a'}]]"}))
