"""A killed run, re-run with the same command, skips finished shards and ends byte-identical."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_snow.phase1.pipeline import KILL_ENV
from tests.phase1.conftest import write_config


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _shard_mtimes(root: Path) -> dict[str, int]:
    """Finished output shards (a dropped/ shard without its output shard is an unfinished one)."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.glob("*/part-*.jsonl.gz")}


@pytest.mark.mpi
def test_killed_run_resumes_to_identical_output(phase1_run, tmp_path, repo_root, benchmarks_dir):
    _, ref, corpus = phase1_run
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", corpus.root, out, benchmarks_dir)
    cmd = [sys.executable, str(repo_root / "tools/preprocess/phase1.py"), "--config", str(cfg)]

    def run(kill_after: int | None, ranks: int = 1) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env.pop(KILL_ENV, None)
        if kill_after is not None:
            env[KILL_ENV] = str(kill_after)
        prefix = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
        return subprocess.run(prefix + cmd, env=env, capture_output=True, text=True, timeout=600, cwd=repo_root)

    # 1) two ranks, each SIGKILLs itself after writing 6 shards: dies inside the filter stage
    p = run(6, ranks=2)
    assert p.returncode != 0
    assert (out / "01_ingest" / "manifest.json").is_file() and not (out / "02_filter" / "manifest.json").exists()
    before = _shard_mtimes(out)
    assert any(k.startswith("02_filter/part-") for k in before)
    # 2) one rank this time, killed again after 14 more shards (inside the dedup stages)
    p = run(14)
    assert p.returncode == -9, p.stderr[-2000:]
    assert not (out / "funnel.json").exists()
    middle = _shard_mtimes(out)
    assert all(middle[k] == t for k, t in before.items()), "finished shards were rewritten"
    # 3) the same command to the end
    p = run(None)
    assert p.returncode == 0, p.stderr[-2000:]
    after = _shard_mtimes(out)
    assert all(after[k] == t for k, t in middle.items()), "finished shards were rewritten"
    mine, theirs = _tree(ref), _tree(out)
    assert sorted(mine) == sorted(theirs)
    assert [k for k in mine if mine[k] != theirs[k]] == []
    # 4) resuming with other settings would mix shards: refused with one line naming the setting
    p = subprocess.run(cmd + ["filter.default.max_line_length=500"], capture_output=True, text=True, timeout=300,
                       cwd=repo_root)
    assert p.returncode == 2 and "other filter settings (filter: " in p.stderr, p.stderr[-1000:]
    assert _tree(out) == theirs
