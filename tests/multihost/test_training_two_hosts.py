"""Training across two hosts through slurm/torchrun_node.sh (torchrun --nnodes 2 --nproc-per-node 1, c10d
rendezvous at the first host's address, gloo over the link's interface given as SOCKET_IFNAME): DP=2 and
PP=2 give exactly the losses of the same run on one host with two processes; a checkpoint saved by both
hosts is resumed by both; each host's log names its rank. A wrong rendezvous address, an unreachable peer
and a host that dies mid-run each end within the configured timeout with one line naming the cause. Where a
node's hostname resolves to loopback (Debian's /etc/hosts), SOCKET_IFNAME is what makes it work."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training_helpers import launch, read_metrics, tiny_overrides
from twohosts import IFACE

pytestmark = [pytest.mark.multihost, pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PORT = "29400"  # each host has its own ports: nothing else on the machine can hold it


def _env(**extra: str) -> dict:
    launch_vars = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launch_vars and not k.startswith("SLURM_")}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""), OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO), NNODES="2", NPROC_PER_NODE="1", MASTER_PORT=PORT,
               SOCKET_IFNAME=IFACE)
    env.update(extra)
    return env


def start_nodes(two_hosts, overrides: list[str], log_dir: Path, rdzv_id: str, addr: dict | None = None,
                **extra: str) -> list[subprocess.Popen]:
    """slurm/torchrun_node.sh on each host, as a user runs it on each node (MASTER_ADDR: host a's address,
    or ``addr[host name]``)."""
    procs = []
    for h in two_hosts.hosts:
        env = _env(MASTER_ADDR=(addr or {}).get(h.name, two_hosts.a.addr), RDZV_ID=rdzv_id, LOG_DIR=str(log_dir),
                   **extra)
        procs.append(h.popen(["bash", str(REPO / "slurm" / "torchrun_node.sh"), *overrides], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 300) -> list[tuple[int, str, str]]:
    deadline = time.time() + timeout
    out = []
    for p in procs:
        o, e = p.communicate(timeout=max(1.0, deadline - time.time()))
        out.append((p.returncode, o, e))
    return out


def train_two_hosts(two_hosts, overrides, log_dir, rdzv_id) -> list[tuple[int, str, str]]:
    res = finish(start_nodes(two_hosts, overrides, log_dir, rdzv_id))
    for h, (rc, o, e) in zip(two_hosts.hosts, res):
        assert rc == 0, f"{h.name} failed ({rc}):\n{o[-2000:]}\n{e[-4000:]}"
    return res


def _ranks_named(two_hosts, res) -> None:
    """Each host's console names the rank it runs (and the two hosts run ranks 0 and 1)."""
    ranks = []
    for h, (_, _, err) in zip(two_hosts.hosts, res):
        m = re.search(rf"^\[rank(\d)\]:pretrain_gpt: rank \1 of 2 on {h.name} \(local rank 0\)", err, re.M)
        assert m, f"{h.name}'s log does not name its rank:\n{err[-2000:]}"
        ranks.append(int(m.group(1)))
    assert sorted(ranks) == [0, 1]


def _train_losses(path: Path) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["split"] == "train":
            out.setdefault(rec["iteration"], []).append(rec["loss"])
    return out


