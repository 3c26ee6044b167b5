"""No stale output in phase 2: another annotator's scores are refused, a re-scored corpus is not selected
from stale tables, duplicate document ids keep their own scores; and every tool's --help works."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_snow import records
from megatron_snow.phase2.score_store import read_scores
from megatron_snow.phase2.scoring import AnnotateConfig, annotate_corpus
from megatron_snow.phase2.selection import SelectConfig, select
from megatron_snow.stages import StaleOutputError

REPO = Path(__file__).resolve().parents[2]
QUIET = {"log": lambda *_: None, "show_progress": False}


@pytest.fixture(scope="module")
def other_annotator(trained_annotator, tmp_path_factory) -> Path:
    """A second, different annotator: the session's one with its classifier bias moved (real weights)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("other_annotator")
    model = AutoModelForSequenceClassification.from_pretrained(trained_annotator[0])
    with torch.no_grad():
        model.classifier.bias[-1] += 0.7  # the positive class (or the one logit)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(trained_annotator[0]).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def small_tokenizer(corpus_dir, tmp_path_factory) -> Path:
    """A byte-level BPE tokenizer.json trained on the corpus (the project's CodeTokenizer loads it)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([r.content for r in records.iter_records(corpus_dir)], trainers.BpeTrainer(
        vocab_size=800, special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(str(path))
    return path


def _annotate(corpus, model, out=None, force=False):
    cfg = AnnotateConfig(corpus=str(corpus), model=str(model), out=str(out or ""), device="cpu", batch_size=32)
    return annotate_corpus(cfg, force=force, **QUIET)


@pytest.mark.slow
def test_annotate_refuses_another_model(trained_annotator, other_annotator, corpus_dir, tmp_path):
    """Scoring again into the same directory with another model (or the same path holding other weights)
    is refused in one line; the first model's scores and manifest stay as they were."""
    out = tmp_path / "scores"
    _annotate(corpus_dir, trained_annotator[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(StaleOutputError, match=r"other inputs \(model/"):
        _annotate(corpus_dir, other_annotator, out)
    # the same path, other weights (an annotator retrained in place)
    moving = tmp_path / "annotator"
    shutil.copytree(trained_annotator[0], moving)
    out2 = tmp_path / "scores2"
    _annotate(corpus_dir, moving, out2)
    shutil.rmtree(moving)
    shutil.copytree(other_annotator, moving)
    with pytest.raises(StaleOutputError, match=r"other inputs \(model/"):
        _annotate(corpus_dir, moving, out2)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # the command line: exit 2, one line; --force replaces the old scores
    cmd = [sys.executable, str(REPO / "tools/preprocess/annotate.py"), "--quiet", f"corpus={corpus_dir}",
           f"model={other_annotator}", f"out={out}", "device=cpu"]
    env = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 2 and last.startswith("annotate: error:") and "other inputs (model/" in last, run.stderr
    run = subprocess.run(cmd + ["--force"], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (json.loads((out / "step.json").read_text())["inputs"]
            != json.loads((out2 / "step.json").read_text())["inputs"])
    new = {r["id"]: r["score"] for r in read_scores(out)}
    old = {r["id"]: r["score"] for r in read_scores(out2)}
    assert new.keys() == old.keys() and all(new[k] != old[k] for k in new)  # every score is the new model's


def test_select_refuses_stale_tables_of_a_rescored_corpus(trained_annotator, other_annotator, corpus_dir,
                                                          small_tokenizer, tmp_path):
    """select, then the corpus is scored again by another model at the same path: the same select
    command is refused (its tables hold the old scores); --force selects by the new scores."""
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_dir, corpus)
    _annotate(corpus, trained_annotator[0])
    total = records.read_manifest(corpus)["content_bytes"]
    cfg = SelectConfig(corpus=str(corpus), tokenizer=str(small_tokenizer), out=str(tmp_path / "p2"),
                       budget_tokens=total // 12)
    select(cfg, **QUIET)
    shutil.rmtree(corpus / "scores")
    _annotate(corpus, other_annotator)
    with pytest.raises(StaleOutputError, match=r"other inputs \(scores"):
        select(cfg, **QUIET)
    select(cfg, force=True, **QUIET)
    new = {r["id"]: r["score"] for r in read_scores(corpus / "scores")}
    selected = list(records.iter_records(tmp_path / "p2"))
    assert selected and all(r.meta["annotator"]["score"] == new[r.id] for r in selected)


def test_duplicate_ids_keep_their_own_scores(trained_annotator, corpus_dir, small_tokenizer, tmp_path):
    """Two documents with one id (the best and the worst of a language): each is selected, or not, by
    its own score, and carries its own score."""
    plain = tmp_path / "plain"
    shutil.copytree(corpus_dir, plain)
    _annotate(plain, trained_annotator[0])
    rows = list(read_scores(plain / "scores"))
    python = [r for r in rows if r["language"] == "Python" and r["score"] is not None]
    best, worst = max(python, key=lambda r: r["score"]), min(python, key=lambda r: r["score"])
    docs = list(records.iter_records(plain))
    best_content = next(d.content for d in docs if d.id == best["id"])
    corpus = tmp_path / "dups"
    w = records.ShardedWriter(corpus, records_per_shard=60)
    for r in docs:
        if r.id == worst["id"]:
            r.id = best["id"]  # the worst document now carries the best one's id
        w.add(r)
    w.close()
    _annotate(corpus, trained_annotator[0])
    total = records.read_manifest(corpus)["content_bytes"]
    out = tmp_path / "p2"
    select(SelectConfig(corpus=str(corpus), tokenizer=str(small_tokenizer), out=str(out), budget_tokens=total // 12),
           **QUIET)
    plan = json.loads((out / "selection_report.json").read_text())
    cutoff = plan["languages"]["Python"]["score_cutoff"]
    assert worst["score"] < cutoff <= best["score"]
    chosen = [r for r in records.iter_records(out) if r.id == best["id"]]
    assert len(chosen) == 1 and chosen[0].meta["annotator"]["score"] == best["score"]
    assert chosen[0].content == best_content
    for r in records.iter_records(out):  # every selected document carries a score at or above its cut-off
        assert r.meta["annotator"]["score"] >= plan["languages"][r.language]["score_cutoff"]


TOOLS = {  # script -> (step, a setting its --help must list with its default)
    "train_tokenizer.py": ("train-tokenizer", "vocab_size = 64000"),
    "build_index.py": ("build-index", "chunk_bytes = 67108864"),
    "make_tiny_encoder.py": ("make-tiny-encoder", "max_positions = 128"),
    "train_annotator.py": ("train-annotator", "data.negatives_per_positive = 1.0"),
    "annotate.py": ("annotate", "batch_size = 64"),
    "alignment.py": ("alignment", "negatives = 1000"),
    "select_data.py": ("select", "repetition = 4"),
}


@pytest.mark.parametrize("script", sorted(TOOLS))
def test_every_tool_has_help(script):
    """`tools/preprocess/X.py --help` and `python -m megatron_snow STEP --help` list the settings with
    defaults and meaning; no tool edits sys.path."""
    step, setting = TOOLS[script]
    path = REPO / "tools/preprocess" / script
    assert "sys.path" not in path.read_text()
    for cmd in ([sys.executable, str(path), "--help"], [sys.executable, "-m", "megatron_snow", step, "--help"]):
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
        assert run.returncode == 0, run.stderr[-2000:]
        assert setting in run.stdout and "exit codes" in run.stdout, run.stdout[-3000:]
