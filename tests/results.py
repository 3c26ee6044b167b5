"""Measured numbers that README.md and docs/ quote, kept as JSON in docs/results/ so that a test can rebuild
the quoted sentences and tables from them (tests/test_claims.py) instead of trusting hand-copied text.

A test that measures something deterministic calls ``check_or_write``: it compares its measurement with the
committed file and fails on any difference; ``MEGATRON_SNOW_WRITE_RESULTS=1`` rewrites the file instead (then
re-render the docs: tests/test_claims.py says what to change). Benchmarks, whose CPU times vary, write their file
with their own ``--json`` option and are not compared.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results"
WRITE_ENV = "MEGATRON_SNOW_WRITE_RESULTS"


def load(name: str) -> dict:
    """The committed docs/results/<name>.json."""
    return json.loads((RESULTS / f"{name}.json").read_text(encoding="utf-8"))


def check_or_write(name: str, data: dict) -> None:
    """Write docs/results/<name>.json when MEGATRON_SNOW_WRITE_RESULTS=1, else assert it equals ``data``."""
    data = json.loads(json.dumps(data))  # tuples as lists, keys as strings: what the file holds
    path = RESULTS / f"{name}.json"
    if os.environ.get(WRITE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run this test with {WRITE_ENV}=1 and commit it"
    committed = load(name)
    if committed != data:
        changed = sorted(k for k in set(committed) | set(data) if committed.get(k) != data.get(k))
        raise AssertionError(f"measured results differ from {path} in {changed}: if the change is meant, "
                             f"re-run with {WRITE_ENV}=1, commit the file and the docs tests/test_claims.py "
                             "rebuilds from it")
