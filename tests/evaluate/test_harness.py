"""The evaluators through our harness: right passes, wrong fails, and a hostile sample fails alone."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.evaluate.tasks import ALL_UNITS, canonical_solution


def _problems(benchmarks_dir, stem):
    return {r["task_id"]: r for r in read_benchmark(benchmark_path(benchmarks_dir, stem))}


def test_right_passes_wrong_fails_evalplus(score, benchmarks_dir):
    he = _problems(benchmarks_dir, "humanevalplus")
    unit = ALL_UNITS["humaneval+"]
    samples = {
        "HumanEval/2": {"solution": canonical_solution(unit, he["HumanEval/2"])},
        "HumanEval/23": {"completion": "    return len(string)\n"},  # completion: appended to the prompt
        "HumanEval/53": {"completion": "    return x - y\n"},  # wrong
        # right on the base inputs only: passes the base tests, fails the plus tests
        "HumanEval/4": {"solution": canonical_solution(unit, he["HumanEval/4"]) + textwrap.dedent(f"""
            _ref = mean_absolute_deviation
            def mean_absolute_deviation(*args):
                return _ref(*args) if list(args) in {he["HumanEval/4"]["base_input"]!r} else None
            """)},
        "HumanEval/32": {"solution": canonical_solution(unit, he["HumanEval/32"])},  # evalplus 0.3.1 bug, fixed
    }
    r = score("humaneval+", samples)
    st = {t: (v["base"], v["plus"]) for t, v in r.tasks.items()}
    assert st == {"HumanEval/2": ("pass", "pass"), "HumanEval/23": ("pass", "pass"),
                  "HumanEval/53": ("fail", "fail"), "HumanEval/4": ("pass", "fail"),
                  "HumanEval/32": ("pass", "pass")}
    assert r.scores == {"pass@1": 60.0, "base_pass@1": 80.0}
    assert r.network == "netns"


def test_humaneval32_fails_in_plain_evalplus(benchmarks_dir, tmp_path):
    """Why the fix exists: evalplus 0.3.1's own check fails the canonical HumanEval/32 (it must pass ours, above)."""
    p = _problems(benchmarks_dir, "humanevalplus")["HumanEval/32"]
    code = textwrap.dedent("""
        import json, sys
        from evalplus.eval import untrusted_check
        from evalplus.gen.util import trusted_exec
        p = json.load(open(sys.argv[1]))
        sol = p["prompt"] + p["canonical_solution"]
        exp, t = trusted_exec(sol, p["base_input"], p["entry_point"], record_time=True)
        print(untrusted_check("humaneval", sol, p["base_input"], p["entry_point"], exp, p["atol"], t,
                              fast_check=True, min_time_limit=4, gt_time_limit_factor=10)[0])
    """)
    (tmp_path / "p.json").write_text(json.dumps(p))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "p.json")], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "fail", out.stderr[-2000:]


def test_hostile_samples_fail_alone(score, benchmarks_dir, tmp_path):
    """Hang, 10 GB allocation, fork, file deletion, network: each would pass if the sandbox allowed it."""
    he = _problems(benchmarks_dir, "humanevalplus")
    unit = ALL_UNITS["humaneval+"]
    sentinel = tmp_path / "keep.txt"
    sentinel.write_text("still here")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.1)
    port = listener.getsockname()[1]

    def with_prefix(task_id: str, prefix: str) -> dict:
        return {"solution": prefix + "\n" + canonical_solution(unit, he[task_id])}

    p0 = he["HumanEval/0"]
    samples = {
        "HumanEval/0": {"solution": p0["prompt"] + "    while True:\n        pass\n"},  # hangs
        "HumanEval/2": with_prefix("HumanEval/2", "_x = bytearray(10 * 1024 ** 3)"),  # 10 GB
        "HumanEval/3": with_prefix("HumanEval/3", "import os\nif os.fork() == 0:\n    os._exit(0)"),
        "HumanEval/4": with_prefix("HumanEval/4", f"import os\nos.remove({str(sentinel)!r})"),
        "HumanEval/7": with_prefix("HumanEval/7", f"import socket\nsocket.create_connection(('127.0.0.1', {port}), 2)"),
        "HumanEval/23": {"solution": canonical_solution(unit, he["HumanEval/23"])},  # a good sample among them
    }
    r = score("humaneval+", samples, memory_mb=2048, min_time_limit=2.0)
    assert r.tasks["HumanEval/23"]["base"] == "pass" and r.tasks["HumanEval/23"]["plus"] == "pass"
    for t in ("HumanEval/0", "HumanEval/2", "HumanEval/3", "HumanEval/4", "HumanEval/7"):
        assert r.tasks[t]["base"] != "pass", t
    assert sentinel.read_text() == "still here"
    try:
        listener.accept()
        reached = True
    except socket.timeout:
        reached = False
    finally:
        listener.close()
    assert not reached, "a sample reached a socket outside the sandbox"


def test_evoeval_and_bigcodebench_right_and_wrong(score, benchmarks_dir):
    evo = _problems(benchmarks_dir, "evoeval_difficult")
    unit = ALL_UNITS["evoeval/difficult"]
    r = score("evoeval/difficult", {
        "EvoEval/0": {"solution": canonical_solution(unit, evo["EvoEval/0"])},
        "EvoEval/1": {"completion": "\n    return None\n"},
    })
    assert {t: v["base"] for t, v in r.tasks.items()} == {"EvoEval/0": "pass", "EvoEval/1": "fail"}
    assert r.scores == {"pass@1": 50.0}

    bcb = _problems(benchmarks_dir, "bigcodebench")
    unit = ALL_UNITS["bigcodebench/full"]
    ok, wrong = "BigCodeBench/97", "BigCodeBench/847"  # standard library only
    r = score("bigcodebench/full", {
        ok: {"solution": canonical_solution(unit, bcb[ok])},
        wrong: {"completion": "    return []\n"},
    })
    assert {t: v["base"] for t, v in r.tasks.items()} == {ok: "pass", wrong: "fail"}
    assert r.reference["reference_failed"] == []


def test_sample_that_ignores_its_alarm_is_killed(score, benchmarks_dir):
    """The per-input alarm can be ignored; the per-sample wall-clock cap kills the process from outside."""
    evo = _problems(benchmarks_dir, "evoeval_difficult")
    unit = ALL_UNITS["evoeval/difficult"]
    p = evo["EvoEval/0"]
    stubborn = p["prompt"] + ("\n    import signal\n    signal.signal(signal.SIGALRM, signal.SIG_IGN)\n"
                              "    while True:\n        pass\n")
    r = score("evoeval/difficult", {"EvoEval/0": {"solution": stubborn},
                                    "EvoEval/2": {"solution": canonical_solution(unit, evo["EvoEval/2"])}},
              sample_timeout_s=5.0)
    assert {t: v["base"] for t, v in r.tasks.items()} == {"EvoEval/0": "timeout", "EvoEval/2": "pass"}
