"""Data steps across two hosts: ``phase1`` and ``annotate`` under ``torchrun --nnodes 2`` (c10d rendezvous at
host a's address, gloo between the hosts) and under MPI across the hosts (MPICH's ``mpiexec`` started on
host a, its proxies started on each host through an ssh stand-in): every output byte-identical to one
process, and ``ranks.json`` of each stage names both hosts with the units each one did."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from megatron_snow.stages import RANKS_FILE
from tests.shipped_files import write_package

pytestmark = [pytest.mark.multihost, pytest.mark.distributed, pytest.mark.mpi, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PHASE1 = [str(REPO / "tools/preprocess/phase1.py"), "--config", str(REPO / "examples/tiny/data_phase1.yaml")]
ANNOTATE = [str(REPO / "tools/preprocess/annotate.py"), "--quiet", "batch_size=4", "docs_per_chunk=2",
            "max_length=40", "device=auto"]
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", "PMI_SIZE",
               "PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "MEGATRON_SNOW_NO_MPI")


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO), **extra)
    return env


def one_process(args: list[str], tmp: Path) -> None:
    p = subprocess.run([sys.executable, *args], cwd=tmp, env=_env(MEGATRON_SNOW_NO_MPI="1"), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]


def torchrun_two_hosts(two_hosts, args: list[str], rdzv_id: str) -> None:
    procs = [h.popen([sys.executable, "-m", "megatron_snow.torchrun", "--nnodes", "2", "--nproc-per-node", "1",
                      "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{two_hosts.a.addr}:29400", "--rdzv-id", rdzv_id,
                      "--rdzv-conf", "join_timeout=60", *args], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True) for h in two_hosts.hosts]
    for h, p in zip(two_hosts.hosts, procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"{h.name}: {out[-1000:]}{err[-3000:]}"


def mpi_two_hosts(two_hosts, args: list[str]) -> None:
    """mpiexec on host a; hydra starts one proxy per host through the ssh stand-in, one rank on each."""
    cmd = ["mpiexec", "-launcher", "ssh", "-launcher-exec", str(two_hosts.rsh()),
           "-hosts", f"{two_hosts.a.name},{two_hosts.b.name}", "-n", "2", "-ppn", "1", sys.executable, *args]
    p = two_hosts.a.run(cmd, cwd=REPO, env=_env(), timeout=300)
    assert p.returncode == 0, p.stdout[-1000:] + p.stderr[-3000:]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RANKS_FILE}


def _ranks(stage_dir: Path) -> list[dict]:
    info = json.loads((stage_dir / RANKS_FILE).read_text())
    assert info["world_size"] == 2
    return info["ranks"]


def _both_hosts_worked(two_hosts, stage_dir: Path, units: int) -> None:
    ranks = _ranks(stage_dir)
    assert sorted(r["host"] for r in ranks) == sorted(h.name for h in two_hosts.hosts), ranks
    assert units >= 2 and all(r["units"] for r in ranks), f"a host did no unit of {units}: {ranks}"
    assert sorted(u for r in ranks for u in r["units"]) == list(range(units))


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> Path:
    """One repository (the standard library's json package, 5 files) in 3 ingest shards of 2 files."""
    root = tmp_path_factory.mktemp("repos")
    write_package("json", root)  # CPython 3.11.7's json package, shipped in the repository
    return root


def _phase1_args(repos: Path, out: Path) -> list[str]:
    return [*PHASE1, f"output_dir={out}", f"ingest.sources=[{{kind: directory, path: {repos}, name: local, "
                                          "files_per_shard: 2}]"]


def test_phase1_and_annotate_across_two_hosts_equal_one_process(two_hosts, repos, tmp_path):
    outs = {k: tmp_path / k for k in ("one", "torch", "mpi")}
    one_process(_phase1_args(repos, outs["one"]), tmp_path)
    torchrun_two_hosts(two_hosts, _phase1_args(repos, outs["torch"]), "phase1")
    mpi_two_hosts(two_hosts, _phase1_args(repos, outs["mpi"]))
    one, torch_, mpi = (_files(outs[k]) for k in ("one", "torch", "mpi"))
    assert "07_grouped/manifest.json" in one
    assert one == torch_ == mpi  # every stage's output, funnel, stats and manifest, byte for byte
    for k in ("torch", "mpi"):  # every stage ran on both hosts, each host doing some of its units
        for stage in sorted(outs[k].glob("0[1-6]_*")):
            _both_hosts_worked(two_hosts, stage, len(list((outs["one"] / stage.name).glob("part-*"))))

    # annotate the phase-1 documents with a tiny BERT annotator (made here: no download)
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from megatron_snow import records
    from megatron_snow.phase2.tiny_encoder import make_tiny_encoder

    corpus = outs["one"] / "06_pii"
    texts = [r.content for r in records.iter_records(corpus)]
    encoder = make_tiny_encoder(texts, tmp_path / "encoder", hidden_size=32, max_positions=64)
    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(encoder, num_labels=2)
    model.save_pretrained(tmp_path / "annotator")
    AutoTokenizer.from_pretrained(encoder).save_pretrained(tmp_path / "annotator")
    scores = {k: tmp_path / f"scores-{k}" for k in ("one", "torch", "mpi")}

    def args(k: str) -> list[str]:
        return [*ANNOTATE, f"corpus={corpus}", f"model={tmp_path / 'annotator'}", f"out={scores[k]}"]

    one_process(args("one"), tmp_path)
    torchrun_two_hosts(two_hosts, args("torch"), "annotate")
    mpi_two_hosts(two_hosts, args("mpi"))
    one, torch_, mpi = (_files(scores[k]) for k in ("one", "torch", "mpi"))
    assert "manifest.json" in one and any(k.startswith("part-") for k in one)
    assert one == torch_ == mpi
    for k in ("torch", "mpi"):
        _both_hosts_worked(two_hosts, scores[k], len(records.list_shards(corpus)))


# The communicator of every data step (megatron_snow.dist) under torchrun across the hosts: meets, then
# exchanges objects until the other host goes away.
COMM_LOOP = """
import sys, time
from megatron_snow.dist import get_comm
comm = get_comm()
assert comm.allgather(comm.rank) == [0, 1]
print("met", flush=True)
while True:
    comm.allgather(comm.rank)
    time.sleep(0.05)
"""


@pytest.mark.parametrize("fault", ["process_dies", "host_dies"])
def test_a_data_step_losing_its_peer_ends_in_one_line(two_hosts, tmp_path, fault):
    script = tmp_path / "comm_loop.py"
    script.write_text(COMM_LOOP)
    procs = [h.popen([sys.executable, "-m", "megatron_snow.torchrun", "--nnodes", "2", "--nproc-per-node", "1",
                      "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{two_hosts.a.addr}:29400", "--rdzv-id", "loop",
                      "--rdzv-conf", "join_timeout=60", str(script)], cwd=REPO,
                     env=_env(MEGATRON_SNOW_DIST_TIMEOUT_S="5"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     text=True) for h in two_hosts.hosts]
    assert procs[0].stdout.readline().strip() == "met", procs[0].stderr.read()[-3000:]
    b = two_hosts.b
    if fault == "host_dies":
        b.link_down()  # nothing reaches host a any more: no FIN, no RST
    b.kill_all()
    t0 = time.time()
    _, err = procs[0].communicate(timeout=120)
    took = time.time() - t0
    assert procs[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    cause = ("no answer from another rank within the distributed timeout" if fault == "host_dies" else
             "another rank's connection closed: its process or its host died")
    assert len(errors) == 1 and errors[0].startswith(f"error: rank 0 of 2 on {two_hosts.a.name}: {cause}"), err[-3000:]
    assert errors[0].endswith("(MEGATRON_SNOW_DIST_TIMEOUT_S sets the timeout)")
    assert took < (5 if fault == "host_dies" else 0) + 30, f"host a took {took:.0f} s to end"
