"""The README's first command: examples/tiny/run.sh runs the whole pipeline on CPU, and a
second run with the same command finds everything done and changes nothing."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from megatron_snow.funnel import Funnel

REPO = Path(__file__).resolve().parents[1]


def _run(work: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TINY_WORK=str(work), NPROC="2", NRANKS="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run(["bash", "examples/tiny/run.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"run.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _metrics(path: Path, split: str = "train") -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["split"] == split]


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.distributed
def test_tiny_pipeline_end_to_end_and_rerun_is_idempotent(tmp_path):
    work = tmp_path / "work"
    first = _run(work)

    # phase-1 data: every stage's funnel balances and something survived to the grouped documents
    for funnel_json in sorted((work / "phase1").glob("0*/funnel.json")):
        Funnel.read(funnel_json).check()
    grouped = json.loads((work / "phase1/07_grouped/manifest.json").read_text())
    assert grouped["records"] > 0
    assert "verify: OK" in first.stdout

    # phase 1 trained and its loss fell; phase 2 started from phase 1's weights with its own schedule
    p1 = _metrics(work / "checkpoints/phase1/metrics.jsonl")
    assert p1[-1]["iteration"] == 120 and p1[-1]["loss"] < p1[0]["loss"] - 1.0
    p2 = _metrics(work / "checkpoints/phase2/metrics.jsonl")
    assert p2[-1]["iteration"] == 40
    assert "initialised weights from" in first.stdout
    # it did not start from scratch: after 10 steps it is already below phase 1 after 20 steps
    assert p2[0]["iteration"] == 10 and p1[0]["iteration"] == 20 and p2[0]["loss"] < p1[0]["loss"] - 0.5

    # phase 2 data: the annotator learned, the selection met its budget within one document
    annotator = json.loads((work / "annotator/metrics.json").read_text())
    assert annotator["test"]["roc_auc"] > 0.7
    report = json.loads((work / "phase2_data/selection_report.json").read_text())
    assert report["selected_tokens"] >= report["budget_tokens"]

    outputs = sorted((work / "phase1/07_grouped").glob("part-*")) + [
        work / "index/phase1.bin", work / "index/phase1.idx", work / "index/phase2.bin",
        work / "tokenizer/code.model", work / "checkpoints/phase1/latest", work / "checkpoints/phase2/latest"]
    before = _digest(outputs)
    second = _run(work)
    assert _digest(outputs) == before
    assert "saved checkpoint" not in second.stdout  # training found both phases finished
