"""A real single-node Slurm for the tests of slurm/*.sh (scripts/slurm_local.sh: munged,
slurmctld and slurmd on this machine, config and state in a scratch directory).

Installed by ``bash scripts/slurm_local.sh install`` (CI runs it; root and apt-get needed).
The tests skip, with the reason, only where Slurm is not installed and cannot be."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_local.sh"


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no two free consecutive ports")


class Slurm:
    """The running test cluster: environment for clients, and small helpers around them."""

    def __init__(self, conf: Path):
        self.conf = conf
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        self.env.update(SLURM_CONF=str(conf), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")

    def run(self, *cmd: str, check: bool = True) -> str:
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def sbatch(self, *args: str, env: dict | None = None) -> int:
        out = subprocess.run(["sbatch", "--parsable", *args], env={**self.env, **(env or {})}, cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return int(out.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> dict:
        """scontrol show job as a dict (JobState, Restarts, ExitCode, Reason, ...)."""
        out = self.run("scontrol", "-o", "show", "job", str(job_id))
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def wait(self, job_id: int, until, timeout: float = 240, what: str = "") -> dict:
        """Poll the job until ``until(job_dict)`` (a requeued job waits cred_expire + 1 = 11 s
        here before it starts again: scripts/slurm_local.sh)."""
        deadline = time.time() + timeout
        while True:
            info = self.job(job_id)
            if until(info):
                return info
            if time.time() > deadline:
                raise AssertionError(f"job {job_id}: {what or 'condition'} not reached in {timeout} s: {info}")
            time.sleep(0.2)

    def wait_done(self, job_id: int, timeout: float = 240) -> dict:
        return self.wait(job_id, lambda j: j.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT",
                                                                  "NODE_FAIL", "OUT_OF_MEMORY"),
                         timeout, "the end")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A running single-node Slurm (started here, stopped at the end of the session)."""
    if not shutil.which("sbatch"):
        can_install = os.geteuid() == 0 and shutil.which("apt-get")
        if not can_install:
            pytest.skip("Slurm is not installed and cannot be here (needs root and apt-get: "
                        "bash scripts/slurm_local.sh install)")
    work = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SNOW_SLURM_PORT": str(_free_port_pair())}
    proc = subprocess.run(["bash", str(SCRIPT), "start", str(work)], env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        if not shutil.which("sbatch"):
            pytest.skip(f"Slurm could not be installed: {proc.stderr.strip()}")
        raise AssertionError(f"scripts/slurm_local.sh start failed: {proc.stdout}{proc.stderr}")
    try:
        yield Slurm(work / "slurm.conf")
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(work)], env=env, capture_output=True, timeout=120)
