"""Where generated code runs: never in the caller's process, always under limits.

Layers, outermost first:

1. ``run_isolated``: scoring runs in a separate, lean Python process (no
   model, no torch: its address space stays small, so a memory limit on the
   samples means what it says), in its own session (its whole process group
   is killed at the end), with a fresh temporary working directory and
   ``TMPDIR``.
2. ``isolate_network`` (in that process, before any sample runs; bubblewrap's own under bwrap): a new
   network namespace (``unshare(CLONE_NEWNET)``; with a user namespace when
   not root), inherited by every sample process: no interface but its own
   loopback (a task may talk to itself on 127.0.0.1; the host's localhost
   and everything beyond are unreachable). Where the kernel refuses,
   Python-level sockets other than AF_UNIX are disabled in each sample
   process instead, and the results say so. Every process of the run dies
   with its parent (``PR_SET_PDEATHSIG``, set after every fork, the
   evaluators' own process pools included): killing the run kills its samples.
3. ``enter_filesystem_sandbox`` (each scoring worker, when ``isolation`` is
   "namespaces", the default): a mount namespace of its own in which every
   mount is read-only, the caller's home directories, the project checkout
   and ``deny`` are covered by empty tmpfs (the Python installation and its
   import paths are put back, read-only), /dev holds only null, zero, full,
   random, urandom and a private /dev/shm, and the work folder is a
   size-limited tmpfs. ``enter_sample_namespaces`` (each sample process):
   the sample continues as PID 1 of a new PID namespace (a fresh /proc: it
   sees and can signal only its own processes, which the kernel kills when
   it ends), in a new session, in its own tmpfs, as a uid of its own
   (``SAMPLE_UID_BASE`` + pid, so ``RLIMIT_NPROC`` counts it alone) keeping
   only the file-access capabilities of root (``KEEP_CAPS``: tasks written
   for root behave as under root), with ``no_new_privs``. The caller's
   environment reaches none of it but ``ENV_KEEP``. ``check_isolation``
   tries all this once before anything runs; where the kernel refuses, the
   run stops unless ``allow_unisolated`` (then layers 1, 2, 4 only).
   ``mechanism="bwrap"`` (``auto`` when not root): the scoring process itself
   runs in bubblewrap (``bwrap_command``: the machine read-only, home and
   deny list hidden, the project put back read-only for its imports, new
   PID and network namespaces, environment cleared to ``ENV_KEEP``); each
   sample then does the same as above in a user namespace of its own when not
   root (same uid, no capabilities; RLIMIT_NPROC counted in that namespace
   alone), covering the project again and making every other mount
   read-only.
4. Each sample in its own process, forked per sample by the evaluator
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
import re
import resource
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from megatron_snow.config import Config, ConfigError, setting

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000

# hidden from every sample besides the caller's home directory and project: other users' homes, the machine's
# password hashes and keys, container / Kubernetes secrets, credential folders (a sample keeps root's read access,
# so whatever is not hidden can be read; add $HF_HOME elsewhere, a cluster's credential folder... to sandbox.deny)
DEFAULT_DENY = ("~/.ssh", "~/.gnupg", "~/.netrc", "~/.git-credentials", "~/.pypirc", "~/.cache/huggingface",
                "~/.aws", "~/.config/gcloud", "~/.azure", "~/.kube", "~/.docker", "~/.config/gh",
                "/home", "/etc/shadow", "/etc/gshadow", "/etc/ssh", "/run/secrets", "/var/run/secrets")


MECHANISMS = ("auto", "namespaces", "bwrap", "none")


@dataclass
class SandboxConfig(Config):
    memory_mb: int = setting(8192, range="[64, inf)", help=(
        "address-space limit of each sample process (MB); it includes what the process inherits from the "
        "evaluator's worker (1-3 GB for MBPP+), so EvalPlus' 4096 fails the reference solution of Mbpp/255 here"))
    min_time_limit: float = setting(4.0, range="(0, inf)", help=(
        "seconds per test input at least (EvalPlus default 1: flakes under load)"))
    gt_time_limit_factor: float = setting(10.0, range="(0, inf)", help=(
        "x the reference solution's time per test input (EvalPlus default 4)"))
    sample_timeout_s: float = setting(600.0, range="(0, inf)", help=(
        "wall-clock cap per sample and test set, EvalPlus / EvoEval (theirs: 60)"))
    file_size_mb: int = setting(256, range="[1, inf)", help="largest file a sample may write (MB)")
    workers: int = setting(0, range=">= 0", help="samples scored in parallel; 0: half the CPUs (at least 1)")
    mechanism: Literal["auto", "namespaces", "bwrap", "none"] = setting("auto", help=(
        "how samples are isolated: namespaces (root: mount + PID namespaces made here), bwrap (bubblewrap, "
        "for any user), auto (namespaces as root, else bwrap), none (limits only; needs allow_unisolated=true)"))
    allow_unisolated: bool = setting(False, help=(
        "where the mechanism cannot isolate: run anyway with limits only (results say \"none (why)\"), not stop"))
    deny: list[str] = setting(factory=lambda: list(DEFAULT_DENY), help=(
        "paths hidden from samples besides the home directory and the project (\"~\": each home)"))
    max_processes: int = setting(256, range="[8, inf)", help=(
        "processes + threads of one sample (RLIMIT_NPROC, counted for that sample alone): fork bombs stop"))
    tmp_size_mb: int = setting(1024, range="[16, inf)", help=(
        "the sample's writable temporary directory (MB; a tmpfs: counts against memory)"))

    def validate(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise ConfigError(f"mechanism: expected one of {list(MECHANISMS)}, got {self.mechanism!r}")
        if self.mechanism == "none" and not self.allow_unisolated:
            raise ConfigError("mechanism=none runs generated code unisolated: it needs allow_unisolated=true")

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


# ---------------------------------------------------------------- filesystem and processes

class IsolationUnavailable(RuntimeError):
    """The kernel refused the namespaces (one line saying why and what to do)."""


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 32, 4096, 8192, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
_MOUNT_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME}
# open_tree / move_mount (Linux >= 5.2; the same numbers on every architecture)
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE, AT_FDCWD = 1, os.O_CLOEXEC, 0x8000, -100
MOVE_MOUNT_F_EMPTY_PATH = 4
DEV_NODES = ("null", "zero", "full", "random", "urandom")
# capabilities a sample keeps: root's file access (tasks written for root still behave as under root) and
# signals / low ports inside its own namespaces; not mount, ptrace, raw devices, rlimit raising, setuid...
KEEP_CAPS = (0, 1, 2, 3, 4, 5, 10)  # CHOWN, DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER, FSETID, KILL, NET_BIND_SERVICE
SAMPLE_UID_BASE = 0x7F000000  # a sample runs as SAMPLE_UID_BASE + its pid: no other process shares its uid

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _mount(source, target, fstype, flags, data=None) -> None:
    def enc(v):
        return v.encode() if isinstance(v, str) else v

    _check(_LIBC.mount(enc(source), enc(str(target)), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _clone_tree(path: str) -> int:
    """A detached copy of the mounts at ``path`` (to put back after a tmpfs has covered its parent)."""
    return _check(_LIBC.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(),
                                OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE), f"open_tree {path}")


def _attach_tree(fd: int, path: str) -> None:
    _check(_LIBC.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
           f"move_mount {path}")
    os.close(fd)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _mount_points(writable_only: bool = False) -> list[tuple[str, int]]:
    """(mount point, its per-mount flags) from /proc/self/mountinfo, parents first (only the read-write ones)."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            options = fields[5].split(",")
            if writable_only and "ro" in options:
                continue
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            flags = sum(_MOUNT_FLAGS.get(o, 0) for o in options)
            out.append((point, flags))
    return sorted(set(out), key=lambda pf: pf[0].count("/"))


