"""Local copies of the evaluation benchmarks (the ../shared/benchmarks layout: NAME.jsonl.gz).

Read in two places for opposite reasons: phase-1 decontamination removes training
files that overlap them, and the phase-2 alignment analysis scores their solutions.
They are evaluation data and never enter a training corpus.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path


def benchmark_path(benchmarks_dir: str | Path, stem: str) -> Path | None:
    """``DIR/STEM.jsonl.gz`` (or plain ``.jsonl``) when present."""
    for name in (f"{stem}.jsonl.gz", f"{stem}.jsonl"):
        p = Path(benchmarks_dir) / name
        if p.is_file():
            return p
    return None


def read_benchmark(path: str | Path) -> list[dict]:
    """Every record of one benchmark file (gzip or plain JSONL)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
