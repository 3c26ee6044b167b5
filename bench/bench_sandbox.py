"""What the sample sandbox costs: ``evaluate`` on HumanEval+'s canonical solutions with and without it, one run.

    python bench/bench_sandbox.py [--repeats 1] [--workers 1]

Both sides score the same 164 programs through ``python -m megatron_snow
evaluate --samples`` with a warm reference cache (a first untimed run fills
it); "without" is ``sandbox.isolation=none sandbox.allow_unisolated=true``
(network namespace, limits and the evaluators' guards only). Prints wall and
CPU time (the evaluate process and all its children) per side and the ratios.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from megatron_snow.benchmarks import SHIPPED_DIR
from megatron_snow.evaluate.tasks import ALL_UNITS, canonical_solution, load_problems


def _run(samples: Path, out: Path, cache: Path, workers: int, isolated: bool) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "megatron_snow", "evaluate", "--samples", str(samples), "--benchmarks", "humaneval+",
           "--out", str(out), "--benchmarks-dir", str(SHIPPED_DIR), f"cache_dir={cache}",
           f"sandbox.workers={workers}"]
    if not isolated:
        cmd += ["sandbox.isolation=none", "sandbox.allow_unisolated=true"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    res = json.loads((out / "results.json").read_text())
    assert res["units"]["humaneval+"]["scores"]["pass@1"] == 100.0, res["units"]["humaneval+"]["scores"]
    assert res["settings"]["sandbox_isolation"]["humaneval+"] == ("namespaces" if isolated else "none")
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    a = ap.parse_args()
    unit = ALL_UNITS["humaneval+"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = tmp / "canonical.jsonl"
        samples.write_text("".join(json.dumps({"task_id": t, "solution": canonical_solution(unit, p)}) + "\n"
                                   for t, p in load_problems(unit, SHIPPED_DIR).items()))
        _run(samples, tmp / "warm", tmp / "cache", a.workers, True)  # fills the reference cache
        times: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
        for i in range(a.repeats):
            for isolated in (False, True):
                times[isolated].append(_run(samples, tmp / f"o{i}{isolated}", tmp / "cache", a.workers, isolated))
    for isolated, label in ((False, "without (limits + network namespace)"), (True, "with mount + PID namespaces")):
        print(f"{label:40s} wall {min(w for w, _ in times[isolated]):7.1f} s   "
              f"cpu {min(c for _, c in times[isolated]):7.1f} s")
    wall = min(w for w, _ in times[True]) / min(w for w, _ in times[False])
    cpu = min(c for _, c in times[True]) / min(c for _, c in times[False])
    print(f"ratio with / without: wall {wall:.2f}x, cpu {cpu:.2f}x (164 HumanEval+ canonical programs, "
          f"{a.workers} worker(s), best of {a.repeats})")


if __name__ == "__main__":
    main()
