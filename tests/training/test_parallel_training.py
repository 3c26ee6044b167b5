"""Real megatron-core training on CPU with 2 gloo processes: TP=2, PP=2 and
DP=2 (distributed optimizer) each lower the loss; a TP=2 checkpoint resumes
at TP=1 with the same validation loss; a SIGKILLed run, restarted with the
same command, reproduces the uninterrupted run's losses exactly."""
from __future__ import annotations

import json
import signal
import time

import psutil
import pytest
from training_helpers import all_losses, launch, read_metrics, start, tiny_overrides

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


def _assert_loss_falls(metrics: dict[int, dict]) -> None:
    losses = [metrics[i]["loss"] for i in sorted(metrics)]
    assert len(losses) >= 10, losses
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < first - 0.5, f"loss did not fall: {losses}"


def test_tp2_trains_and_checkpoint_loads_at_tp1(tiny_data, tmp_path):
    over = tiny_overrides(tiny_data, tmp_path, **{"parallel.tensor_model_parallel_size": 2})
    launch(2, over)
    _assert_loss_falls(read_metrics(tmp_path / "metrics.jsonl"))
    tp2_valid = read_metrics(tmp_path / "metrics.jsonl", "valid")[12]["loss"]
    meta = json.loads((tmp_path / "ckpt" / "iter_0000012" / "snow_meta.json").read_text())
    assert meta["topology"] == {"tp": 2, "pp": 1, "dp": 1}

    # Same command at TP=1 (one process): resumes the TP=2 checkpoint (model and
    # optimizer resharded), has no steps left, and validates the same weights.
    over1 = tiny_overrides(tiny_data, tmp_path, **{"parallel.tensor_model_parallel_size": 1})
    out = launch(1, over1)
    assert "resumed from" in out.stdout and "iter_0000012" in out.stdout
    tp1_valid = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert tp1_valid["split"] == "valid" and tp1_valid["iteration"] == 12
    assert tp1_valid["loss"] == pytest.approx(tp2_valid, rel=1e-5, abs=1e-5)


def test_pp2_trains_logs_and_checkpoint_loads_at_pp1(tiny_data, tmp_path):
    over = tiny_overrides(tiny_data, tmp_path, **{"parallel.pipeline_model_parallel_size": 2,
                                                   "training.micro_batch_size": 1,
                                                   "training.eval_interval": 6,
                                                   "logging.tensorboard_dir": str(tmp_path / "tb")})
    out = launch(2, over)
    m = read_metrics(tmp_path / "metrics.jsonl")
    _assert_loss_falls(m)
    assert all(r["grad_norm"] > 0 and r["tokens_per_s"] > 0 for r in m.values())
    assert "mfu" not in m[1]  # MFU is reported on GPU only
    assert "[train] iter 12 | loss" in out.stdout and "[valid] iter 6 | loss" in out.stdout
    assert sorted(read_metrics(tmp_path / "metrics.jsonl", "valid")) == [6, 12]

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(tmp_path / "tb"))
    tb.Reload()
    assert ({"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "valid/loss"}
            <= set(tb.Tags()["scalars"]))
    assert [e.value for e in tb.Scalars("train/loss")] == pytest.approx([m[i]["loss"] for i in sorted(m)])

    # The PP=2 checkpoint (tied embedding split over two stages) validates the same at PP=1.
    pp2_valid = read_metrics(tmp_path / "metrics.jsonl", "valid")[12]["loss"]
    out = launch(1, tiny_overrides(tiny_data, tmp_path, **{"training.micro_batch_size": 1}))
    assert "resumed from" in out.stdout
    pp1_valid = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()][-1]
    assert pp1_valid["split"] == "valid" and pp1_valid["loss"] == pytest.approx(pp2_valid, rel=1e-5, abs=1e-5)




def _kill_tree(proc) -> None:
    """SIGKILL the launcher and every rank it started, at once (a node failure).
    torchrun may start ranks in their own sessions, so walk the process tree."""
    parent = psutil.Process(proc.pid)
    victims = parent.children(recursive=True) + [parent]
    for p in victims:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=30)
    proc.wait()


def test_dp2_distributed_optimizer_kill_and_resume_is_exact(tiny_data, tmp_path):
    iters = 16
    extra = {"parallel.use_distributed_optimizer": "true", "training.train_iters": iters,
             "checkpoint.save_interval": 4, "checkpoint.keep_last": 2}

    ref_dir = tmp_path / "uninterrupted"
    launch(2, tiny_overrides(tiny_data, ref_dir, **extra))
    ref = read_metrics(ref_dir / "metrics.jsonl")
    assert sorted(ref) == list(range(1, iters + 1))
    _assert_loss_falls(ref)
    # keep_last=2: only the two newest checkpoints remain, and `latest` names the final one.
    assert sorted(p.name for p in (ref_dir / "ckpt").glob("iter_*")) == ["iter_0000012", "iter_0000016"]
    assert (ref_dir / "ckpt" / "latest").read_text().strip() == str(iters)

    run_dir = tmp_path / "killed"
    over = tiny_overrides(tiny_data, run_dir, **extra)
    proc = start(2, over)
    latest = run_dir / "ckpt" / "latest"
    deadline = time.time() + 180
    try:
        while not (latest.is_file() and int(latest.read_text()) >= 4):
            assert proc.poll() is None, f"run ended before its first checkpoint: {proc.stderr.read()[-3000:]}"
            assert time.time() < deadline, "no checkpoint within 180 s"
            time.sleep(0.02)
    finally:
        _kill_tree(proc)
    killed_at = int(latest.read_text())
    logged = read_metrics(run_dir / "metrics.jsonl")
    assert max(logged) < iters, "the run finished before it was killed; nothing was tested"

    # A half-written save of a later iteration (what a kill during a save leaves)
    # must not be resumed from.
    partial = run_dir / "ckpt" / f"iter_{killed_at + 4:07d}"
    partial.mkdir(exist_ok=True)
    (partial / "common.pt").write_bytes(b"truncated")

    out = launch(2, over)
    assert f"resumed from {run_dir / 'ckpt' / f'iter_{killed_at:07d}'}" in out.stdout

    got = all_losses(run_dir / "metrics.jsonl")
    assert sorted(got) == list(range(1, iters + 1))
    for it in range(1, iters + 1):
        assert got[it] == {ref[it]["loss"]}, f"iteration {it}: {got[it]} vs uninterrupted {ref[it]['loss']}"
    final_valid = read_metrics(run_dir / "metrics.jsonl", "valid")[iters]["loss"]
    assert final_valid == read_metrics(ref_dir / "metrics.jsonl", "valid")[iters]["loss"]