def hidden_paths(cfg: SandboxConfig) -> list[str]:
    """What samples must not see, decided in the caller: its home (``$HOME`` and the account's), the project
    checkout this package runs from, and ``cfg.deny`` (``~`` in each home)."""
    homes = {os.path.realpath(os.path.expanduser("~"))}
    try:
        import pwd

        homes.add(os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir))
    except (ImportError, KeyError):
        pass
    hide = list(homes)
    project = _project_root()
    if project:  # a checkout, not site-packages
        hide.append(project)
    for d in cfg.deny:
        if d.startswith("~"):
            hide += [os.path.realpath(h + d[1:]) for h in homes]
        else:
            hide.append(os.path.realpath(d))
    return sorted({h for h in hide if h != "/" and os.path.lexists(h)})


def kept_paths(hide: list[str]) -> list[str]:
    """What stays visible (read-only) inside hidden folders: this Python and its import paths, except the
    project checkout's own folders (a virtual environment inside it stays: it is the Python, not the project)."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    project = str(Path(__file__).resolve().parents[2])
    keep = prefixes | {p for p in paths if not _under(p, project) or any(_under(p, x) for x in prefixes)}
    return sorted(k for k in keep if os.path.isdir(k) and any(_under(k, h) for h in hide) and k not in hide)


def _hide(path: str) -> None:
    if os.path.isdir(path):
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=1m")
    else:
        _mount("/dev/null", path, None, MS_BIND)  # a file: reads as empty


def enter_filesystem_sandbox(hide: list[str], work: str, tmp_size_mb: int) -> None:
    """This process (a scoring worker) gets its own mount namespace: the machine read-only, hidden paths empty,
    a minimal /dev, and one writable tmpfs, ``work`` (the samples' temporary directories live in it)."""
    _check(_LIBC.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the machine's mounts
    keep = [(k, _clone_tree(k)) for k in kept_paths(hide)]
    devs = [(f"/dev/{n}", _clone_tree(f"/dev/{n}")) for n in DEV_NODES if os.path.exists(f"/dev/{n}")]
    for h in hide:
        if not any(_under(h, other) and h != other for other in hide):
            _hide(h)
    for k, fd in keep:
        os.makedirs(k, exist_ok=True)
        _attach_tree(fd, k)
    for h in hide:  # a deny-listed path inside a kept one (a token file in the Python installation)
        if any(_under(h, k) for k, _ in keep):
            _hide(h)
    _mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=1m")
    for d, fd in devs:
        open(d, "w").close()
        _attach_tree(fd, d)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"/dev/{name}")
    os.mkdir("/dev/shm")
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_size_mb}m")
    os.makedirs(work, exist_ok=True)
    _mount("tmpfs", work, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={tmp_size_mb}m")
    os.mkdir(os.path.join(work, "sample"))  # where each sample's own tmpfs goes (enter_sample_namespaces)
    writable = (work, "/dev/shm")
    for point, flags in _mount_points():
        if point in writable or not os.path.exists(point):
            continue  # a mount point covered by a mount above it: unreachable
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError as e:
            raise IsolationUnavailable(f"cannot make {point} read-only: {e.strerror}") from None
    os.chdir(work)
    _forget_multiprocessing_tempdir()
    _ISOLATION.update(mode="namespaces", work=work)


def _forget_multiprocessing_tempdir() -> None:
    """multiprocessing caches its folder for sockets (Manager, as BigCodeBench's guard starts one in each sample);
    the one inherited is now covered or read-only: the next one is made under this process's temporary folder."""
    import multiprocessing.process

    multiprocessing.process.current_process()._config.pop("tempdir", None)


def _drop_privileges(uid: int) -> None:
    """Run as ``uid`` (no other process has it: RLIMIT_NPROC counts this sample alone) with KEEP_CAPS only."""
    pr_set_keepcaps, pr_capbset_drop, pr_set_no_new_privs = 8, 24, 38
    _check(_LIBC.prctl(pr_set_keepcaps, 1, 0, 0, 0), "prctl(PR_SET_KEEPCAPS)")
    for cap in range(64):
        if cap not in KEEP_CAPS and _LIBC.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            break  # past the kernel's last capability
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    mask = sum(1 << c for c in KEEP_CAPS)
    data = (Data * 2)(Data(mask, mask, 0), Data(0, 0, 0))
    _check(_LIBC.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")
    _check(_LIBC.prctl(pr_set_no_new_privs, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _privileged() -> bool:
    """CAP_SYS_ADMIN in effect (root, also inside bubblewrap started by root): mounts need no user namespace."""
    with open("/proc/self/status") as f:
        eff = next(line.split()[1] for line in f if line.startswith("CapEff:"))
    return bool(int(eff, 16) >> 21 & 1)


def _own_user_namespace() -> None:
    """Unprivileged: a user namespace of its own (the same uid inside) in which this process may mount; its
    processes are counted for RLIMIT_NPROC in this namespace alone (Linux >= 5.14)."""
    uid, gid = os.geteuid(), os.getegid()
    _check(_LIBC.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS), "unshare(CLONE_NEWUSER | CLONE_NEWPID)")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)


def _drop_all_capabilities() -> None:
    """Unprivileged sample: no capability at all (not even inside its own user namespace), no_new_privs."""
    pr_capbset_drop, pr_set_no_new_privs = 24, 38
    for cap in range(64):
        if _LIBC.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            break

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()
    _check(_LIBC.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")
    _check(_LIBC.prctl(pr_set_no_new_privs, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def _seal(writable: tuple[str, ...]) -> None:
    """bwrap mode: every mount still writable (the run folder, the evaluators' cache, bubblewrap's /dev) becomes
    read-only for this sample, keeping the flags a user namespace may not drop; one it may not remount is
    covered by an empty read-only tmpfs."""
    for point, flags in _mount_points(writable_only=True):
        if point in writable or _under(point, "/proc") or not os.path.exists(point):
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError:  # a mount that a user namespace may not remount (bwrap's /dev/pts): covered, empty
            _mount("tmpfs", point, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k")


def enter_sample_namespaces() -> None:
    """In a sample process: continue as PID 1 of a new PID namespace, in a new session, with a fresh /proc and
    its own empty temporary directory, as an unprivileged uid. The process that called this only waits for it
    and exits with its status (it is what the evaluator watches and kills on timeout; the sample dies with it,
    and everything the sample started dies with the sample, PID 1 of its namespace).

    Under bubblewrap (mode "bwrap") the machine is already read-only and the secrets hidden; here the sample
    also loses the project checkout (the scoring process imported from it), write access to every mount but its
    own, and, not root, every capability (in a user namespace of its own, where it may mount)."""
    work, bwrap = _ISOLATION["work"], _ISOLATION["mode"] == "bwrap"
    own_user = bwrap and not _privileged()
    uid = os.geteuid() if own_user else SAMPLE_UID_BASE + os.getpid()
    if own_user:
        _own_user_namespace()
    else:
        _check(_LIBC.unshare(CLONE_NEWPID | CLONE_NEWNS), "unshare(CLONE_NEWPID | CLONE_NEWNS)")
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        os._exit(0 if status == 0 else 1)
    os.setsid()
    if bwrap:
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # read-only where not privileged: the kernel lets a user namespace mount a proc only as restricted as bwrap's
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | (MS_RDONLY if own_user else 0))
    if bwrap:
        keep = [(k, _clone_tree(k)) for k in _ISOLATION["keep"]]
        for h in _ISOLATION["cover"]:
            _hide(h)
        for k, fd in keep:
            _attach_tree(fd, k)
    mine = os.path.join(work, "sample")
    _mount("tmpfs", mine, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={_LIMITS['tmp_bytes'] // 2**20}m")
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={_LIMITS['tmp_bytes'] // 2**20}m")
    if bwrap:
        _seal((mine, "/dev/shm"))
    else:
        _mount(None, work, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(mine)
    tempfile.tempdir = mine
    os.environ.update(TMPDIR=mine, HOME=mine)
    _forget_multiprocessing_tempdir()
    nproc = _LIMITS["processes"]
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if own_user:
        _drop_all_capabilities()
    else:
        _drop_privileges(uid)
    die_with_parent()  # a change of uid clears it


def _probe_sample(setup) -> str:
    """Run ``setup`` and then a sample's namespaces once in a throwaway child (its mounts die with it); "" if the
    sample ends up as built (PID 1, read-only root, not root), else why."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            setup()
            _LIMITS.update(processes=64)
            enter_sample_namespaces()
            ok = os.getpid() == 1 and os.statvfs("/").f_flag & os.ST_RDONLY and not _privileged()
            os.write(w, b"" if ok else b"the sample's namespaces are not as built")
        except BaseException as e:  # any failure is the answer
            os.write(w, f"{type(e).__name__}: {e}".encode()[:500])
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode()
    os.waitpid(pid, 0)
    return msg


def probe_isolation(hide: list[str], tmp_size_mb: int = 16) -> str:
    """Try the whole isolation once in a throwaway child (its mounts die with it); "" if it works, else why."""
    with tempfile.TemporaryDirectory(prefix="snow_probe_") as work:
        def setup():
            enter_filesystem_sandbox(hide, work, tmp_size_mb)
            _LIMITS.update(tmp_bytes=tmp_size_mb * 2**20)

        return _probe_sample(setup)


# ---------------------------------------------------------------- bubblewrap (any user)

def _project_root() -> str | None:
    """The checkout this package runs from (hidden from samples), or None when installed in site-packages."""
    project = Path(__file__).resolve().parents[2]
    return str(project) if (project / ".git").exists() or (project / "pyproject.toml").is_file() else None


def bwrap_command(hide: list[str], writable: list[str], env: dict, work: str, tmp_size_mb: int) -> list[str]:
    """bubblewrap around the scoring process: the machine read-only (``--ro-bind / /``), ``hide`` covered by
    empty tmpfs (a file: by /dev/null) except this Python and the project (put back read-only: the scoring
    process imports from it; each sample covers the project again), ``writable`` bound read-write (the run
    folder, the evaluators' cache), ``work`` a size-limited tmpfs, a minimal /dev, new PID and network
    namespaces with a fresh /proc, a new session, the environment cleared to ``env``, killed with its parent."""
    cmd = [_bwrap_path(), "--ro-bind", "/", "/", "--dev", "/dev", "--unshare-pid", "--proc", "/proc",
           "--unshare-net", "--die-with-parent", "--new-session", "--clearenv"]
    for k, v in sorted(env.items()):
        cmd += ["--setenv", k, v]
    project = _project_root()
    top = [h for h in hide if not any(_under(h, o) and h != o for o in hide)]
    for h in top:
        cmd += ["--tmpfs", h] if os.path.isdir(h) else ["--ro-bind", "/dev/null", h]
    back = sorted(set(kept_paths(hide)) | ({project} if project and any(_under(project, h) for h in top) else set()))
    for k in back:
        cmd += ["--ro-bind", k, k]
    for d in writable:
        cmd += ["--bind", d, d]
    for h in hide:  # a deny-listed path inside what was put back (a token file in the cache folder)
        if h != project and h not in back and any(_under(h, k) for k in back + writable):
            cmd += ["--tmpfs", h] if os.path.isdir(h) else ["--ro-bind", "/dev/null", h]
    cmd += ["--perms", "1777", "--size", str(tmp_size_mb * 2**20), "--tmpfs", work, "--chdir", work, "--"]
    return cmd


def _bwrap_path() -> str:
    import shutil

    return shutil.which("bwrap") or "bwrap"


def enter_bwrap_scoring(work: str, hide: list[str]) -> str:
    """In the scoring process started by ``bwrap_command``: what each sample must cover (the project, and the
    evaluators' cache when it lies in a hidden folder such as the home) and put back (this Python), where its
    directory goes; the network bubblewrap made ("netns": only a loopback)."""
    import socket

    project, cache = _project_root(), os.environ.get("XDG_CACHE_HOME", "")
    cover = [project] if project else []
    if cache and any(_under(os.path.realpath(cache), h) for h in hide):
        cover.append(os.path.realpath(cache))
    _ISOLATION.update(mode="bwrap", work=work, cover=cover, keep=kept_paths(cover) if cover else [])
    os.makedirs(os.path.join(work, "sample"), exist_ok=True)
    _forget_multiprocessing_tempdir()
    names = [n for _, n in socket.if_nameindex()]
    _NETWORK["mode"] = "netns" if names == ["lo"] else "python-guard"
    return _NETWORK["mode"]


def probe_sample(tmp_size_mb: int = 16) -> str:
    """In the scoring process inside bubblewrap: a sample's namespaces once, in a throwaway child; "" or why."""
    return _probe_sample(lambda: _LIMITS.update(tmp_bytes=tmp_size_mb * 2**20))


def _bwrap_probe_main() -> None:
    """``python -c`` inside bubblewrap (``probe_bwrap``): print "" if a sample's namespaces work there, else why."""
    enter_bwrap_scoring(os.environ["TMPDIR"], [])
    why = probe_sample()
    if not why and _NETWORK["mode"] != "netns":
        why = "bubblewrap made no network namespace"
    sys.stdout.write(why)


def probe_bwrap(hide: list[str]) -> str:
    """Start bubblewrap as the scoring process would be started, and a sample's namespaces inside it; "" if it
    works, else why (one line)."""
    if _bwrap_path() == "bwrap":
        return "bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="snow_probe_") as tmp:
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        env = scoring_environment(work, None)
        cmd = bwrap_command(hide, [], env, work, 16) + [
            sys.executable, "-c", "from megatron_snow.evaluate.sandbox import _bwrap_probe_main; _bwrap_probe_main()"]
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap: {e}"
        if p.returncode != 0:
            lines = [line for line in (p.stderr or "").strip().splitlines() if line.strip()]
            return lines[-1] if lines else f"bwrap exited with {p.returncode}"
        return p.stdout.strip()


# ---------------------------------------------------------------- per-sample setup

_LIMITS = {"memory_bytes": 8192 * 2**20, "file_bytes": 256 * 2**20, "tmp_bytes": 1024 * 2**20, "processes": 256}
# what enter_filesystem_sandbox / enter_bwrap_scoring achieved in this process ("namespaces" / "bwrap")
_ISOLATION: dict = {"mode": "none", "work": "", "cover": [], "keep": []}


def _sample_process_setup() -> None:
    """First thing in each sample process, before the evaluator's own guard."""
    die_with_parent()
    if _ISOLATION["mode"] in ("namespaces", "bwrap"):
        enter_sample_namespaces()
    mem, fsize = _LIMITS["memory_bytes"], _LIMITS["file_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_DATA, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if _NETWORK["mode"] != "netns":
        _block_python_sockets()


def _sample_done() -> None:
    """The sample ran in the child made by enter_sample_namespaces: end it here (its waiting parent exits)."""
    if _ISOLATION["mode"] in ("namespaces", "bwrap"):
        os._exit(0)


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
    _sample_done()


def _evoeval_execute(*args):
    _sample_process_setup()
    _ORIGINAL["evoeval"](*args)
    _sample_done()


def _evoeval_guard(maximum_memory_bytes=None):
    """EvoEval hard-codes 4 GiB; use ours."""
    _ORIGINAL["evoeval_guard"](maximum_memory_bytes=_LIMITS["memory_bytes"])


def _bigcodebench_execute(*args):
    _sample_process_setup()
    _ORIGINAL["bigcodebench"](*args)
    _sample_done()


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
    _LIMITS["tmp_bytes"] = cfg.tmp_size_mb * 2**20
    _LIMITS["processes"] = cfg.max_processes
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


ISOLATION_EXIT = 3  # the scoring process's exit code when it could not isolate the samples (result: {"error"})


# what the scoring process and its samples inherit of the caller's environment (no tokens, keys or credentials)
ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_NUMERIC", "LC_TIME", "TZ", "TERM", "PYTHONPATH",
            "VIRTUAL_ENV", "CONDA_PREFIX", "XDG_CACHE_HOME")
ENV_KEEP_PREFIXES = ("EVALPLUS_", "EVOEVAL_", "BIGCODEBENCH_", "HUMANEVAL_", "MBPP_")


def scoring_environment(work: str | Path, cache_dir: str | Path | None) -> dict:
    """The scoring process's whole environment: the names in ENV_KEEP / ENV_KEEP_PREFIXES, and ours."""
    env = {k: v for k, v in os.environ.items() if k in ENV_KEEP or k.startswith(ENV_KEEP_PREFIXES)}
    # the evaluators' reference caches stay where they were (a path, not a secret); HOME is the work folder
    env["XDG_CACHE_HOME"] = str(cache_dir) if cache_dir is not None else env.get(
        "XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               TMPDIR=str(work), HOME=str(work), MPLBACKEND="Agg", PYTHONHASHSEED="0")
    # the scoring process imports this very copy of megatron_snow (not another one installed elsewhere)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def resolve_mechanism(cfg: SandboxConfig) -> str:
    """``auto``: the namespaces made here as root, bubblewrap for any other user."""
    if cfg.mechanism != "auto":
        return cfg.mechanism
    return "namespaces" if os.geteuid() == 0 else "bwrap"


_NEEDS = {"namespaces": "needs root and Linux >= 5.2 (any user: sandbox.mechanism=bwrap, Debian package bubblewrap)",
          "bwrap": "needs bubblewrap (apt-get install bubblewrap) and unprivileged user namespaces, or root"}


def check_isolation(cfg: SandboxConfig, hide: list[str] | None = None) -> str:
    """The isolation samples will run under: "namespaces" or "bwrap", or "none" where allowed; tried once here
    (a throwaway sample); IsolationUnavailable (one line) otherwise."""
    mechanism = resolve_mechanism(cfg)
    if mechanism == "none":
        return "none"  # validate(): only with allow_unisolated
    hide = hidden_paths(cfg) if hide is None else hide
    why = probe_isolation(hide) if mechanism == "namespaces" else probe_bwrap(hide)
    if not why:
        return mechanism
    if cfg.allow_unisolated:
        return f"none ({why})"
    raise IsolationUnavailable(
        f"cannot isolate generated code with {mechanism} ({why}); {_NEEDS[mechanism]} "
        "(or pass sandbox.allow_unisolated=true to run it with limits only, as the calling user)")


def _wait_eof(fd: int, timeout: float) -> None:
    """Read ``fd`` until every holder has closed it (or ``timeout``), then close it."""
    import select

    try:
        while select.select([fd], [], [], timeout)[0] and os.read(fd, 4096):
            pass
    finally:
        os.close(fd)


def run_isolated(job: dict, cache_dir: str | Path | None = None, timeout: float | None = None) -> dict:
    """Run ``megatron_snow.evaluate.harness`` on ``job`` in a separate process; return its result.

    The process has its own session (its group is killed when it ends, so
    nothing a sample started outlives it), a fresh temporary working
    directory, the reduced environment of ``scoring_environment``, one thread
    per math library, the evaluators' caches under ``cache_dir`` when given
    (``XDG_CACHE_HOME``), the list of paths its samples must not see and the
    isolation ``check_isolation`` chose (with "bwrap", it runs in bubblewrap).
    """
    cfg = SandboxConfig(**job["sandbox"])
    hide = hidden_paths(cfg)
    isolation = resolve_mechanism(cfg)  # namespaces: tried in the scoring process (it makes them)
    if isolation == "bwrap":  # tried here: the scoring process starts inside it
        isolation = check_isolation(cfg, hide)
    with tempfile.TemporaryDirectory(prefix="snow_eval_") as tmp:
        tmp = Path(tmp)
        tmp.chmod(0o711)  # programs a sample starts (its uid, no capabilities) pass through to work/
        job_path, out_path = tmp / "job.json", tmp / "result.json"
        job = dict(job, hide=hide, isolation=isolation)
        job_path.write_text(json.dumps(job))
        work = tmp / "work"
        work.mkdir()
        env = scoring_environment(work, cache_dir)
        cmd = [sys.executable, "-m", "megatron_snow.evaluate.harness", str(job_path), str(out_path)]
        gone_r, gone_w = os.pipe()  # bwrap: EOF once every process of its PID namespace has ended
        if isolation == "bwrap":  # the scoring process itself in bubblewrap; its cache folder stays writable
            os.makedirs(env["XDG_CACHE_HOME"], exist_ok=True)
            cmd = (bwrap_command(hide, [str(tmp), env["XDG_CACHE_HOME"]], env, str(work), cfg.tmp_size_mb)[:-1]
                   + ["--sync-fd", str(gone_w), "--"] + cmd)
        proc = subprocess.Popen(cmd, cwd=work, env=env, start_new_session=True, preexec_fn=die_with_parent,
                                pass_fds=(gone_w,) if isolation == "bwrap" else ())
        os.close(gone_w)
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
            _wait_eof(gone_r, 60)  # bwrap: its namespace's processes die with it, not at once
        if rc is None:
            raise ScoringError(f"{job['unit']['name']}: scoring did not finish in {timeout:.0f} s")
        if rc == ISOLATION_EXIT and out_path.is_file():
            raise IsolationUnavailable(json.loads(out_path.read_text())["error"])
        if rc != 0 or not out_path.is_file():
            raise ScoringError(f"{job['unit']['name']}: scoring process exited with {rc}")
        return json.loads(out_path.read_text())


def sandbox_settings(cfg: SandboxConfig) -> dict:
    return asdict(cfg)
