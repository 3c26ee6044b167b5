"""Where generated code runs: never in the caller's process, always under limits.

Layers, outermost first:

1. ``run_isolated``: scoring runs in a separate, lean Python process (no
   model, no torch: its address space stays small, so a memory limit on the
   samples means what it says), in its own session (its whole process group
   is killed at the end), with a fresh temporary working directory and
   ``TMPDIR``.
2. ``isolate_network`` (in that process, before any sample runs): a new
   network namespace (``unshare(CLONE_NEWNET)``; with a user namespace when
   not root), inherited by every sample process: no interface but its own
   loopback (a task may talk to itself on 127.0.0.1; the host's localhost
   and everything beyond are unreachable). Where the kernel refuses,
   Python-level sockets other than AF_UNIX are disabled in each sample
   process instead, and the results say so. Every process of the run dies
   with its parent (``PR_SET_PDEATHSIG``, set after every fork, the
   evaluators' own process pools included): killing the run kills its samples.
3. Each sample in its own process, forked per sample by the evaluator
   (``evalplus`` / ``evoeval`` / ``bigcodebench`` ``untrusted_check``), with a
   wall-clock limit per test input (``max(min_time_limit, factor x the
   reference solution's time)``), killed when over; the evaluators' own
   ``reliability_guard`` (address-space, data and stack rlimits; ``os.fork``,
   ``os.remove``, ``shutil.rmtree``, ``subprocess.Popen``... disabled; a
   temporary working directory). ``install_hooks`` wraps each evaluator's
   per-sample function so that our settings win: one memory limit for all
   three (EvoEval hard-codes 4 GiB; BigCodeBench defaults to 30 GiB), a file
   size limit, no core dumps.

Two corrections to the evaluators (documented; no site-packages edit):

- Per-sample cap: each evaluator caps the whole run of one sample at
  ``$<NAME>_TIMEOUT_PER_TASK`` (default 60 s for EvalPlus / EvoEval, 240 s for
  BigCodeBench), but reads the variable as a string and compares it with a
  number, so setting it breaks them. 60 s is less than the reference solution
  of MBPP/599 needs on a loaded 2-core machine (88 s seen for its 88 plus
  inputs), so canonical solutions failed by timeout. ``install_hooks`` gives
  each evaluator module an ``os`` whose ``getenv`` returns our
  ``sample_timeout_s`` as a number for that variable (BigCodeBench: its own
  240 s, which it uses as a floor) (the module-level ``os``
  is used only by those ``getenv`` calls; the sample functions import their own).
- HumanEval/32 (``find_zero``) has a special oracle whose ``continue`` skips the
progress counter, so every solution fails, canonical included (fixed
upstream after 0.3.1). ``_evalplus_execute`` applies the fixed rule: when the
sample process ended in success and no input was counted, every input passed
(a failing input is counted, and in fast-check mode also ends the process
with a failure).
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000


@dataclass
class SandboxConfig:
    # address-space limit of each sample process; it includes what the process inherits from the evaluator's
    # worker (1-3 GB for MBPP+), so EvalPlus' 4096 fails the reference solution of Mbpp/255 here
    memory_mb: int = 8192
    min_time_limit: float = 4.0  # seconds per test input at least (EvalPlus default 1: flakes under load)
    gt_time_limit_factor: float = 10.0  # x the reference solution's time (EvalPlus default 4)
    sample_timeout_s: float = 600.0  # wall-clock cap per sample and test set, EvalPlus / EvoEval (theirs: 60)
    file_size_mb: int = 256  # largest file a sample may write
    workers: int = 0  # samples scored in parallel; 0: half the CPUs (at least 1)

    RANGES: ClassVar[dict[str, str]] = {"memory_mb": "[64, inf)", "min_time_limit": "(0, inf)",
                                        "gt_time_limit_factor": "(0, inf)", "sample_timeout_s": "(0, inf)",
                                        "file_size_mb": "[1, inf)", "workers": ">= 0"}

    def n_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, (os.cpu_count() or 2) // 2)


# ---------------------------------------------------------------- network

_NETWORK = {"mode": "none"}  # what isolate_network achieved in this process


def _loopback_up() -> None:
    """Bring up the namespace's own loopback: tasks that talk to themselves on 127.0.0.1 work (nothing else)."""
    import fcntl
    import socket
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH", fcntl.ioctl(s, siocgifflags, struct.pack("16sH", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH", b"lo", flags | iff_up))


def isolate_network() -> str:
    """Put this process (and its future children) in a new network namespace with only its own loopback."""
    libc = ctypes.CDLL(None, use_errno=True)
    for flags in (CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET):
        if libc.unshare(flags) == 0:
            try:
                _loopback_up()
            except OSError:
                pass  # loopback stays down: no network at all
            _NETWORK["mode"] = "netns"
            return "netns"
    _NETWORK["mode"] = "python-guard"
    return "python-guard"


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (no orphaned sample outlives a killed run)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _block_python_sockets() -> None:
    """Fallback when no namespace could be made: only AF_UNIX sockets can be created."""
    import socket

    base = socket.socket

    class NoNetworkSocket(base):  # type: ignore[misc, valid-type]
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):
            if fileno is None and family in (-1, socket.AF_INET, socket.AF_INET6):
                raise PermissionError("network access is disabled in the evaluation sandbox")
            super().__init__(family, type, proto, fileno)

    socket.socket = NoNetworkSocket


# ---------------------------------------------------------------- per-sample setup

_LIMITS = {"memory_bytes": 8192 * 2**20, "file_bytes": 256 * 2**20}


