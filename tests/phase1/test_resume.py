"""A killed run, re-run with the same command, skips finished units and ends byte-identical."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_snow.faults import KILL_ENV, TRACE_ENV
from tests.phase1.conftest import write_config
from tests.phase1.test_pipeline import assert_ranks, tree


def _finished_shards(root: Path) -> dict[str, int]:
    """Output shards whose unit marker exists (finished units), with their mtimes."""
    out = {}
    for p in root.glob("*/part-*.jsonl.gz"):
        marker = p.parent / "_work" / f"unit-{p.name[5:10]}.json"
        if marker.is_file():
            out[str(p.relative_to(root))] = p.stat().st_mtime_ns
    return out


@pytest.mark.mpi
@pytest.mark.slow
def test_killed_run_resumes_to_identical_output(phase1_run, tmp_path, repo_root, benchmarks_dir):
    _, ref, corpus = phase1_run
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", corpus.root, out, benchmarks_dir)
    args = ["phase1", "--config", str(cfg)]

    def run(kill_after: int | None, ranks: int = 1, extra: tuple = ()) -> subprocess.CompletedProcess:
        """The command; with ``kill_after``, each process SIGKILLs itself right after its Nth unit marker."""
        cmd = [sys.executable, "-m", "megatron_snow", *args, *extra]
        prefix = ["mpiexec", "-n", str(ranks)] if ranks > 1 else []
        env = {k: v for k, v in os.environ.items() if k not in (KILL_ENV, TRACE_ENV)}
        if kill_after:
            env[KILL_ENV] = f"unit.marker_written:*@{kill_after}"
        return subprocess.run(prefix + cmd, capture_output=True, text=True, timeout=600, cwd=repo_root, env=env)

    # 1) two ranks, each SIGKILLs itself after finishing 6 units: dies inside the filter stage
    p = run(6, ranks=2)
    assert p.returncode != 0
    assert (out / "01_ingest" / "manifest.json").is_file() and not (out / "02_filter" / "manifest.json").exists()
    assert_ranks(out / "01_ingest", 2)  # both ranks took part before they died
    before = _finished_shards(out)
    assert any(k.startswith("02_filter/part-") for k in before)
    # 2) one rank this time, killed again after 14 more units (inside the dedup stages)
    p = run(14)
    assert p.returncode == -9, p.stderr[-2000:]
    assert not (out / "funnel.json").exists()
    middle = _finished_shards(out)
    assert len(middle) > len(before)
    assert all(middle[k] == t for k, t in before.items()), "finished shards were rewritten"
    # 3) the same command to the end
    p = run(None)
    assert p.returncode == 0, p.stderr[-2000:]
    after = _finished_shards(out)
    assert all(after[k] == t for k, t in middle.items()), "finished shards were rewritten"
    mine, theirs = tree(ref), tree(out)
    assert sorted(mine) == sorted(theirs)
    assert [k for k in mine if mine[k] != theirs[k]] == []
    assert_ranks(out / "07_grouped", 1)  # the last run made the last stage alone
    # 4) resuming with other settings would mix shards: refused with one line naming the setting
    p = run(None, extra=("filter.default.max_line_length=500",))
    assert p.returncode == 2, p.stderr[-1000:]
    assert p.stderr.count("\n") == 1 and (
        "02_filter was made with other settings (filter.default.max_line_length: 1000 -> 500)" in p.stderr)
    assert "--force" in p.stderr
    assert tree(out) == theirs
