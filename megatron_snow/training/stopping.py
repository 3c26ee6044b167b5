"""Stopping early without losing work: signals and a wall-time budget.

Slurm sends SIGTERM to every process of a job before it kills it (scancel,
preemption, ``scontrol requeue``, the time limit; ``KillWait`` seconds later
comes SIGKILL) and, with ``#SBATCH --signal=B:USR1@N``, SIGUSR1 to the batch
shell N seconds before the time limit (slurm/launch_train.sh passes it on to
the ranks). The handlers here only note the signal; at every iteration
boundary the trainer asks ``requested()``, all ranks agree (one all-reduce of
two flags, so a signal that reached one rank stops all of them at the same
iteration), save, and exit 0. ``training.exit_duration_mins`` does the same
once the process has run that long.

When the environment names a file in ``SNOW_EXIT_STATUS``, rank 0 writes there
whether the run finished or stopped early (and why): the sbatch scripts
requeue the job after an early stop.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import torch

STATUS_ENV = "SNOW_EXIT_STATUS"
SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


def _process_start() -> float:
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - psutil missing or /proc unreadable: count from import
        return _IMPORTED


_IMPORTED = time.time()


class StopConditions:
    """Signals received (SIGTERM, SIGUSR1) and the wall-time budget, checked collectively."""

    def __init__(self, exit_duration_mins: float = 0.0):
        self.limit_s = exit_duration_mins * 60.0
        self.start = _process_start()
        self.received: int | None = None
        self.reason: str | None = None
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)

    def _note(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def requested(self) -> bool:
        """True on every rank once any rank got a signal or ran out of time (collective)."""
        if self.reason is not None:
            return True
        elapsed = time.time() - self.start
        local = [float(self.received or 0), float(bool(self.limit_s) and elapsed >= self.limit_s)]
        if torch.distributed.is_initialized():
            dev = torch.cuda.current_device() if torch.cuda.is_available() else "cpu"
            flags = torch.tensor(local, dtype=torch.float64, device=dev)
            torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
            local = flags.tolist()
        if local[0]:
            self.reason = f"{signal.Signals(int(local[0])).name} received"
        elif local[1]:
            self.reason = f"training.exit_duration_mins={self.limit_s / 60:g} reached after {elapsed / 60:.2f} min"
        return self.reason is not None


def write_status(status: str, iteration: int, reason: str | None = None) -> None:
    """Rank 0 tells the launcher how the run ended (only when SNOW_EXIT_STATUS names a file)."""
    path = os.environ.get(STATUS_ENV)
    if not path or int(os.environ.get("RANK", "0")) != 0:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"status": status, "iteration": iteration, "reason": reason}) + "\n")
    os.replace(tmp, p)