def _sample_process_setup() -> None:
    """First thing in each sample process, before the evaluator's own guard."""
    die_with_parent()
    mem, fsize = _LIMITS["memory_bytes"], _LIMITS["file_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _NETWORK["mode"] != "netns":
        _block_python_sockets()


_ORIGINAL: dict = {}


def _evalplus_execute(dataset, entry_point, code, inputs, expected, time_limits, atol, fast_check,
                      stat, details, progress):
    _sample_process_setup()
    _ORIGINAL["evalplus"](dataset, entry_point, code, inputs, expected, time_limits, atol, fast_check,
                          stat, details, progress)
    # HumanEval/32 fix (see the module docstring): success with nothing counted = every input passed.
    from evalplus.eval import _SUCCESS

    if dataset == "humaneval" and entry_point == "find_zero" and stat.value == _SUCCESS and progress.value == 0:
        for i in range(len(inputs)):
            details[i] = True
        progress.value = len(inputs)


def _evoeval_execute(*args):
    _sample_process_setup()
    _ORIGINAL["evoeval"](*args)


def _evoeval_guard(maximum_memory_bytes=None):
    """EvoEval hard-codes 4 GiB; use ours."""
    _ORIGINAL["evoeval_guard"](maximum_memory_bytes=_LIMITS["memory_bytes"])


def _bigcodebench_execute(*args):
    _sample_process_setup()
    _ORIGINAL["bigcodebench"](*args)


class _NumericEnv:
    """The ``os`` module as an evaluator module sees it: ``getenv`` gives numbers for the names we set."""

    def __init__(self, values: dict):
        self._values = values

    def getenv(self, key, default=None):
        return self._values[key] if key in self._values else os.getenv(key, default)

    def __getattr__(self, name):
        return getattr(os, name)


def install_hooks(cfg: SandboxConfig, harness: str) -> None:
    """Wrap the evaluator's per-sample function (module attribute, looked up when each sample starts)."""
    _LIMITS["memory_bytes"] = cfg.memory_mb * 2**20
    _LIMITS["file_bytes"] = cfg.file_size_mb * 2**20
    if harness in ("evalplus", "evoeval") and "evalplus" not in _ORIGINAL:
        import evalplus.eval

        _ORIGINAL["evalplus"] = evalplus.eval.unsafe_execute
        evalplus.eval.unsafe_execute = _evalplus_execute
        evalplus.eval.os = _NumericEnv({"EVALPLUS_TIMEOUT_PER_TASK": cfg.sample_timeout_s,
                                        "EVALPLUS_MAX_MEMORY_BYTES": _LIMITS["memory_bytes"]})
    if harness == "evoeval" and "evoeval" not in _ORIGINAL:
        import evoeval.eval_test

        _ORIGINAL["evoeval"] = evoeval.eval_test.unsafe_execute
        _ORIGINAL["evoeval_guard"] = evoeval.eval_test.reliability_guard
        evoeval.eval_test.unsafe_execute = _evoeval_execute
        evoeval.eval_test.reliability_guard = _evoeval_guard
        evoeval.eval_test.os = _NumericEnv({"EVOEVAL_TIMEOUT_PER_TASK": cfg.sample_timeout_s})
    if harness == "bigcodebench" and "bigcodebench" not in _ORIGINAL:
        import bigcodebench.eval

        _ORIGINAL["bigcodebench"] = bigcodebench.eval.unsafe_execute
        bigcodebench.eval.unsafe_execute = _bigcodebench_execute
        # BigCodeBench's cap is a floor (max with the reference time), 240 s: kept as upstream has it.
        bigcodebench.eval.os = _NumericEnv({"BIGCODEBENCH_TIMEOUT_PER_TASK": bigcodebench.eval.TIMEOUT_LIMIT})


# ---------------------------------------------------------------- the scoring process

class ScoringError(RuntimeError):
    """The scoring process failed (not a sample: the evaluator itself)."""


def run_isolated(job: dict, cache_dir: str | Path | None = None, timeout: float | None = None) -> dict:
    """Run ``megatron_snow.evaluate.harness`` on ``job`` in a separate process; return its result.

    The process has its own session (its group is killed when it ends, so
    nothing a sample started outlives it), a fresh temporary working
    directory, one thread per math library, and the evaluators' caches under
    ``cache_dir`` when given (``XDG_CACHE_HOME``).
    """
    with tempfile.TemporaryDirectory(prefix="snow_eval_") as tmp:
        tmp = Path(tmp)
        job_path, out_path = tmp / "job.json", tmp / "result.json"
        job_path.write_text(json.dumps(job))
        work = tmp / "work"
        work.mkdir()
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                   TOKENIZERS_PARALLELISM="false", TMPDIR=str(work), MPLBACKEND="Agg", PYTHONHASHSEED="0")
        if cache_dir is not None:
            env["XDG_CACHE_HOME"] = str(cache_dir)
        # the scoring process imports this very copy of megatron_snow (not another one installed elsewhere)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        cmd = [sys.executable, "-m", "megatron_snow.evaluate.harness", str(job_path), str(out_path)]
        proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True, preexec_fn=die_with_parent)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        if rc is None:
            raise ScoringError(f"{job['unit']['name']}: scoring did not finish in {timeout:.0f} s")
        if rc != 0 or not out_path.is_file():
            raise ScoringError(f"{job['unit']['name']}: scoring process exited with {rc}")
        return json.loads(out_path.read_text())


def sandbox_settings(cfg: SandboxConfig) -> dict:
    return asdict(cfg)
