"""MPI for the data stages: one API whether run as 1 process or N ranks.

Data stages run under ``mpiexec -n N`` locally or ``srun`` on Slurm. mpi4py is
imported lazily so that a plain ``python tool.py`` works as a single rank and
training processes (torchrun) never initialise MPI.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# World-size variables set by MPI launchers (mpiexec/hydra, Open MPI, srun --mpi=pmi2/pmix).
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


def _under_mpi_launcher() -> bool:
    """True when this process is one of several MPI ranks (MEGATRON_SNOW_NO_MPI must not apply)."""
    sizes = [os.environ.get(v, "") for v in _SIZE_VARS]
    return any(v.isdigit() and int(v) > 1 for v in sizes) or "PMIX_RANK" in os.environ


class Comm:
    """A thin wrapper over an mpi4py communicator (or a single process)."""

    def __init__(self, mpi_comm: Any | None = None):
        self._c = mpi_comm
        self.rank = mpi_comm.Get_rank() if mpi_comm is not None else 0
        self.size = mpi_comm.Get_size() if mpi_comm is not None else 1

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self._c is not None and self.size > 1:
            self._c.Barrier()

    def allgather(self, obj: T) -> list[T]:
        return self._c.allgather(obj) if self._c is not None and self.size > 1 else [obj]

    def gather(self, obj: T, root: int = 0) -> list[T] | None:
        if self._c is None or self.size == 1:
            return [obj]
        return self._c.gather(obj, root=root)

    def bcast(self, obj: T, root: int = 0) -> T:
        return self._c.bcast(obj, root=root) if self._c is not None and self.size > 1 else obj

    def alltoall(self, objs: list[Any]) -> list[Any]:
        """objs[i] goes to rank i; returns what every rank sent to this one."""
        assert len(objs) == self.size, f"alltoall needs {self.size} items, got {len(objs)}"
        return self._c.alltoall(objs) if self._c is not None and self.size > 1 else list(objs)

    def allreduce_sum(self, value: Any) -> Any:
        if self._c is None or self.size == 1:
            return value
        from mpi4py import MPI

        return self._c.allreduce(value, op=MPI.SUM)

    def fail(self, message: str, code: int = 2) -> None:
        """Print a one-line error and end the job.

        Under MPI a plain exit of one rank leaves the others waiting in their next
        collective for ever, so the whole job is aborted instead.
        """
        print(message, file=sys.stderr, flush=True)
        if self._c is not None and self.size > 1:
            self._c.Abort(code)
        sys.exit(code)

    def run_root_first(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0, then share its result with every rank."""
        result = fn() if self.is_root else None
        return self.bcast(result)


_COMM: Comm | None = None


def get_comm() -> Comm:
    """The world communicator; single-process when not launched through MPI."""
    global _COMM
    if _COMM is not None:
        return _COMM
    launched = _under_mpi_launcher()
    if os.environ.get("MEGATRON_SNOW_NO_MPI") == "1" and not launched:
        _COMM = Comm(None)
        return _COMM
    try:
        from mpi4py import MPI
    except ImportError as e:  # pragma: no cover - mpi4py is a hard dependency
        if launched:
            raise RuntimeError(f"launched under MPI but mpi4py cannot be imported: {e}") from e
        _COMM = Comm(None)
        return _COMM
    _COMM = Comm(MPI.COMM_WORLD)
    if _COMM.size > 1:
        _abort_on_uncaught_exception(MPI.COMM_WORLD)
    return _COMM


def _abort_on_uncaught_exception(mpi_comm: Any) -> None:
    """A rank that dies of an exception takes the job with it; otherwise the other ranks
    would wait in their next collective until the Slurm time limit."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        mpi_comm.Abort(1)

    sys.excepthook = hook


def my_items(n: int, comm: Comm | None = None) -> list[int]:
    """Round-robin share of ``n`` work items (shards) for this rank."""
    comm = comm or get_comm()
    return list(range(comm.rank, n, comm.size))
