"""Kill points for crash tests: SIGKILL this job at a named moment; inert unless the environment asks.

The code that writes durable state names its unsafe moments with ``point(name)`` (half a file
written, a shard written but not its marker, finalize done but no manifest, a checkpoint's files
written but not its metadata). A test then kills a run exactly there and checks that the same
command resumes to the same output::

    MEGATRON_SNOW_KILL="unit.shard_written:*@2"   SIGKILL at the 2nd hit of a point matching the pattern
    MEGATRON_SNOW_KILL_TRACE=/tmp/trace.txt        append every point hit, "NAME<TAB>PID" a line (a census
                                                   to draw random kill points from; which process did what)

Patterns are ``fnmatch`` globs over point names; hits are counted per process. With neither variable
set ``point`` returns at once and ``write_in_halves`` is one plain write.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import sys

KILL_ENV = "MEGATRON_SNOW_KILL"
TRACE_ENV = "MEGATRON_SNOW_KILL_TRACE"

_ROOT_PID = os.getpid()  # forked helpers (pool workers, checkpoint writers) kill this process too
_hits = 0


def _spec() -> tuple[str, int] | None:
    raw = os.environ.get(KILL_ENV)
    if not raw:
        return None
    pattern, _, n = raw.rpartition("@")
    if not pattern or not n.isdigit() or int(n) < 1:
        raise ValueError(f"{KILL_ENV}={raw!r}: expected PATTERN@N with N >= 1")
    return pattern, int(n)


def active() -> bool:
    return bool(os.environ.get(KILL_ENV) or os.environ.get(TRACE_ENV))


def point(name: str) -> None:
    """A moment where a kill must be survivable: recorded (trace) and maybe the end of this process."""
    if not active():
        return
    trace = os.environ.get(TRACE_ENV)
    if trace:
        fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{name.replace(chr(10), ' ')}\t{os.getpid()}\n".encode("utf-8", "surrogateescape"))
        finally:
            os.close(fd)
    spec = _spec()
    if spec is None or not fnmatch.fnmatchcase(name, spec[0]):
        return
    global _hits
    _hits += 1
    if _hits == spec[1]:
        kill(name)


def kill(name: str = "") -> None:
    """SIGKILL the job's process (and this forked helper, if it is one): no cleanup, no flush."""
    sys.stderr.write(f"faults: killed at {name}\n")
    sys.stderr.flush()
    if os.getpid() != _ROOT_PID:
        try:
            os.kill(_ROOT_PID, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def write_in_halves(f, data: bytes | str, name: str) -> None:
    """``f.write(data)``; under a kill test, the first half is flushed to the file before point ``name``,
    so a kill there leaves a torn file behind, as a crash in the middle of a write would."""
    if not active() or len(data) < 2:
        f.write(data)
        return
    half = len(data) // 2
    f.write(data[:half])
    f.flush()
    point(name)
    f.write(data[half:])


def read_trace(path) -> list[tuple[str, int]]:
    """(point name, pid) of every line of a trace file, in order."""
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return [(name, int(pid)) for name, _, pid in (line.rstrip("\n").rpartition("\t") for line in f)]
