"""``evaluate`` run by a user who is not root: ``sandbox.mechanism=auto`` picks bubblewrap and isolation holds.

A throwaway account (``useradd``, removed afterwards) runs ``python -m
megatron_snow evaluate --samples`` on HumanEval+ with a hostile sample (reads
its owner's SSH key and the evaluator's environment, writes to its owner's
home and to the project, kills its parent), a sample that passes only if it
runs isolated (PID 1, read-only root, the key not there) and a correct one.
Needs root (to create the account; CI runs as root): skipped with one line
otherwise.

The account must be able to run this Python: where a folder on the way is
closed to others (the interpreter under root's home, CI's private temporary
folder), the command runs in a private mount namespace in which those folders
are empty tmpfs with only the interpreter, the virtual environment and the
checkout bound back. Nothing on the machine changes.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.evaluate.tasks import ALL_UNITS, canonical_solution
from tests.evaluate.test_sandbox_hostile import PROJECT, SECRET, _tree_hash


@pytest.fixture
def throwaway_user():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a throwaway account (useradd)")
    if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("setpriv")):
        pytest.skip("no useradd / userdel / setpriv here")
    name = "snowsbx" + uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def _processes_of(uid: int) -> list[str]:
    """Live processes of ``uid`` (a zombie runs nothing: bubblewrap's init, orphaned when bwrap ended, stays one
    until the machine's init reaps it)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except (OSError, ValueError):
            continue
        if int(status["Uid"].split()[1]) == uid and not status["State"].strip().startswith("Z"):
            out.append(f"{pid} {status['Name'].strip()}")
    return out


def _closed_folders(paths: list[str]) -> list[str]:
    """The top-most folders on the way to ``paths`` that other users cannot enter."""
    out = []
    for p in paths:
        parts = Path(p).parts
        for i in range(2, len(parts) + 1):
            a = str(Path(*parts[:i]))
            if not os.stat(a).st_mode & stat.S_IXOTH:
                if not any(a == o or a.startswith(o + "/") for o in out):
                    out.append(a)
                break
    return out


def _as_user(user, cmd: list[str], env: dict, stash: Path) -> list[str]:
    """``cmd`` as ``user``, with this Python and the checkout reachable (see the module docstring)."""
    needed = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, str(PROJECT))})
    closed = _closed_folders(needed)
    lines = ["set -e"]
    if closed:
        for i, n in enumerate(needed):
            (stash / str(i)).mkdir()
            lines.append(f"mount --rbind '{n}' '{stash / str(i)}'")
        lines += [f"mount -t tmpfs -o mode=755 tmpfs '{a}'" for a in closed]
        for i, n in enumerate(needed):
            lines += [f"mkdir -p '{n}'", f"mount --move '{stash / str(i)}' '{n}'"]
    lines.append(f'exec setpriv --reuid={user.pw_uid} --regid={user.pw_gid} --init-groups -- "$@"')
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", "\n".join(lines), "bash"] + cmd


def test_unprivileged_user_gets_bwrap_and_isolation(throwaway_user, benchmarks_dir):
    user = throwaway_user
    home = Path(user.pw_dir)
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "id_ed25519").write_text(SECRET)
    (home / "notes.txt").write_text("my notes")
    for p in [home / ".ssh", home / ".ssh" / "id_ed25519", home / "notes.txt"]:
        os.chown(p, user.pw_uid, user.pw_gid)
    work = Path(tempfile.mkdtemp(prefix="snow_unpriv_"))
    try:
        os.chown(work, user.pw_uid, user.pw_gid)
        unit = ALL_UNITS["humaneval+"]
        problems = {r["task_id"]: r for r in read_benchmark(benchmark_path(benchmarks_dir, "humanevalplus"))}
        hostile, proof, good = "HumanEval/2", "HumanEval/23", "HumanEval/0"
        attack = f"""
            import ctypes, io, os
            leaks = []
            try:
                leaks.append(io.open({str(home / ".ssh" / "id_ed25519")!r}).read())
            except OSError:
                pass
            for pid in ["1", str(os.getppid())] + os.listdir("/proc"):
                try:
                    text = io.open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace")
                except (OSError, ValueError):
                    continue
                if "SNOW_TEST_API_TOKEN" in text:
                    leaks.append(text)
            for target in ({str(home / ".bashrc")!r}, {str(PROJECT / "megatron_snow" / "escaped.py")!r}):
                try:
                    io.open(target, "a").write("x")
                    leaks.append("wrote " + target)
                except OSError:
                    pass
            if leaks:  # a leaked secret would reach the results (the test reads them)
                raise RuntimeError(" ".join(leaks))
            ctypes.CDLL(None).kill(os.getppid(), 9)
            raise RuntimeError("nothing leaked")
        """
        isolated = f"""
            import os
            assert os.getpid() == 1 and os.getuid() == {user.pw_uid}
            assert os.statvfs("/").f_flag & os.ST_RDONLY
            assert not os.path.exists({str(home / ".ssh" / "id_ed25519")!r})
            assert not os.path.exists({str(PROJECT / "megatron_snow")!r})
            assert "SNOW_TEST_API_TOKEN" not in os.environ
        """
        rows = [{"task_id": hostile, "solution": textwrap.dedent(attack) + canonical_solution(unit, problems[hostile])},
                {"task_id": proof, "solution": textwrap.dedent(isolated) + canonical_solution(unit, problems[proof])},
                {"task_id": good, "solution": canonical_solution(unit, problems[good])}]
        samples, out = work / "samples.jsonl", work / "out"
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
        os.chown(samples, user.pw_uid, user.pw_gid)
        watched = [home, PROJECT / "megatron_snow"]
        before = {str(t): _tree_hash(t) for t in watched}
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": str(PROJECT),
               "SNOW_TEST_API_TOKEN": SECRET}
        cmd = [sys.executable, "-m", "megatron_snow", "evaluate", "--samples", str(samples), "--benchmarks",
               "humaneval+", "--out", str(out), "--benchmarks-dir", str(benchmarks_dir),
               f"cache_dir={work / 'cache'}", "sandbox.workers=1", "sandbox.min_time_limit=2.0"]
        stash = work / "stash"
        stash.mkdir()
        p = subprocess.run(_as_user(user, cmd, env, stash), env=env, cwd=work, capture_output=True, text=True,
                           timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        res = json.loads((out / "results.json").read_text())
        assert res["settings"]["sandbox_isolation"]["humaneval+"] == "bwrap"
        tasks = json.loads((out / "results" / f"{unit.file_name}.json").read_text())["tasks"]
        assert tasks[hostile]["base"] != "pass"
        assert tasks[proof]["base"] == "pass" and tasks[proof]["plus"] == "pass", tasks[proof]
        assert tasks[good]["base"] == "pass" and tasks[good]["plus"] == "pass"
        assert {str(t): _tree_hash(t) for t in watched} == before
        for f in out.rglob("*"):
            if f.is_file():
                assert SECRET not in f.read_text(errors="replace"), f
        assert SECRET not in p.stdout + p.stderr
        assert _processes_of(user.pw_uid) == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
