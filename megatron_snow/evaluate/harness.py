"""Adapters to the evaluators, run as ``python -m megatron_snow.evaluate.harness JOB.json OUT.json``.

Each adapter uses its evaluator's own pieces: the reference outputs and times
(``get_groundtruth``) and the per-sample check (``check_correctness``, which
forks one process per sample), over a process pool with a progress bar. The
evaluators' ``evaluate()`` entry points are not used because they need every
task of a benchmark in the samples, cache results next to the samples file
and may stop to ask on the terminal; the checks themselves are theirs.

Only ``sandbox.run_isolated`` starts this module: it is the process that runs
generated code (see ``sandbox``). A job holds the unit, the benchmark file,
the task ids, one program per task, and the sandbox settings; the result has
each task's status (``pass`` / ``fail`` / ``timeout``; base and plus for
EvalPlus) and what the reference solutions did.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace

from tqdm import tqdm

from megatron_snow.benchmarks import read_benchmark
from megatron_snow.evaluate.sandbox import (ISOLATION_EXIT, IsolationUnavailable, SandboxConfig, check_isolation,
                                            die_with_parent, enter_bwrap_scoring, enter_filesystem_sandbox,
                                            install_hooks, isolate_network, probe_sample)


def _cache_key(harness: str, data_path: str, task_ids: list[str], extra: str = "") -> str:
    """Ground-truth cache name: the data bytes and the task subset (never a partial set under a full set's name)."""
    h = hashlib.sha256()
    with open(data_path, "rb") as f:
        h.update(f.read())
    h.update("\n".join(task_ids).encode())
    h.update(extra.encode())
    return f"megatron_snow-{harness}-{h.hexdigest()[:24]}"


_HIDE: list[str] = []  # paths the samples must not see (the job's "hide"), when isolated
_ISOLATED = {"on": False}


def _worker_init(tmp_size_mb: int) -> None:
    """Each scoring worker: dies with this process; in its own mount namespace when isolated (see sandbox)."""
    die_with_parent()
    if _ISOLATED["on"]:
        enter_filesystem_sandbox(_HIDE, os.environ["TMPDIR"], tmp_size_mb)


def _pool(cfg: SandboxConfig) -> ProcessPoolExecutor:
    # fork: workers inherit the hooks installed in this process
    return ProcessPoolExecutor(max_workers=cfg.n_workers(), mp_context=multiprocessing.get_context("fork"),
                               initializer=_worker_init, initargs=(cfg.tmp_size_mb,))


def _run(futures: dict, desc: str) -> dict:
    out = {}
    for fut in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="sample", file=sys.stderr):
        out[futures[fut]] = fut.result()
    return out


def score_evalplus(dataset: str, problems: dict, solutions: dict, data_path: str,
                   cfg: SandboxConfig) -> tuple[dict, dict]:
    from evalplus.data.mbpp import mbpp_deserialize_inputs
    from evalplus.data.utils import completeness_check
    from evalplus.eval._special_oracle import MBPP_OUTPUT_NOT_NONE_TASKS
    from evalplus.evaluate import check_correctness, get_groundtruth

    if dataset == "mbpp":
        for tid, p in problems.items():
            p["base_input"] = mbpp_deserialize_inputs(tid, p["base_input"])
            p["plus_input"] = mbpp_deserialize_inputs(tid, p["plus_input"])
    completeness_check(dataset, problems)
    expected = get_groundtruth(problems, _cache_key("evalplus", data_path, list(problems)),
                               MBPP_OUTPUT_NOT_NONE_TASKS if dataset == "mbpp" else [])
    with _pool(cfg) as ex:
        futures = {ex.submit(check_correctness, dataset, 0, problems[t], solutions[t], expected[t], False, True, t,
                             cfg.min_time_limit, cfg.gt_time_limit_factor): t for t in solutions}
        done = _run(futures, f"scoring {dataset}")
    return {t: {"base": r["base"][0], "plus": r["plus"][0]} for t, r in done.items()}, {}


def score_evoeval(dataset: str, problems: dict, solutions: dict, data_path: str,
                  cfg: SandboxConfig) -> tuple[dict, dict]:
    from evoeval.evaluate import check_correctness, get_groundtruth

    # EvoEval's five default categories: inputs as strings, no plus tests (its own evaluate() does the same)
    expected = get_groundtruth(problems, None, use_raw_inputs=False, compute_plus_inputs=False)
    with _pool(cfg) as ex:
        futures = {ex.submit(check_correctness, dataset, 0, problems[t], solutions[t], expected[t], True, t,
                             cfg.min_time_limit, cfg.gt_time_limit_factor, False, False): t for t in solutions}
        done = _run(futures, f"scoring {dataset}")
    return {t: {"base": r["result"][0]} for t, r in done.items()}, {}


