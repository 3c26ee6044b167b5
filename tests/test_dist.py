"""megatron_snow.dist: one communicator API under torchrun (torch.distributed, gloo), mpiexec (MPI) and one process.

The collectives script at the bottom is run by real launchers: ``torchrun --nproc-per-node 2`` and
``mpiexec -n 2``. Each rank checks every collective against what it must return and writes what it
got; the two launchers' files must be equal (the same API behaves the same), and every rank must have
written its own.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
REPO = HERE.parents[1]
# Launcher variables that must not leak from the test's own environment into a launched job.
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
               "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS",
               "MEGATRON_SNOW_NO_MPI")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **extra)
    return env


def torchrun(args: list[str], cwd: Path, timeout: int = 120, **extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=clean_env(**extra))


def mpiexec(args: list[str], cwd: Path, timeout: int = 120, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mpiexec", "-n", "2", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=clean_env(**extra))


def _results(d: Path) -> list[dict]:
    return [json.loads((d / f"rank{r}.json").read_text()) for r in range(2)]


@pytest.mark.distributed
@pytest.mark.mpi
def test_every_collective_same_under_torchrun_and_mpiexec(tmp_path):
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not on PATH")
    t = torchrun([str(HERE), str(tmp_path / "torch")], tmp_path)
    assert t.returncode == 0, t.stderr[-3000:]
    # MASTER_ADDR / RANK / WORLD_SIZE exported around an MPI job (some sbatch scripts do): still MPI, no torch group
    m = mpiexec([sys.executable, str(HERE), str(tmp_path / "mpi")], tmp_path, MASTER_ADDR="localhost", RANK="0",
                WORLD_SIZE="2")
    assert m.returncode == 0, m.stderr[-3000:]
    torch_res, mpi_res = _results(tmp_path / "torch"), _results(tmp_path / "mpi")
    assert [(r["rank"], r["size"], r["backend"], r["launcher"]) for r in torch_res] == [
        (0, 2, "torch", "torchrun"), (1, 2, "torch", "torchrun")]
    assert [(r["rank"], r["size"], r["backend"], r["launcher"]) for r in mpi_res] == [
        (0, 2, "mpi", "mpi"), (1, 2, "mpi", "mpi")]
    assert all(r["torch_group_during_run"] is False for r in mpi_res)  # no torch process group under MPI
    assert all(r["torch_group_during_run"] is True for r in torch_res)
    assert all(r["torch_group_at_exit"] is False for r in torch_res + mpi_res)  # destroyed at exit
    for a, b in zip(torch_res, mpi_res):
        assert a["got"] == b["got"]


def test_one_process_comm_returns_what_two_ranks_would_for_one(tmp_path):
    """No launcher: a plain process is rank 0 of 1 and runs the same script (its checks hold for size 1)."""
    p = subprocess.run([sys.executable, str(HERE), str(tmp_path)], capture_output=True, text=True, timeout=120,
                       env=clean_env(MEGATRON_SNOW_NO_MPI="1"))
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads((tmp_path / "rank0.json").read_text())
    assert (res["rank"], res["size"], res["backend"], res["launcher"]) == (0, 1, "none", "none")
    assert res["torch_group_during_run"] is False


@pytest.mark.distributed
def test_an_uncaught_error_on_one_torchrun_process_ends_the_job(tmp_path):
    """Rank 1 dies before a barrier that rank 0 waits in: torchrun ends rank 0 (no hang), the error is shown."""
    script = tmp_path / "boom.py"
    script.write_text("from megatron_snow.dist import get_comm\nc = get_comm()\nassert c.backend == 'torch'\n"
                      "if c.rank == 1:\n    raise EOFError('rank 1 fails')\nc.barrier()\nprint('unreachable')\n")
    run = torchrun([str(script)], tmp_path, timeout=90, MEGATRON_SNOW_DIST_TIMEOUT_S="600")
    assert run.returncode != 0 and "rank 1 fails" in run.stderr and "unreachable" not in run.stdout


@pytest.mark.slow  # three torchrun launches
@pytest.mark.distributed
def test_stage_runner_under_torchrun_same_bytes_and_one_error_line(tmp_path):
    """The runner's whole protocol over torch.distributed (tests/test_stages.py's step, run as its own command
    line): the bytes of one process; an error on rank 1 ends both with rank 0's one line; stale output refused.

    torchrun exits 1 whatever code its processes exit with (here 1 and 2): the line says what happened."""
    from megatron_snow.stages import RANKS_FILE, run_step
    from megatron_snow.dist import Comm
    from tests.test_stages import Upper, UpperSettings, make_input

    step_cli = str(REPO / "tests" / "test_stages.py")
    inp = make_input(tmp_path / "in")
    run_step(Upper(UpperSettings(input=str(inp))), tmp_path / "one", Comm(None), progress=False)
    t = torchrun([step_cli, f"input={inp}", f"output={tmp_path / 'two'}"], tmp_path)
    assert t.returncode == 0, t.stderr[-3000:]
    files = {k: {str(p.relative_to(tmp_path / k)): p.read_bytes() for p in sorted((tmp_path / k).rglob("*"))
                 if p.is_file() and p.name != RANKS_FILE} for k in ("one", "two")}
    assert files["one"] == files["two"] and "manifest.json" in files["two"]
    ranks = json.loads((tmp_path / "two" / RANKS_FILE).read_text())
    assert [(r["rank"], r["world_size"], r["units"]) for r in ranks["ranks"]] == [(0, 2, [0, 2, 4]), (1, 2, [1, 3, 5])]

    # r5 is in unit 1, which rank 1 runs; every rank agrees on the error, rank 0 prints it once
    t = torchrun([step_cli, f"input={inp}", f"output={tmp_path / 'bad'}", "fail_on=r5"], tmp_path)
    line = f"upper: error: upper: unit 1 ({inp / 'part-00001.jsonl.gz'}): ValueError: boom at r5"
    assert t.returncode == 1 and (t.stdout + t.stderr).count(line) == 1, t.stderr[-3000:]
    assert "exitcode  : 1" in t.stderr and not (tmp_path / "bad" / "manifest.json").exists()
    t = torchrun([step_cli, f"input={inp}", f"output={tmp_path / 'two'}", "min_chars=3"], tmp_path)
    assert t.returncode == 1 and t.stderr.count("was made with other settings (min_chars: 10 -> 3)") == 1
    assert "exitcode  : 2" in t.stderr  # the processes exited 2 (bad input), as under MPI


@pytest.mark.parametrize("env, expected", [
    ({}, "none"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}, "torchrun"),
    ({"RANK": "0", "WORLD_SIZE": "2"}, "none"),  # no rendezvous address: not a torch launch
    ({"PMI_SIZE": "2"}, "mpi"),
    ({"PMI_SIZE": "2", "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "h"}, "mpi"),  # MPI wins over stray vars
    # a torchrun worker inside an srun --mpi=pmix step: the PMIx variables are the outer step's
    ({"PMIX_RANK": "0", "RANK": "3", "WORLD_SIZE": "8", "MASTER_ADDR": "h", "TORCHELASTIC_RUN_ID": "7"}, "torchrun"),
])
def test_launcher_is_read_from_the_environment(monkeypatch, env, expected):
    from megatron_snow import dist

    for k in LAUNCH_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert dist.launcher() == expected


# Texts gloo and the TCP store raised in these tests' runs (the multi-host ones, CI logs): each must read as a
# lost peer; an ordinary error must not (it keeps its traceback).
@pytest.mark.parametrize("text, meaning", [
    ("[../third_party/gloo/gloo/transport/tcp/pair.h:311] Connect timeout [none]", "cannot reach"),
    ("[../third_party/gloo/gloo/transport/tcp/pair.cc:144] Connection refused", "cannot reach"),
    ("[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:81] Timed out waiting 15000ms for recv "
     "operation to complete", "no answer"),
    ("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [10.231.0.2]:4321",
     "another rank's connection closed"),
    ("shape mismatch: [2, 3] vs [3, 2]", None),
])
def test_a_lost_peer_reads_as_one_line_and_other_errors_do_not(text, meaning):
    import torch.distributed as td

    from megatron_snow.dist import describe_comm_failure

    said = describe_comm_failure(td.DistBackendError(text))
    assert (said is None) if meaning is None else said.startswith(meaning)
    wrapped = RuntimeError("megatron step failed")
    wrapped.__cause__ = td.DistBackendError(text)  # megatron may wrap the backend's error
    assert describe_comm_failure(wrapped) == said


def test_cuda_without_index_means_this_local_rank(monkeypatch):
    """device=cuda (no index) on a torchrun process must be its local GPU, not every process on GPU 0."""
    import torch

    from megatron_snow.device import resolve_device

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        pytest.skip("no GPU here: the local-rank choice is checked where CUDA is present")
    monkeypatch.setenv("LOCAL_RANK", "1")
    n = torch.cuda.device_count()
    assert resolve_device("cuda") == torch.device("cuda", 1 % n) == resolve_device("auto")
    assert resolve_device("cuda:0") == torch.device("cuda", 0)


# -- the collectives script (run by the launchers above) ----------------------------------------------------
def _exercise(out_dir: Path) -> None:
    import atexit

    import torch.distributed as td

    from megatron_snow import dist

    out_dir.mkdir(parents=True, exist_ok=True)
    state: dict = {}

    def at_exit() -> None:  # registered before get_comm(): atexit runs it after dist's own close()
        state["torch_group_at_exit"] = td.is_available() and td.is_initialized()
        (out_dir / f"rank{state['rank']}.json").write_text(json.dumps(state, sort_keys=True))

    atexit.register(at_exit)
    c = dist.get_comm()
    r, n = c.rank, c.size
    state.update(rank=r, size=n, backend=c.backend, launcher=dist.launcher())
    assert c.is_root == (r == 0)
    assert dist.get_comm() is c
    got: dict = {}
    c.barrier()
    got["allgather"] = c.allgather({"rank": r, "sq": r * r, "text": "é" * r})
    assert got["allgather"] == [{"rank": i, "sq": i * i, "text": "é" * i} for i in range(n)]
    for root in (0, n - 1):
        g = c.gather((r, [r] * (r + 1)), root=root)
        assert g == ([(i, [i] * (i + 1)) for i in range(n)] if r == root else None), g
        got[f"gather_root{root}"] = g
        b = c.bcast({"from": r, "blob": bytes(range(256)) * 4000} if r == root else None, root=root)
        assert b["from"] == root and len(b["blob"]) == 1_024_000
        got[f"bcast_root{root}"] = b["from"]
    # unequal sizes, one large item: item i goes to rank i
    sent = [{"src": r, "dst": i, "payload": "x" * (1000 * (r + 1) * (i + 1) + (300_000 if (r, i) == (0, n - 1) else 0))}
            for i in range(n)]
    recv = c.alltoall(sent)
    assert [x["src"] for x in recv] == list(range(n)) and all(x["dst"] == r for x in recv)
    assert [len(x["payload"]) for x in recv] == [1000 * (i + 1) * (r + 1) + (300_000 if (i, r) == (0, n - 1) else 0)
                                                 for i in range(n)]
    got["alltoall"] = [(x["src"], x["dst"], len(x["payload"])) for x in recv]
    got["allreduce_int"] = c.allreduce_sum(r + 1)
    assert got["allreduce_int"] == n * (n + 1) // 2
    got["allreduce_list"] = c.allreduce_sum([r])  # '+' in rank order, as MPI.SUM on objects
    assert got["allreduce_list"] == list(range(n))
    got["allreduce_float"] = c.allreduce_sum(0.1 * (r + 1))
    got["run_root_first"] = c.run_root_first(lambda: {"made_by": r})
    assert got["run_root_first"] == {"made_by": 0}
    got["my_items"] = c.allgather(dist.my_items(7, c))
    assert sorted(i for mine in got["my_items"] for i in mine) == list(range(7))
    c.barrier()
    state["got"] = got
    state["torch_group_during_run"] = td.is_available() and td.is_initialized()


if __name__ == "__main__":
    _exercise(Path(sys.argv[1]))
