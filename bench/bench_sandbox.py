"""What the sample sandbox costs: ``evaluate`` on HumanEval+'s canonical solutions under each mechanism.

    python bench/bench_sandbox.py [--repeats 1] [--workers 1] [--mechanisms none,namespaces,bwrap] [--json FILE]

Every mechanism scores the same 164 programs through ``python -m
megatron_snow evaluate --samples`` with a warm reference cache (a first
untimed run fills it); "none" is ``sandbox.mechanism=none
sandbox.allow_unisolated=true`` (network namespace, limits and the
evaluators' guards only), "namespaces" the mount + PID namespaces made as
root, "bwrap" bubblewrap. Prints wall and CPU time (the evaluate process and
all its children) per mechanism and the ratios to the first one; CPU under
bwrap is not measured (the scoring process's time does not reach us through
bubblewrap's init: "nan").
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import run_info  # noqa: E402

from megatron_snow.benchmarks import SHIPPED_DIR
from megatron_snow.evaluate.tasks import ALL_UNITS, canonical_solution, load_problems


def _run(samples: Path, out: Path, cache: Path, workers: int, mechanism: str) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "megatron_snow", "evaluate", "--samples", str(samples), "--benchmarks", "humaneval+",
           "--out", str(out), "--benchmarks-dir", str(SHIPPED_DIR), f"cache_dir={cache}",
           f"sandbox.workers={workers}", f"sandbox.mechanism={mechanism}"]
    if mechanism == "none":
        cmd += ["sandbox.allow_unisolated=true"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if mechanism == "bwrap":  # bubblewrap's init in the PID namespace does not pass its children's CPU time on
        cpu = float("nan")
    res = json.loads((out / "results.json").read_text())
    assert res["units"]["humaneval+"]["scores"]["pass@1"] == 100.0, res["units"]["humaneval+"]["scores"]
    assert res["settings"]["sandbox_isolation"]["humaneval+"] == mechanism
    return wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--mechanisms", default="none,namespaces,bwrap",
                    help="comma-separated sandbox.mechanism values; ratios are to the first")
    ap.add_argument("--json", type=Path, help="write the run here (docs/results/sandbox_cost.json is such a run: "
                                              "tests/test_claims.py rebuilds the README's sentence from it)")
    a = ap.parse_args()
    load_start = os.getloadavg()[0]
    mechanisms = a.mechanisms.split(",")
    unit = ALL_UNITS["humaneval+"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        samples = tmp / "canonical.jsonl"
        problems = load_problems(unit, SHIPPED_DIR)
        samples.write_text("".join(json.dumps({"task_id": t, "solution": canonical_solution(unit, p)}) + "\n"
                                   for t, p in problems.items()))
        _run(samples, tmp / "warm", tmp / "cache", a.workers, mechanisms[-1])  # fills the reference cache
        times: dict[str, list[tuple[float, float]]] = {m: [] for m in mechanisms}
        for i in range(a.repeats):
            for m in mechanisms:
                times[m].append(_run(samples, tmp / f"o{i}{m}", tmp / "cache", a.workers, m))
    best = {m: (min(w for w, _ in times[m]), min(c for _, c in times[m])) for m in mechanisms}
    base = mechanisms[0]
    for m in mechanisms:
        print(f"{m:12s} wall {best[m][0]:7.1f} s   cpu {best[m][1]:7.1f} s   "
              f"ratio to {base}: wall {best[m][0] / best[base][0]:.2f}x, cpu {best[m][1] / best[base][1]:.2f}x")
    print(f"({len(problems)} HumanEval+ canonical programs, {a.workers} worker(s), best of {a.repeats})")
    if a.json:
        a.json.write_text(json.dumps({
            "programs": len(problems), "workers": a.workers, "repeats": a.repeats, "base": base,
            "mechanisms": [{"mechanism": m, "wall_s": [round(w, 2) for w, _ in times[m]],
                            "cpu_s": [None if c != c else round(c, 2) for _, c in times[m]],
                            "best_wall_ratio": round(best[m][0] / best[base][0], 3)} for m in mechanisms],
            "run": run_info(load_start)}, indent=1) + "\n")


if __name__ == "__main__":
    main()
