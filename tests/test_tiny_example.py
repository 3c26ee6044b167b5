"""The README's first command: examples/tiny/run.sh runs the whole recipe on CPU (three phases,
synthesis through a real `transformers serve`, conversion, a quick evaluation, the report), and a
second run with the same command finds everything done, changes nothing and starts no server."""
from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import re
import subprocess
from pathlib import Path

import pytest

from megatron_snow.funnel import Funnel
from megatron_snow.synthesis.seeds import NOT_SEED_REASONS
from megatron_snow.training.config import load_train_config
from megatron_snow.training.data import apply_blend_file

REPO = Path(__file__).resolve().parents[1]


def _run(work: Path, as_given: str | None = None) -> subprocess.CompletedProcess:
    """run.sh into ``work``; ``as_given``: the TINY_WORK spelling of an earlier run (its paths are settings)."""
    env = dict(os.environ, TINY_WORK=as_given or str(work), NPROC="2", NRANKS="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run(["bash", "examples/tiny/run.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1500)
    assert proc.returncode == 0, f"run.sh failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def _metrics(path: Path, split: str = "train") -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["split"] == split]


def _derived_iters(phase_yaml: str, blend_file: Path) -> int:
    """The iterations the trainer derives from a blend file (training.train_iters: 0)."""
    cfg = load_train_config(str(REPO / "examples/tiny" / phase_yaml), [f"data.blend_file={blend_file}"])
    apply_blend_file(cfg)
    return cfg.training.train_iters


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.distributed
def test_tiny_pipeline_end_to_end_and_rerun_is_idempotent(tmp_path):
    done_work, done_log = os.environ.get("MEGATRON_SNOW_TINY_WORK"), os.environ.get("MEGATRON_SNOW_TINY_LOG")
    if done_work and done_log:
        # CI has just run the README's first command into done_work (its console in done_log): check that
        # run's outputs instead of repeating it; the re-run below still proves it resumes and changes nothing
        work = Path(done_work) if Path(done_work).is_absolute() else REPO / done_work
        log = Path(done_log).read_text()
        # run.sh printed its work directory as given (relative to the repository): the checks below use ours
        stdout = re.sub(rf"(?<![/\w]){re.escape(done_work)}", str(work), log)
        first = subprocess.CompletedProcess(["bash", "examples/tiny/run.sh"], 0, stdout, "")
    else:
        done_work = None
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
    assert p1[-1]["iteration"] == 120 and p1[-1]["loss"] < p1[0]["loss"] - 0.8  # seen: 6.55 -> 5.56
    p2 = _metrics(work / "checkpoints/phase2/metrics.jsonl")
    p2_iters = _derived_iters("phase2.yaml", work / "phase2_data/blend.json")
    assert p2_iters > 10 and p2[-1]["iteration"] == p2_iters
    assert f"initialised weights from {work}/checkpoints/phase1/iter_" in first.stdout
    # it did not start from scratch: after 10 steps it is already below phase 1 after 20 steps
    assert p2[0]["iteration"] == 10 and p1[0]["iteration"] == 20 and p2[0]["loss"] < p1[0]["loss"] - 0.5

    # phase 2 data: the annotator learned, the selection met its budget within one document
    annotator = json.loads((work / "annotator/metrics.json").read_text())
    assert annotator["test"]["roc_auc"] > 0.7
    report = json.loads((work / "phase2_data/selection_report.json").read_text())
    assert report["selected_tokens"] >= report["budget_tokens"]

    # phase-3 synthesis went through a real server: every seed got an answer (none failed as a request),
    # and the funnel balances (in = kept + dropped per reason; the tiny model's noise is mostly dropped)
    pid = int(re.search(r"transformers serve \(pid (\d+)\)", first.stdout).group(1))
    assert not Path(f"/proc/{pid}").exists(), "the server outlived run.sh"
    with gzip.open(work / "synthetic/_work/seeds.jsonl.gz", "rt") as f:
        n_seeds = sum(1 for line in f if line.strip())
    funnel = Funnel.read(work / "synthetic/funnel.json")
    funnel.check()
    # every phase-2 record is in the funnel: the seeds, and the rest under the reason it is not a seed
    assert funnel.total("in")[0] == json.loads((work / "phase2_data/manifest.json").read_text())["records"]
    not_seeds = sum(n for r, n in funnel.reasons().items() if r in NOT_SEED_REASONS)
    assert funnel.total("in")[0] - not_seeds == n_seeds >= 10
    assert "request_failed" not in funnel.reasons()
    assert "prompt_too_long" not in funnel.reasons()  # the tiny template and snippets fit the model's 256 tokens
    kept = json.loads((work / "synthetic/manifest.json").read_text())["records"]
    assert funnel.total("kept")[0] == kept

    # the mix: its token budget, Python half of it, every synthetic file in the blend or reported as left out
    mix = json.loads((work / "phase3_mix/mix_report.json").read_text())
    assert abs(mix["planned_tokens"] - mix["budget_tokens"]) < 1
    assert abs(mix["languages"]["python"]["planned_share"] - 0.5) < 0.01
    left = sum(x["documents"] for x in mix["left_out"] if x["source"] == "synthetic")
    assert mix["synthetic_documents"] + left == kept
    if not mix["synthetic_documents"]:
        assert "phase-2 data only" in mix["note"] and "phase-2 data only" in first.stderr + first.stdout

    # phase 3: the iterations its blend file gives, from phase 2's final weights (not from scratch)
    p3 = _metrics(work / "checkpoints/phase3/metrics.jsonl")
    p3_iters = _derived_iters("phase3.yaml", work / "phase3_mix/blend.json")
    assert p3[-1]["iteration"] == p3_iters > 5
    p2_last = (work / "checkpoints/phase2/latest").read_text().strip()
    assert f"initialised weights from {work}/checkpoints/phase2/iter_{int(p2_last):07d}" in first.stdout
    assert p3[0]["loss"] < p1[0]["loss"] - 0.5

    # the final model in Hugging Face format loads with transformers and models code far better than chance
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(work / "hf/phase3").eval()
    tok = AutoTokenizer.from_pretrained(work / "hf/phase3")
    ids = tok("def add(a, b):\n    return a + b\n\n\nclass Point:\n    def __init__(self, x, y):\n"
              "        self.x = x\n        self.y = y\n", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < math.log(model.config.vocab_size) - 1.0

    # the quick evaluation and the report
    results = json.loads((work / "eval/phase3/results.json").read_text())
    assert {u: v["n_tasks"] for u, v in results["units"].items()} == {"humaneval+": 3, "mbpp+": 3}
    report_md = (work / "report.md").read_text()
    assert "## Evaluation" in report_md and (work / "training.png").is_file()

    outputs = sorted((work / "phase1/07_grouped").glob("part-*")) + [
        work / "index/phase1.bin", work / "index/phase1.idx", work / "index/phase2.bin",
        work / "tokenizer/code.model", work / "checkpoints/phase1/latest", work / "checkpoints/phase2/latest",
        work / "hf/phase2/model-00001-of-00001.safetensors", work / "synthetic/manifest.json",
        work / "synthetic/funnel.json", work / "phase3_mix/blend.json", work / "checkpoints/phase3/latest",
        work / "hf/phase3/model-00001-of-00001.safetensors", work / "eval/phase3/results.json"]
    before = _digest(outputs)
    second = _run(work, done_work)  # the same command as the first run, TINY_WORK spelled the same
    assert _digest(outputs) == before
    assert "saved checkpoint" not in second.stdout  # training found every phase finished
    assert "no server started" in second.stdout and "transformers serve (pid" not in second.stdout
