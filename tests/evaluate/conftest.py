"""Fixtures for the evaluation tests: the evaluators' caches in a temporary folder, helpers to score samples."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def eval_cache(tmp_path_factory) -> Path:
    """XDG cache for evalplus / evoeval / bigcodebench reference outputs (never the user's ~/.cache)."""
    return tmp_path_factory.mktemp("eval_cache")


@pytest.fixture(scope="session")
def score(benchmarks_dir, eval_cache):
    """score(unit_name, {task_id: sample dict}, **sandbox settings) -> UnitResult, over exactly those tasks."""
    from megatron_snow.evaluate.sandbox import SandboxConfig
    from megatron_snow.evaluate.score import score_unit
    from megatron_snow.evaluate.tasks import ALL_UNITS, load_problems

    def run(unit_name: str, samples: dict[str, dict], **sandbox):
        unit = ALL_UNITS[unit_name]
        problems = load_problems(unit, benchmarks_dir, task_ids=list(samples))
        rows = [{"task_id": t, **s} for t, s in samples.items()]
        return score_unit(unit, problems, rows, benchmarks_dir, SandboxConfig(workers=2, **sandbox),
                          cache_dir=eval_cache)

    return run
