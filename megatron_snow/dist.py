"""One communicator API for the data steps, whether run as 1 process, N MPI ranks or N torchrun processes.

Data steps run under ``mpiexec -n N`` locally or ``srun`` on Slurm (MPI through
mpi4py), or under ``torchrun --nproc-per-node N`` (GPU clusters launch annotate
that way: one process per GPU, no MPI), where the same API runs over
torch.distributed's gloo backend and its object collectives. ``get_comm()``
picks by how the process was started (see ``launcher()``). mpi4py and
torch.distributed are imported lazily, so a plain ``python tool.py`` is one rank,
training processes never initialise MPI, and no torch process group is made
under MPI.
"""
from __future__ import annotations

import atexit
import functools
import operator
import os
import sys
import time
import traceback
from datetime import timedelta
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# World-size variables set by MPI launchers (mpiexec/hydra, Open MPI, srun --mpi=pmi2/pmix).
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")
# What torchrun (and any launcher of torch's env:// rendezvous) gives each process.
_TORCH_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR")
# How long a torch collective may wait for the other processes. MPI waits for ever; a step's ranks meet
# after their whole share of units, which can take hours at scale, so the default is long.
TIMEOUT_VAR = "MEGATRON_SNOW_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 7 * 24 * 3600


def _under_mpi_launcher() -> bool:
    """True when this process is one of several MPI ranks (MEGATRON_SNOW_NO_MPI must not apply)."""
    sizes = [os.environ.get(v, "") for v in _SIZE_VARS]
    return any(v.isdigit() and int(v) > 1 for v in sizes) or "PMIX_RANK" in os.environ


def _started_by_torchrun() -> bool:
    """RANK / WORLD_SIZE / MASTER_ADDR set and no MPI launcher around; or a torchrun worker
    (TORCHELASTIC_RUN_ID), whose MPI variables, if any, are an outer ``srun``'s, not its own."""
    if not all(os.environ.get(v) for v in _TORCH_VARS):
        return False
    return "TORCHELASTIC_RUN_ID" in os.environ or not _under_mpi_launcher()


def launcher() -> str:
    """How this process was started: ``torchrun``, ``mpi`` (mpiexec/srun with several ranks) or ``none``."""
    if _started_by_torchrun():
        return "torchrun"
    return "mpi" if _under_mpi_launcher() else "none"


class Comm:
    """A thin wrapper over an mpi4py communicator (or a single process)."""

    backend = "none"  # "none" (one process), "mpi" or "torch"

    def __init__(self, mpi_comm: Any | None = None):
        self._c = mpi_comm
        self.rank = mpi_comm.Get_rank() if mpi_comm is not None else 0
        self.size = mpi_comm.Get_size() if mpi_comm is not None else 1
        if mpi_comm is not None:
            self.backend = "mpi"

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


class TorchComm(Comm):
    """The same API over torch.distributed (gloo, CPU object collectives), for processes started by torchrun.

    Objects are pickled like mpi4py's lowercase collectives do, so every method returns what the MPI
    one returns (``gather`` gives None off the root; ``alltoall`` is ``size`` scatter rounds, one per
    sender, so a rank holds what it sends and receives (padded to the round's largest item), not every
    rank's data as an allgather would).
    """

    backend = "torch"

    def __init__(self, group: Any = None):
        import torch.distributed as td

        self._td, self._group, self._c = td, group, None
        self.rank = td.get_rank(group)
        self.size = td.get_world_size(group)

    def barrier(self) -> None:
        self._td.barrier(group=self._group)

    def allgather(self, obj: T) -> list[T]:
        out: list[Any] = [None] * self.size
        self._td.all_gather_object(out, obj, group=self._group)
        return out

    def gather(self, obj: T, root: int = 0) -> list[T] | None:
        out: list[Any] | None = [None] * self.size if self.rank == root else None
        self._td.gather_object(obj, out, group=self._group, group_dst=root)
        return out

    def bcast(self, obj: T, root: int = 0) -> T:
        box = [obj if self.rank == root else None]
        self._td.broadcast_object_list(box, group=self._group, group_src=root)
        return box[0]

    def alltoall(self, objs: list[Any]) -> list[Any]:
        """objs[i] goes to rank i; returns what every rank sent to this one."""
        assert len(objs) == self.size, f"alltoall needs {self.size} items, got {len(objs)}"
        received: list[Any] = [None] * self.size
        for src in range(self.size):
            box: list[Any] = [None]
            self._td.scatter_object_list(box, list(objs) if self.rank == src else None, group=self._group,
                                         group_src=src)
            received[src] = box[0]
        return received

    def allreduce_sum(self, value: Any) -> Any:
        """The sum in rank order (``+``, as MPI.SUM does on Python objects)."""
        return functools.reduce(operator.add, self.allgather(value))

    def fail(self, message: str, code: int = 2) -> None:
        """Print a one-line error and leave at once (not through the exit meeting in ``close``); torchrun
        then ends the other processes (it stops every worker once one exits non-zero), so none is left
        waiting in a collective."""
        print(message, file=sys.stderr, flush=True)
        leave(code)


_COMM: Comm | None = None
_CREATED: list[Any] = []  # torch process groups made here: destroyed at exit (default group: None)


def get_comm() -> Comm:
    """The world communicator: torch.distributed under torchrun, MPI under mpiexec/srun, else one process."""
    global _COMM
    if _COMM is not None:
        return _COMM
    if _started_by_torchrun():
        _COMM = _torch_comm()
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


