"""Checkpoints at scale and their integrity, on a real 2-rank run (gloo, distributed
optimizer, fully parallel save in dp_reshardable format): checksums recorded at save and
verified on resume; a damaged newest checkpoint is reported in one line and the newest
intact one resumes exactly (or the run stops, by a setting); marker problems fall back the
same way; a changed data identity or an optimizer layout that cannot load is refused in
one line; the dp_reshardable state loads at another DP size."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training_helpers import launch, read_metrics, tiny_overrides
from megatron_snow.config import ConfigError
from megatron_snow.training import checkpoint as ckpt
from megatron_snow.training.config import load_train_config
from megatron_snow.training.trainer import preflight

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

EXTRA = {"parallel.use_distributed_optimizer": "true", "training.train_iters": 8, "checkpoint.save_interval": 4,
         "checkpoint.keep_last": 3, "training.eval_iters": 1}


@pytest.fixture(scope="module")
def dp2_run(tiny_data, tmp_path_factory) -> Path:
    """A finished DP=2 run with checkpoints at iterations 4 and 8 (kept read-only: tests copy it)."""
    work = tmp_path_factory.mktemp("dp2_run")
    launch(2, tiny_overrides(tiny_data, work, **EXTRA))
    return work


def _copy(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst)
    return dst


def _over(tiny_data, work: Path, **extra) -> list[str]:
    return tiny_overrides(tiny_data, work, **{**EXTRA, **extra})


def _flip_block(path: Path, offset: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    start = min(offset, max(0, len(data) - 4096))
    data[start:start + 4096] = bytes(b ^ 0xFF for b in data[start:start + 4096])
    path.write_bytes(bytes(data))


def test_save_is_fully_parallel_and_records_checksums(dp2_run, tmp_path):
    d8 = dp2_run / "ckpt" / "iter_0000008"
    meta = ckpt.read_meta(d8)
    assert meta["optimizer_format"] == "dp_reshardable" and meta["topology"] == {"tp": 1, "pp": 1, "dp": 2}
    on_disk = sorted(p.name for p in d8.iterdir() if p.name != ckpt.META)
    assert sorted(meta["files"]) == on_disk
    for name, rec in meta["files"].items():
        assert rec["bytes"] == (d8 / name).stat().st_size and len(rec["sha256"]) == 64
    # Both DP ranks wrote a share (fully parallel): each rank's file holds data.
    rank_files = {n: (d8 / n).stat().st_size for n in on_disk if n.endswith(".distcp")}
    assert {n.split("_")[2] for n in rank_files} == {"0", "1"}, rank_files
    assert all(size > 10_000 for size in rank_files.values()), rank_files
    assert ckpt.verify_checkpoint(d8) is None

    # Each kind of damage is found and named (no process group: this process checks every file).
    run = _copy(dp2_run, tmp_path / "run")
    d = run / "ckpt" / "iter_0000008"
    victim = d / "__1_0.distcp"
    _flip_block(victim)
    assert ckpt.verify_checkpoint(d) == "__1_0.distcp does not match its SHA-256"
    victim.write_bytes(victim.read_bytes()[:1000])
    written = meta["files"]["__1_0.distcp"]["bytes"]
    assert ckpt.verify_checkpoint(d) == f"__1_0.distcp has 1000 bytes, {written} were written"
    (run / "ckpt" / "iter_0000004" / "common.pt").unlink()
    assert ckpt.verify_checkpoint(run / "ckpt" / "iter_0000004") == "common.pt is missing"


def test_damaged_newest_checkpoint_falls_back_or_stops(dp2_run, tiny_data, tmp_path):
    run = _copy(dp2_run, tmp_path / "run")
    d8, d4 = run / "ckpt" / "iter_0000008", run / "ckpt" / "iter_0000004"
    _flip_block(d8 / "__0_0.distcp")
    ref = read_metrics(dp2_run / "metrics.jsonl")

    # on_damaged=stop: one line, every rank exits 2 (torchrun then 1), nothing built
    bad = launch(2, _over(tiny_data, run, **{"checkpoint.on_damaged": "stop"}), check=False)
    assert bad.returncode != 0 and "exitcode  : 2" in bad.stderr
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: checkpoint {d8} is damaged: __0_0.distcp does not match its SHA-256; "
                      f"checkpoint.on_damaged=fallback would resume from {d4}"], bad.stderr[-3000:]
    assert "datasets ready" not in bad.stdout

    # default (fallback): one warning line, resume from iteration 4, the same losses as before
    out = launch(2, _over(tiny_data, run))
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings == [f"warning: checkpoint {d8} is damaged: __0_0.distcp does not match its SHA-256; "
                        f"falling back to {d4}"], out.stderr[-3000:]
    assert f"resumed from {d4} at iteration 4" in out.stdout
    losses: dict[int, set] = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == "train":
            losses.setdefault(rec["iteration"], set()).add(rec["loss"])
    assert sorted(losses) == list(range(1, 9))
    assert all(losses[i] == {ref[i]["loss"]} for i in range(1, 9)), (losses, ref)
    assert ckpt.verify_checkpoint(d8) is None  # iteration 8 was saved again, intact


def test_marker_problems_fall_back_in_one_line(dp2_run, tmp_path):
    run = _copy(dp2_run, tmp_path / "run")
    root = run / "ckpt"
    said: list[str] = []
    (root / "latest").write_text("garbage\n")
    assert ckpt.resume_candidate(root, say=said.append) == root / "iter_0000008"
    (root / "latest").write_text("12\n")  # a save of 12 killed before its META was written
    (root / "iter_0000012").mkdir()
    assert ckpt.resume_candidate(root, say=said.append) == root / "iter_0000008"
    assert said == [f"warning: checkpoint marker {root / 'latest'} is corrupt: 'garbage'; falling back to "
                    f"{root / 'iter_0000008'}",
                    f"warning: checkpoint {root / 'iter_0000012'} named by {root / 'latest'} is incomplete "
                    f"(no snow_meta.json); falling back to {root / 'iter_0000008'}"]
    with pytest.raises(ConfigError, match=r"is incomplete .*; checkpoint\.on_damaged=fallback would resume from"):
        ckpt.resume_candidate(root, on_damaged="stop")
    # pick_intact walks back over several damaged checkpoints
    (root / "latest").write_text("8\n")
    (root / "iter_0000008" / "common.pt").unlink()
    assert ckpt.pick_intact(root / "iter_0000008", say=said.append) == root / "iter_0000004"
    assert said[-1] == (f"warning: checkpoint {root / 'iter_0000008'} is damaged: common.pt is missing; "
                        f"falling back to {root / 'iter_0000004'}")
    (root / "iter_0000004" / "common.pt").unlink()
    with pytest.raises(ConfigError, match=r"iter_0000004 is damaged: common\.pt is missing; no older intact"):
        ckpt.pick_intact(root / "iter_0000008", say=said.append)


def test_resume_refuses_changed_data_identity(dp2_run, tiny_data, tmp_path):
    run = _copy(dp2_run, tmp_path / "run")
    d8 = run / "ckpt" / "iter_0000008"
    preflight(load_train_config(None, _over(tiny_data, run)), world_size=2)  # same data: resumes
    other = tmp_path / "other" / "tiny"
    other.parent.mkdir()
    from megatron_snow.indexed import write_indexed_dataset
    from training_helpers import VOCAB, tiny_documents

    write_indexed_dataset(other, tiny_documents(n_docs=200, seed=1), VOCAB)
    cases = (
        ({"training.seed": 7}, r"training\.seed 1234 vs 7"),
        ({"data.split": "80,20,0"}, r"data\.split 90,10,0 vs 80,20,0"),
        ({"data.seq_length": 32}, r"data\.seq_length 64 vs 32"),
        ({"training.train_iters": 10, "optimizer.lr_decay_iters": 8},
         r"training\.train_iters x global_batch_size 64 vs 80"),
        ({"data.blend": f"[[1.0, {other}]]"}, r"data\.blend .*\"sequences\": 300.* vs .*\"sequences\": 200"),
    )
    for extra, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as info:
            preflight(load_train_config(None, _over(tiny_data, run, **extra)), world_size=2)
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith(f"checkpoint {d8} was trained on other data")
        assert f"checkpoint.load_from={d8}" in msg
    # The same data under another path (moved) still resumes.
    moved = tmp_path / "moved" / "tiny"
    moved.parent.mkdir()
    for suffix in (".bin", ".idx"):
        shutil.copy(str(tiny_data) + suffix, str(moved) + suffix)
    preflight(load_train_config(None, _over(tiny_data, run, **{"data.blend": f"[[1.0, {moved}]]"})), world_size=2)


def test_dp_reshardable_optimizer_loads_at_another_dp_not_another_tp(dp2_run, tiny_data, tmp_path):
    run = _copy(dp2_run, tmp_path / "run")
    d8 = run / "ckpt" / "iter_0000008"
    with pytest.raises(ConfigError, match=r"dp_reshardable format \(TP=1 PP=1, any DP\), which cannot be loaded "
                                          r"at TP=2 PP=1: .*checkpoint\.optimizer_format=fully_reshardable"):
        preflight(load_train_config(None, _over(tiny_data, run, **{"parallel.tensor_model_parallel_size": 2})),
                  world_size=2)
    # DP=2 -> DP=1: the optimizer state loads (no steps left: the final validation of the same weights)
    out = launch(1, _over(tiny_data, run))
    assert f"resumed from {d8} at iteration 8" in out.stdout
    last = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()][-1]
    ref = read_metrics(dp2_run / "metrics.jsonl", "valid")[8]["loss"]
    assert last["split"] == "valid" and last["loss"] == pytest.approx(ref, rel=1e-5, abs=1e-5)
