"""Local copies of the evaluation benchmarks (``DIR/NAME.jsonl.gz``, one JSON object a line).

Read in three places: phase-1 decontamination removes training files that
overlap them, the phase-2 alignment analysis scores their solutions, and
evaluation runs them. They are evaluation data and never enter a training
corpus.

Where they come from, in order (``resolve_benchmarks_dir``):
1. a directory given explicitly (a config key or ``--benchmarks-dir``);
2. ``$MEGATRON_SNOW_BENCHMARKS``;
3. ``~/.cache/megatron_snow/benchmarks`` when ``python -m megatron_snow
   fetch-benchmarks`` has filled it (the full sets, downloaded when online);
4. the copies shipped inside the package (``megatron_snow/benchmark_data``:
   HumanEval(+), MBPP(+), EvoEval, BigCodeBench, GSM8K; sources and licences
   in its README), so a fresh clone works offline.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "benchmark_data"
ENV_VAR = "MEGATRON_SNOW_BENCHMARKS"


def default_download_dir() -> Path:
    """Where ``fetch-benchmarks`` writes the full sets (XDG cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "megatron_snow" / "benchmarks"


def resolve_benchmarks_dir(benchmarks_dir: str | Path | None = None) -> Path:
    """The benchmark directory to use: explicit > env var > downloaded cache > shipped copies."""
    if benchmarks_dir:
        return Path(benchmarks_dir)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    cache = default_download_dir()
    if (cache / "humaneval.jsonl.gz").is_file():
        return cache
    return SHIPPED_DIR


def benchmark_path(benchmarks_dir: str | Path | None, stem: str) -> Path | None:
    """``DIR/STEM.jsonl.gz`` (or plain ``.jsonl``) when present; DIR resolved as above."""
    d = resolve_benchmarks_dir(benchmarks_dir)
    for name in (f"{stem}.jsonl.gz", f"{stem}.jsonl"):
        p = d / name
        if p.is_file():
            return p
    return None


def read_benchmark(path: str | Path) -> list[dict]:
    """Every record of one benchmark file (gzip or plain JSONL)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
