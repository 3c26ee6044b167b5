"""Test fixtures: repository paths, offline mode, the benchmark data shipped in the package."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Tests never touch the network: Hugging Face libraries must use local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Benchmark sets: always the copies shipped in the package, never a user's downloaded full sets, so
# decontamination and alignment results do not depend on the machine.
os.environ.setdefault("MEGATRON_SNOW_BENCHMARKS", str(REPO_ROOT / "megatron_snow" / "benchmark_data"))

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


# CI (.ci/run) sets MEGATRON_SNOW_FAIL_ON_SKIP=1: a test that cannot run there (Slurm, MPI or a second host
# missing, a fixture that cannot start) fails instead of skipping. Only what needs hardware CI lacks may skip.
ALLOWED_SKIPS = ("no GPU here", "vllm is installed here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("MEGATRON_SNOW_FAIL_ON_SKIP") == "1" and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS):
            report.outcome = "failed"
            report.longrepr = f"skipped, but MEGATRON_SNOW_FAIL_ON_SKIP=1 (CI): {reason}"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """The benchmark copies shipped inside the package (never a download, never a folder outside the repo)."""
    from megatron_snow.benchmarks import SHIPPED_DIR
    return SHIPPED_DIR
