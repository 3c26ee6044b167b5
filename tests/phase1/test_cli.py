"""The phase-1 CLI: help, one-line config errors, stage order."""
from __future__ import annotations

import subprocess
import sys


def _run(repo_root, *args):
    return subprocess.run([sys.executable, str(repo_root / "tools/preprocess/phase1.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=repo_root)


def test_help_and_errors(repo_root, tmp_path):
    p = _run(repo_root, "--help")
    assert p.returncode == 0 and "mpiexec" in p.stdout and "--stages" in p.stdout
    p = _run(repo_root, "--config", str(repo_root / "examples/tiny/data_phase1.yaml"), "near_dedup.treshold=0.8")
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
    assert "unknown key 'near_dedup.treshold'" in p.stderr
    p = _run(repo_root, "--config", str(repo_root / "examples/snowcoder_1.3b/data_phase1.yaml"), "--stages", "bogus")
    assert p.returncode == 2 and "stages: unknown ['bogus']" in p.stderr
    p = _run(repo_root, "--config", str(repo_root / "examples/tiny/data_phase1.yaml"), f"output_dir={tmp_path}",
             "--stages", "filter")
    assert p.returncode == 2 and "needs the finished output of 'ingest'" in p.stderr