def test_dp2_across_two_hosts_equals_one_host_and_resumes(two_hosts, tiny_data, tmp_path):
    extra = {"training.train_iters": 6, "checkpoint.save_interval": 3}
    launch(2, tiny_overrides(tiny_data, tmp_path / "one", **{**extra, "checkpoint.save": "null"}))
    ref = read_metrics(tmp_path / "one" / "metrics.jsonl")

    run = tmp_path / "two"
    res = train_two_hosts(two_hosts, tiny_overrides(tiny_data, run, **extra), tmp_path / "logs", "dp2")
    _ranks_named(two_hosts, res)
    got = read_metrics(run / "metrics.jsonl")
    assert sorted(got) == list(range(1, 7))
    assert {i: got[i]["loss"] for i in got} == {i: ref[i]["loss"] for i in ref}
    assert read_metrics(run / "metrics.jsonl", "valid")[6]["loss"] == read_metrics(
        tmp_path / "one" / "metrics.jsonl", "valid")[6]["loss"]
    # each node's torchrun kept its rank's log under LOG_DIR/node<host>/
    assert all(list((tmp_path / "logs").glob(f"node{h.name}/*/attempt_0/0/stderr.log")) for h in two_hosts.hosts)

    # Resume across hosts: as if both hosts died after the save at iteration 3, the same command again.
    shutil.rmtree(run / "ckpt" / "iter_0000006")
    (run / "ckpt" / "latest").write_text("3")
    res = train_two_hosts(two_hosts, tiny_overrides(tiny_data, run, **extra), tmp_path / "logs", "dp2-resume")
    assert f"resumed from {run / 'ckpt' / 'iter_0000003'}" in "".join(o for _, o, _ in res)
    losses = _train_losses(run / "metrics.jsonl")
    assert {i: set(v) for i, v in losses.items()} == {i: {ref[i]["loss"]} for i in ref}
    assert [len(losses[i]) for i in range(1, 7)] == [1, 1, 1, 2, 2, 2]  # 4-6 ran twice, with the same losses


def test_pp2_across_two_hosts_equals_one_host(two_hosts, tiny_data, tmp_path):
    extra = {"training.train_iters": 4, "parallel.pipeline_model_parallel_size": 2, "training.micro_batch_size": 1,
             "checkpoint.save": "null"}
    launch(2, tiny_overrides(tiny_data, tmp_path / "one", **extra))
    train_two_hosts(two_hosts, tiny_overrides(tiny_data, tmp_path / "two", **extra), tmp_path / "logs", "pp2")
    ref, got = (read_metrics(tmp_path / d / "metrics.jsonl") for d in ("one", "two"))
    assert sorted(got) == [1, 2, 3, 4]
    assert {i: got[i]["loss"] for i in got} == {i: ref[i]["loss"] for i in ref}


def _one_line(err: str, prefix: str) -> str:
    """The one line starting with ``prefix`` (after torchrun's "[rankN]:"), and no traceback around it."""
    lines = [ln for ln in err.splitlines() if re.sub(r"^\[rank\d+\]:", "", ln).startswith(prefix)]
    assert len(lines) == 1, f"expected one line starting {prefix!r}:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.parametrize("fault", ["wrong_rendezvous_address", "unreachable_peer"])
