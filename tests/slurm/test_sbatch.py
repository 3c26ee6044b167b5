"""The sbatch scripts on a real (single-node) Slurm: slurm/phase1.sh trains and checkpoints
through srun + torchrun; SIGUSR1 to the batch shell (what ``#SBATCH --signal=B:USR1@N`` sends
before the time limit) and ``scontrol requeue`` each make the trainer save at the next
iteration and the job come back and resume, ending with exactly the losses of an
uninterrupted job; slurm/preprocess_phase1.sh runs the data stage as 2 MPI tasks under srun."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from megatron_snow.training.tiny_data import build_byte_dataset
from tests.rank_checks import assert_every_rank_did_units, assert_every_rank_saved
from tests.tiny_repo import REPOSITORIES, write_repo
from tests.training.training_helpers import all_losses

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.mpi]

REPO = Path(__file__).resolve().parents[2]
ITERS = 40


def _train_args(work: Path, data: Path) -> list[str]:
    # One node, no GPU, 2 cores: the 64-node #SBATCH lines of phase1.sh overridden on the command line.
    return ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=2", "--gpus-per-node=0", "--time=10",
            f"--output={work}/job-%j.out", "slurm/phase1.sh",
            f"data.blend=[[1.0,{data}]]", f"data.index_cache_dir={work.parent}/cache", "data.seq_length=64",
            f"training.train_iters={ITERS}", "training.eval_interval=0", "training.global_batch_size=8",
            "checkpoint.save_interval=0", f"checkpoint.save={work}/ckpt", "logging.tensorboard_dir=null",
            "logging.log_interval=1", f"logging.metrics_file={work}/metrics.jsonl"]


def _env(work: Path) -> dict:
    return {"NPROC_PER_NODE": "2", "CONFIG": "examples/tiny/train_tiny.yaml", "LOG_DIR": str(work / "logs")}




def _wait_for_iteration(work: Path, it: int, slurm, job: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while True:
        done = all_losses(work / "metrics.jsonl") if (work / "metrics.jsonl").is_file() else {}
        if done and max(done) >= it:
            return
        state = slurm.job(job).get("JobState")
        assert state in ("PENDING", "RUNNING", "CONFIGURING"), f"job {job} ended before iteration {it}: {state}"
        assert time.time() < deadline, f"job {job}: no iteration {it} within {timeout} s"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def byte_data(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("slurm_data") / "code"
    assert build_byte_dataset(data, [REPO / "megatron_snow"]) >= 40
    return data


@pytest.fixture(scope="module")
def reference(slurm, byte_data, tmp_path_factory) -> Path:
    """An uninterrupted job of slurm/phase1.sh (also the test that it trains and checkpoints)."""
    work = tmp_path_factory.mktemp("slurm_ref") / "run"
    work.mkdir()
    job = slurm.sbatch(*_train_args(work, byte_data), env=_env(work))
    info = slurm.wait_done(job)
    out = (work / f"job-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED", out[-3000:]
    return work


def test_phase1_sbatch_trains_and_checkpoints(reference):
    out = next(reference.glob("job-*.out")).read_text()
    assert re.search(r"launch_train: job \d+ \(restart 0\): 1 nodes x 2 processes, rendezvous \S+:\d+", out)
    assert sorted(all_losses(reference / "metrics.jsonl")) == list(range(1, ITERS + 1))
    assert (reference / "ckpt" / "latest").read_text().strip() == str(ITERS)
    assert f"[train] iter {ITERS} | loss" in out  # rank 0's console is in the job's output
    # every rank's own log (torchrun --log-dir), one directory per job
    rank_logs = sorted(p.parent.name for p in (reference / "logs").glob("node0/*/attempt_0/*/stdout.log"))
    assert rank_logs == ["0", "1"]
    assert_every_rank_saved(reference / "ckpt" / f"iter_{ITERS:07d}", 2)  # and both trained
    assert json.loads((reference / "logs" / "exit_status.json").read_text())["status"] == "finished"


def test_usr1_before_the_time_limit_then_scontrol_requeue_lose_nothing(slurm, reference, byte_data, tmp_path):
    work = tmp_path / "run"
    work.mkdir()
    job = slurm.sbatch(*_train_args(work, byte_data), env=_env(work))
    # 1. SIGUSR1 to the batch shell only (what --signal=B:USR1@N sends): it asks the ranks to
    #    save and stop, then requeues the job itself.
    _wait_for_iteration(work, 2, slurm, job)
    slurm.run("scancel", "--batch", "--signal=USR1", str(job))
    slurm.wait(job, lambda j: int(j.get("Restarts", 0)) >= 1 and j.get("JobState") == "RUNNING", what="requeue")
    out = (work / f"job-{job}.out").read_text()
    first = int(re.search(r"stopped at iteration (\d+) of 40 \(SIGUSR1 received\); saved", out).group(1))
    assert "launch_train: SIGUSR1: time limit near" in out and f"requeueing job {job}" in out
    assert first < ITERS
    # 2. scontrol requeue of the running job: Slurm's SIGTERM, save at the next iteration, requeued by Slurm.
    _wait_for_iteration(work, first + 2, slurm, job)
    slurm.run("scontrol", "requeue", str(job))
    info = slurm.wait_done(job)
    out = (work / f"job-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED" and int(info["Restarts"]) == 2, out[-3000:]
    second = int(re.search(r"stopped at iteration (\d+) of 40 \(SIGTERM received\); saved", out).group(1))
    assert first < second < ITERS
    assert f"resumed from {work / 'ckpt' / f'iter_{first:07d}'} at iteration {first}" in out
    assert f"resumed from {work / 'ckpt' / f'iter_{second:07d}'} at iteration {second}" in out
    assert "Traceback" not in out  # every segment ended cleanly (torchrun leaves the signals to the ranks)
    # The same loss at every iteration as the uninterrupted job, whichever segment ran it.
    got, ref = all_losses(work / "metrics.jsonl"), all_losses(reference / "metrics.jsonl")
    assert sorted(got) == list(range(1, ITERS + 1))
    assert all(got[i] == ref[i] for i in ref), {i: (got[i], ref[i]) for i in ref if got[i] != ref[i]}


def test_preprocess_sbatch_runs_two_mpi_tasks_under_srun(slurm, tmp_path):
    write_repo(tmp_path / "repos")
    out_dir = tmp_path / "phase1"
    job = slurm.sbatch("--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", f"--output={tmp_path}/job-%j.out",
                       "slurm/preprocess_phase1.sh", f"output_dir={out_dir}",
                       f"ingest.sources=[{{kind: directory, path: {tmp_path / 'repos'}, name: local, "
                       "files_per_shard: 4}]", env={"CONFIG": "examples/tiny/data_phase1.yaml"})
    info = slurm.wait_done(job)
    log = (tmp_path / f"job-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED", log[-3000:]
    assert "launch_mpi: 2 ranks on 1 nodes" in log
    assert json.loads((out_dir / "07_grouped" / "manifest.json").read_text())["records"] == REPOSITORIES
    # both MPI tasks took part in every stage, and each finished units of it
    assert_every_rank_did_units(out_dir, 2, stages=7)
