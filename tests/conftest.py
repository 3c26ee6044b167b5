"""Shared test fixtures: repository paths, offline mode, shared benchmark data."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
BENCHMARKS_DIR = SHARED / "benchmarks"

# Tests never touch the network: Hugging Face libraries must use local files only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def benchmarks_dir() -> Path:
    """../shared/benchmarks, or a skip that says why."""
    if not (BENCHMARKS_DIR / "humaneval.jsonl.gz").is_file():
        pytest.skip(f"benchmark data not found at {BENCHMARKS_DIR} (expected ../shared/benchmarks beside the repo)")
    return BENCHMARKS_DIR
