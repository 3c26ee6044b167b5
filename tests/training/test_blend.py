"""A weighted blend of two indexed datasets: samples come from each prefix in
proportion to its weight, and a run trains on the blend."""
from __future__ import annotations

import numpy as np
import torch.distributed as dist

from training_helpers import _free_port, EOD, VOCAB, launch, read_metrics, tiny_documents, tiny_overrides
from megatron_snow.indexed import write_indexed_dataset
from megatron_snow.training.config import load_train_config
from megatron_snow.training.data import build_datasets, token_facts


def test_blend_draws_from_each_prefix_by_weight_and_trains(tmp_path):
    # Two datasets whose token ids do not overlap: ids < 100 in "low", ids in [100, 200) in "high".
    low = [[t % 100 for t in doc[:-1]] + [EOD] for doc in tiny_documents(200, seed=1)]
    high = [[100 + t % 100 for t in doc[:-1]] + [EOD] for doc in tiny_documents(200, seed=2)]
    write_indexed_dataset(tmp_path / "low", low, VOCAB)
    write_indexed_dataset(tmp_path / "high", high, VOCAB)
    over = tiny_overrides(tmp_path / "low", tmp_path, **{
        "data.blend": f"[[0.75, {tmp_path / 'low'}], [0.25, {tmp_path / 'high'}]]",
        "training.train_iters": 40, "training.global_batch_size": 8, "training.micro_batch_size": 8})
    cfg = load_train_config(None, over)
    # megatron-core's BlendedDataset asks torch.distributed for the rank: a 1-process gloo group.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        train, valid = build_datasets(cfg, token_facts(cfg))
    finally:
        dist.destroy_process_group()
    assert len(train) >= 40 * 8 and valid is not None

    def source(i: int) -> str:
        tokens = np.asarray(train[i]["tokens"])
        body = tokens[tokens != EOD]
        assert body.size and ((body < 100).all() or (body >= 100).all()), "a sample mixes the two datasets"
        return "low" if (body < 100).all() else "high"

    n = 320
    share_low = sum(source(i) == "low" for i in range(n)) / n
    assert abs(share_low - 0.75) < 0.03, share_low

    # A real (single-process) run on the same blend: loss falls.
    launch(1, over[:-1] + [f"checkpoint.save={tmp_path / 'ckpt'}", "training.train_iters=12",
                           "training.micro_batch_size=2"])
    losses = [m["loss"] for _, m in sorted(read_metrics(tmp_path / "metrics.jsonl").items())]
    assert len(losses) == 12 and np.mean(losses[-2:]) < np.mean(losses[:2]) - 0.3, losses
