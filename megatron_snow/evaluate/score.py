"""Score samples of one unit: build each task's program, run it in the sandbox, compute greedy pass@1.

Samples are the EvalPlus samples format (``task_id`` plus ``solution`` or
``completion``), one per task (greedy decoding). Every task of the unit is
counted: a task with no sample fails and is reported as missing; samples of
unknown tasks, repeated tasks or without a string ``solution`` /
``completion`` are set aside and counted by reason.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from megatron_snow.evaluate.known_failures import BIGCODEBENCH_EXCLUDED, missing_modules
from megatron_snow.evaluate.sandbox import SandboxConfig, run_isolated, sandbox_settings
from megatron_snow.evaluate.tasks import Unit, solution_for, unit_path

PASS = "pass"


@dataclass
class UnitResult:
    unit: str
    n_tasks: int
    scores: dict  # "pass@1" (and "base_pass@1" for EvalPlus), in percent
    tasks: dict  # task_id -> {"base": status, "plus": status, "missing": bool}
    set_aside: dict = field(default_factory=dict)  # reason -> count
    reference: dict = field(default_factory=dict)  # what the reference solutions did (BigCodeBench)
    network: str = ""
    excluded: dict = field(default_factory=dict)  # task_id -> "excluded: <reason>" (known_failures; still counted)
    missing_modules: dict = field(default_factory=dict)  # task_id -> modules it imports that are not installed here
    isolation: str = ""  # what the samples ran under: "namespaces", or "none (...)" (sandbox.allow_unisolated)


class SamplesError(ValueError):
    """A samples file that cannot be read (one line naming the file and line)."""


def read_samples(path: str | Path) -> list[dict]:
    """A samples JSONL file; a line that is not a JSON object is a one-line error naming it."""
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise SamplesError(f"{path}:{i}: not JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise SamplesError(f"{path}:{i}: not a JSON object")
            out.append(rec)
    return out


def collect_solutions(unit: Unit, problems: dict, samples: list[dict]) -> tuple[dict, dict, list[str]]:
    """(task_id -> program, set-aside counts by reason, task ids without a sample)."""
    solutions: dict[str, str] = {}
    aside: dict[str, int] = {}
    for s in samples:
        tid = s.get("task_id")
        if tid not in problems:
            reason = "unknown_task" if isinstance(tid, str) else "no_task_id"
        elif tid in solutions:
            reason = "repeated_task"  # greedy pass@1 takes one sample per task: the first
        elif not isinstance(s.get("solution"), str) and not isinstance(s.get("completion"), str):
            reason = "no_solution_or_completion"
        else:
            solutions[tid] = solution_for(unit, problems[tid], s)
            continue
        aside[reason] = aside.get(reason, 0) + 1
    missing = [t for t in problems if t not in solutions]
    return solutions, aside, missing


def score_unit(unit: Unit, problems: dict, samples: list[dict], benchmarks_dir, cfg: SandboxConfig,
               cache_dir: str | Path | None = None) -> UnitResult:
    solutions, aside, missing = collect_solutions(unit, problems, samples)
    job = {"unit": {"name": unit.name, "harness": unit.harness, "dataset": unit.dataset},
           "data_path": str(unit_path(unit, benchmarks_dir)), "solutions": solutions,
           "sandbox": sandbox_settings(cfg)}
    out = (run_isolated(job, cache_dir=cache_dir) if solutions
           else {"tasks": {}, "reference": {}, "network": "", "isolation": ""})
    tasks = dict(out["tasks"])
    for t in missing:
        tasks[t] = {"base": "missing", **({"plus": "missing"} if unit.harness == "evalplus" else {}), "missing": True}
    n = len(problems)
    base = sum(r["base"] == PASS for r in tasks.values())
    scores = {}
    if unit.harness == "evalplus":
        plus = sum(r["base"] == PASS and r.get("plus") == PASS for r in tasks.values())
        scores = {"pass@1": 100.0 * plus / n, "base_pass@1": 100.0 * base / n}
    else:
        scores = {"pass@1": 100.0 * base / n}
    excluded, absent = {}, {}
    if unit.harness == "bigcodebench":
        # scored and counted like every task (the paper's denominator), named, and left out of a second score
        excluded = {t: f"excluded: {BIGCODEBENCH_EXCLUDED[t]}" for t in problems if t in BIGCODEBENCH_EXCLUDED}
        for t, why in excluded.items():
            tasks[t]["excluded"] = why
        kept = [t for t in problems if t not in excluded]
        scores["pass@1_without_excluded"] = 100.0 * sum(tasks[t]["base"] == PASS for t in kept) / max(1, len(kept))
        absent = {t: m for t in problems if (m := missing_modules(problems[t]))}
    if missing:
        aside["missing_task"] = len(missing)
    ordered = {t: tasks[t] for t in problems}
    return UnitResult(unit.name, n, scores, ordered, aside, out.get("reference", {}), out.get("network", ""),
                      excluded, absent, out.get("isolation", ""))