def _bigcodebench_status(base) -> dict:
    """Status, and for a failure the first lines of what failed (test name -> traceback tail), to see why."""
    status, details = base
    out = {"base": status}
    if status != "pass" and details:
        out["details"] = {k: str(v)[-600:] for k, v in list(dict(details).items())[:5]}
    return out


# Imported once in the scoring process, before any task runs, so that each forked task process starts with
# them loaded instead of importing them again (4 s per task on a loaded 2-core machine, most of a task's time).
# Each task still runs in its own fork: no state passes from one task to another.
BIGCODEBENCH_PRELOAD = ("numpy", "pandas", "matplotlib.pyplot", "scipy.stats")


def _preload(modules) -> list[str]:
    import importlib

    done = []
    for name in modules:
        try:
            importlib.import_module(name)
            done.append(name)
        except ImportError:
            pass
    return done


def score_bigcodebench(dataset: str, problems: dict, solutions: dict, data_path: str, cfg: SandboxConfig,
                       calibrated: bool = True) -> tuple[dict, dict]:
    from bigcodebench.evaluate import check_correctness, get_groundtruth

    _preload(BIGCODEBENCH_PRELOAD)
    mem, stack = cfg.memory_mb, 10  # MB, as bigcodebench takes them (stack: its default)
    key = _cache_key("bigcodebench", data_path, list(problems), f"{mem}")
    expected_time = get_groundtruth(cfg.n_workers(), problems, key, False, mem, mem, stack, cfg.min_time_limit)
    gt_failed = sorted(t for t in problems if not expected_time.get(t))
    with _pool(cfg) as ex:
        futures = {}
        for t, sol in solutions.items():
            if calibrated:  # bigcodebench's default: the task's imports and signature before the sample
                sol = problems[t]["code_prompt"] + "\n    pass\n" + sol
            futures[ex.submit(check_correctness, 0, problems[t], sol, mem, mem, stack, t, cfg.min_time_limit,
                              expected_time.get(t) or 20)] = t
        done = _run(futures, f"scoring bigcodebench-{dataset}")
    return ({t: _bigcodebench_status(r["base"]) for t, r in done.items()},
            {"reference_failed": gt_failed, "reference_pass_rate": 1 - len(gt_failed) / max(1, len(problems)),
             "reference_time_s": {t: expected_time.get(t) for t in problems}})


SCORERS = {"evalplus": score_evalplus, "evoeval": score_evoeval, "bigcodebench": score_bigcodebench}


def run_job(job: dict) -> dict:
    unit, cfg = job["unit"], SandboxConfig(**job["sandbox"])
    # every process forked from here on (the evaluators' own pools included) dies with its parent
    os.register_at_fork(after_in_child=die_with_parent)
    _HIDE[:] = job.get("hide", [])
    isolation = job.get("isolation", "namespaces")  # what sandbox.run_isolated chose (and started us in)
    if isolation == "bwrap":  # inside bubblewrap already: check a sample's namespaces here
        network = enter_bwrap_scoring(os.environ["TMPDIR"], _HIDE)
        why = probe_sample(cfg.tmp_size_mb)
        if why:
            raise IsolationUnavailable(f"cannot isolate generated code inside bubblewrap ({why})")
    else:
        network = isolate_network()
        if isolation == "namespaces":  # raises IsolationUnavailable unless isolated or allowed not to be
            isolation = check_isolation(replace(cfg, mechanism="namespaces"), _HIDE)
    _ISOLATED["on"] = isolation == "namespaces"
    install_hooks(cfg, unit["harness"])
    records = {r["task_id"]: r for r in read_benchmark(job["data_path"])}
    problems = {t: records[t] for t in job["solutions"]}
    tasks, reference = SCORERS[unit["harness"]](unit["dataset"], problems, job["solutions"], job["data_path"], cfg)
    return {"tasks": tasks, "reference": reference, "network": network, "isolation": isolation}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m megatron_snow.evaluate.harness JOB.json OUT.json", file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        job = json.load(f)
    with contextlib.redirect_stdout(sys.stderr):  # the evaluators' messages; stdout stays the caller's table
        try:
            result = run_job(job)
        except IsolationUnavailable as e:
            with open(argv[1], "w") as f:
                json.dump({"error": str(e)}, f)
            return ISOLATION_EXIT
    with open(argv[1], "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