def test_nodes_that_cannot_meet_end_within_the_rendezvous_timeout(two_hosts, tiny_data, tmp_path, fault):
    a, b = two_hosts.hosts
    if fault == "unreachable_peer":
        b.link_down()  # host b is up but packets between the hosts are dropped
    addr = {b.name: two_hosts.unused_addr()} if fault == "wrong_rendezvous_address" else None
    t0 = time.time()
    res = finish(start_nodes(two_hosts, tiny_overrides(tiny_data, tmp_path), tmp_path / "logs", "meet", addr=addr,
                             RDZV_JOIN_TIMEOUT="8", RDZV_READ_TIMEOUT="5"), timeout=120)
    took = time.time() - t0
    assert all(rc == 1 for rc, _, _ in res), [(rc, e[-1500:]) for rc, _, e in res]
    line_a = _one_line(res[0][2], "torchrun:")
    assert f"rendezvous at {a.addr}:{PORT} (id meet) timed out on {a.name}: not all 2 nodes joined within " \
           "join_timeout=8 s" in line_a
    line_b = _one_line(res[1][2], "torchrun:")
    wrong = two_hosts.unused_addr() if fault == "wrong_rendezvous_address" else a.addr
    assert f"{b.name} cannot reach the rendezvous store at {wrong}:{PORT} (id meet) within read_timeout=5 s" in line_b
    assert took < 8 + 40, f"the nodes took {took:.0f} s to give up (join_timeout 8 s)"
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_host_dying_mid_run_ends_the_other_within_the_distributed_timeout(two_hosts, tiny_data, tmp_path):
    over = tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 10000, "checkpoint.save": "null",
                                                  "parallel.distributed_timeout_minutes": 0.25})
    procs = start_nodes(two_hosts, over, tmp_path / "logs", "dies")
    deadline = time.time() + 180
    while not read_metrics(tmp_path / "metrics.jsonl"):
        assert all(p.poll() is None for p in procs), "a host ended before training started"
        assert time.time() < deadline, "no iteration within 180 s"
        time.sleep(0.2)
    # Host b dies without a word: its link goes first (no FIN, no RST reaches host a), then every process.
    b = two_hosts.b
    b.link_down()
    b.kill_all()
    t0 = time.time()
    rc, _, err = finish(procs[:1], timeout=120)[0]
    took = time.time() - t0
    assert rc == 1, err[-3000:]
    line = _one_line(err, "error:")
    assert re.match(rf"\[rank(\d)\]:error: rank \1 of 2 on {two_hosts.a.name}: no answer from another rank within "
                    r"the distributed timeout: its host died or hangs, or the network between the hosts is down",
                    line), line
    assert "parallel.distributed_timeout_minutes" in line
    assert re.search(rf"^torchrun: rank \d \(local rank 0\) on {two_hosts.a.name} exited with code 1; its own error "
                     "is above$", err, re.M), err[-3000:]
    assert 15 - 1 < took < 15 + 45, f"host a took {took:.0f} s to end (distributed timeout 15 s)"
    assert max(read_metrics(tmp_path / "metrics.jsonl")) < 10000


@pytest.mark.parametrize("two_hosts", [{"own_name_on_loopback": True}], indirect=True)
def test_socket_ifname_is_needed_where_a_hostname_resolves_to_loopback(two_hosts, tiny_data, tmp_path):
    """Debian's /etc/hosts maps a node's own name to 127.0.1.1: gloo, taking its address from the hostname,
    then offers loopback to the other host. Without SOCKET_IFNAME the run ends, without hanging, with one line
    naming the cause; with SOCKET_IFNAME (the cluster's interface) it trains."""
    over = tiny_overrides(tiny_data, tmp_path / "run", **{"training.train_iters": 2, "checkpoint.save": "null",
                                                          "parallel.distributed_timeout_minutes": 0.25})
    t0 = time.time()
    res = finish(start_nodes(two_hosts, over, tmp_path / "logs", "lo1", SOCKET_IFNAME="", RDZV_READ_TIMEOUT="10"),
                 timeout=180)
    took = time.time() - t0
    assert all(rc == 1 for rc, _, _ in res), [e[-2000:] for _, _, e in res]
    # every host ends with one line saying why (a rank's "error:", or its torchrun's when the other host's
    # agent, which held the rendezvous store, was gone first), none with a Python traceback
    said = [[ln for ln in e.splitlines() if re.match(r"(\[rank\d\]:)?(error|torchrun):", ln)] for _, _, e in res]
    assert all(said) and not any("Traceback" in e for _, _, e in res), [e[-3000:] for _, _, e in res]
    print(said)  # (shown with pytest -rP: what a user sees)
    lost = [ln for lines in said for ln in lines if "error:" in ln]
    assert any("cannot reach another rank's host: a wrong address or interface" in ln or
               "no answer from another rank within the distributed timeout" in ln for ln in lost), said
    # Which rank of gloo's pair connects and which waits to be connected varies from run to run: the connecting
    # one is refused at once (~45 s in all, start-up included); the waiting one gives up at gloo's "Connect
    # timeout", seen 75 s after it started waiting with a 15 s distributed timeout (~80 s in all)
    assert took < 15 + 60 + 60, f"the hosts took {took:.0f} s to give up (distributed timeout 15 s)"

    train_two_hosts(two_hosts, over, tmp_path / "logs", "lo2")  # SOCKET_IFNAME=snow0 (start_nodes' default)
    assert sorted(read_metrics(tmp_path / "run" / "metrics.jsonl")) == [1, 2]