def _torch_comm() -> Comm:
    """A gloo communicator over every torchrun process (one process: no group at all).

    Rendezvous is torch's env:// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). In a process that already
    has a default group (a training process: NCCL), a gloo group over the same ranks is added instead.
    """
    try:
        size = int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise RuntimeError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None
    if size == 1:
        return Comm(None)
    import torch.distributed as td

    try:
        timeout = timedelta(seconds=float(os.environ.get(TIMEOUT_VAR, DEFAULT_TIMEOUT_S)))
    except ValueError:
        raise RuntimeError(f"{TIMEOUT_VAR}={os.environ[TIMEOUT_VAR]!r} is not a number of seconds") from None
    try:
        if td.is_initialized():
            group = td.new_group(backend="gloo", timeout=timeout)
        else:
            td.init_process_group(backend="gloo", timeout=timeout)
            group = None
    except Exception as e:  # the others never came (a host down, a wrong address): one line, not a traceback
        _say_lost_peer(e)
        raise
    _CREATED.append(group)
    if len(_CREATED) == 1:
        atexit.register(close)
        # after init_process_group, whose own hook (it prefixes tracebacks with the rank) it wraps
        _leave_on_uncaught_exception()
    return TorchComm(group)


# How long the exit meeting waits for the other processes before leaving anyway.
EXIT_MEETING_S = 600


def close() -> None:
    """Meet the other torch processes, then destroy the process groups made here (at a normal exit).

    Like MPI_Finalize, a normal exit is a meeting point: when every rank ends a step with the same error,
    the one that exits first would otherwise make torchrun kill rank 0 before it printed the line. The
    meeting gives up after EXIT_MEETING_S (a rank that left early by mistake); a rank that dies of an
    exception or calls ``fail`` leaves at once instead, without it.
    """
    global _COMM
    if not _CREATED:
        return
    import torch.distributed as td

    try:
        td.monitored_barrier(group=_CREATED[0], timeout=timedelta(seconds=EXIT_MEETING_S), wait_all_ranks=True)
    except RuntimeError as e:  # another rank is gone or late: leave all the same
        print(f"megatron_snow.dist: leaving without the other processes: {e}".replace("\n", " ")[:500],
              file=sys.stderr, flush=True)
    while _CREATED:
        group = _CREATED.pop()
        if td.is_initialized():
            td.destroy_process_group(group)
    if isinstance(_COMM, TorchComm):
        _COMM = None


def leave(code: int) -> None:
    """End this process now, skipping atexit (no exit meeting with ranks that will never come)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# What a lost peer looks like in a gloo (or store) error, and what it means for the user.
_LOST_PEER = (
    (("Timed out waiting", "Socket Timeout", "wait timeout"),
     "no answer from another rank within the distributed timeout: its host died or hangs, or the network "
     "between the hosts is down"),
    (("Connection closed by peer", "Connection reset by peer", "Broken pipe", "Socket closed"),
     "another rank's connection closed: its process or its host died"),
    (("No route to host", "Connection refused", "Network is unreachable", "failed to connect", "Connect timeout"),
     "cannot reach another rank's host: a wrong address or interface, or that host is down"),
)


def describe_comm_failure(exc: BaseException) -> str | None:
    """One line naming why a collective failed when another rank (or its host, or the network) is gone;
    None for any other error. Looks through the exception's causes (megatron may wrap them)."""
    import torch.distributed as td

    seen = exc
    while seen is not None:
        text = str(seen).strip().splitlines()[0] if str(seen).strip() else type(seen).__name__
        text = text.split(". This is typically caused")[0]  # gloo's advice after the cause
        if isinstance(seen, (td.DistError, RuntimeError)):
            for needles, meaning in _LOST_PEER:
                if any(n in text for n in needles):
                    return f"{meaning} ({text[:300]})"
        seen = seen.__cause__ or seen.__context__
    return None


def rank_and_host() -> str:
    """"rank R of W on HOST" for messages (torchrun's variables; rank 0 of 1 when unset)."""
    import socket

    return f"rank {os.environ.get('RANK', '0')} of {os.environ.get('WORLD_SIZE', '1')} on {socket.gethostname()}"


def _say_lost_peer(exc: Exception) -> None:
    """When ``exc`` means another rank, its host or the network is gone: say so in one line and leave."""
    lost = describe_comm_failure(exc)
    if lost:
        print(f"error: {rank_and_host()}: {lost} ({TIMEOUT_VAR} sets the timeout)", file=sys.stderr, flush=True)
        leave(1)


def _leave_on_uncaught_exception() -> None:
    """A torchrun process that dies of an exception shows it and exits at once; torchrun then stops the
    others, which would otherwise wait in their next collective (or in the exit meeting). When the cause
    is a lost peer (host died, network down, timeout), one line says so instead of a traceback."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        if isinstance(value, Exception):
            _say_lost_peer(value)
        previous(kind, value, tb)
        leave(1)

    sys.excepthook = hook


ABORT_GRACE_S = 0.5  # time for mpiexec to forward the dying rank's traceback


def _abort_on_uncaught_exception(mpi_comm: Any) -> None:
    """A rank that dies of an exception takes the job with it; otherwise the other ranks
    would wait in their next collective until the Slurm time limit.

    The traceback goes out in one write, and the rank waits a moment before the abort:
    MPICH's launcher forwards a rank's stderr through a pipe and stops forwarding once
    the abort tears the job down, so a traceback written line by line right before
    ``Abort`` arrived cut after its first lines (seen in CI)."""

    def hook(kind, value, tb):
        text = "".join(traceback.format_exception(kind, value, tb))
        sys.stderr.flush()
        try:
            os.write(2, text.encode(errors="replace"))
        except OSError:
            pass
        time.sleep(ABORT_GRACE_S)
        mpi_comm.Abort(1)

    sys.excepthook = hook


def my_items(n: int, comm: Comm | None = None) -> list[int]:
    """Round-robin share of ``n`` work items (shards) for this rank."""
    comm = comm or get_comm()
    return list(range(comm.rank, n, comm.size))
