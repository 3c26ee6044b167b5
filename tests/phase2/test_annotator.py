"""The annotator: metrics, training data, and a tiny BERT that really learns (full and frozen modes)."""
from __future__ import annotations

import collections
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from megatron_snow import records
from megatron_snow.config import load_config
from megatron_snow.funnel import Funnel
from megatron_snow.phase2.annotator import TrainAnnotatorConfig, train_annotator
from megatron_snow.phase2.metrics import binary_metrics, roc_auc
from megatron_snow.phase2.training_data import (PositiveSource, load_positives, render_record, sample_corpus)

MAX_POSITIONS = 128  # the tiny encoder of conftest.py


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.integers(0, 10, 200) / 10  # many ties
    pairs = [(p, n) for p, n in itertools.product(s[y == 1], s[y == 0])]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert roc_auc(y, s) == pytest.approx(expected)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])


def test_binary_metrics_counts():
    m = binary_metrics([1, 1, 1, 0, 0], [0.9, 0.6, 0.2, 0.7, 0.1])
    assert (m.precision, m.recall) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert m.f1 == pytest.approx(2 / 3) and m.accuracy == pytest.approx(0.6)


def test_render_record_rules():
    assert render_record({"problem": " Add two numbers. ", "solution": "def add(a, b):\n    return a + b\n"}) == \
        "Add two numbers.\n\ndef add(a, b):\n    return a + b"
    assert render_record({"instruction": "Say hi", "response": "print('hi')"}) == "Say hi\n\nprint('hi')"
    assert render_record({"content": "int main;", "instruction": "x", "response": "y"}, kind="code") == "int main;"
    assert render_record({"text": "code"}) == "code"
    assert render_record({"instruction": "no answer"}, kind="instruction") == ""
    with pytest.raises(ValueError, match="kind"):
        render_record({}, kind="nope")


def test_load_positives_counts_empty_records(tmp_path):
    f = tmp_path / "pos.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"problem": "p", "solution": "s", "lang": "python"}, {"content": "   "},
        {"code": "x = 1", "language": "Python"}]))
    funnel = Funnel("t")
    ex = load_positives([PositiveSource(str(f))], max_chars=100, funnel=funnel)
    assert [e.text for e in ex] == ["p\n\ns", "x = 1"] and all(e.label == 1 for e in ex)
    funnel.check()
    assert funnel.reasons() == {"empty": 1}
    with pytest.raises(FileNotFoundError, match="hf:NAME"):
        load_positives([PositiveSource(str(tmp_path / "missing.jsonl"))], 100, Funnel("t"))


def test_sample_corpus_uniform_without_replacement(corpus_dir):
    all_ids = [r.id for r in records.iter_records(corpus_dir)]
    a = sample_corpus(corpus_dir, 50, seed=3)
    assert len({r.id for r in a}) == 50 and {r.id for r in a} <= set(all_ids)
    assert [r.id for r in a] == [r.id for r in sample_corpus(corpus_dir, 50, seed=3)]
    # Every shard contributes (drawn by global index over the manifest's counts).
    shards = {r.id: i for i, s in enumerate(records.list_shards(corpus_dir)) for r in records.read_shard(s)}
    assert len({shards[r.id] for r in a}) == len(records.list_shards(corpus_dir))
    excluded = set(all_ids[: len(all_ids) - 30])
    b = sample_corpus(corpus_dir, 30, seed=1, exclude=excluded)
    assert {r.id for r in b} == set(all_ids[len(all_ids) - 30 :])
    with pytest.raises(ValueError, match="not excluded"):
        sample_corpus(corpus_dir, 31, seed=1, exclude=excluded)
    with pytest.raises(ValueError, match="corpus"):
        sample_corpus(corpus_dir, len(all_ids) + 1, seed=1)


@pytest.fixture(scope="module")
def python_negatives(tmp_path_factory, corpus_tools) -> Path:
    """Negatives in the positives' language: random Python files (the standard library's tests), so the
    annotator cannot separate the classes by language, as it could against a C/C++/Python corpus."""
    docs = [d for d in corpus_tools.local_code_files(per_language=240) if d[1] == "Python"]
    assert len(docs) >= 220, len(docs)
    return corpus_tools.write_corpus(tmp_path_factory.mktemp("python_corpus"), docs, per_shard=60)


def _annotator_config(encoder, out, corpus, positives, *extra):
    files_dir, jsonl = positives
    return load_config(TrainAnnotatorConfig, None, [
        f"encoder={encoder}", f"out={out}", f"max_length={MAX_POSITIONS}", "val_fraction=0.15", "test_fraction=0.2",
        f"data.corpus={corpus}",
        f"data.positives=[{{path: {files_dir}, limit: 100, kind: code}}, {{path: {jsonl}, limit: 100}}]", *extra])


@pytest.fixture(scope="module")
def python_annotator(tmp_path_factory, python_negatives, positives, encoder_dir):
    """An annotator fine-tuned (full mode) on Python positives vs Python negatives: (directory, result, log)."""
    out = tmp_path_factory.mktemp("python_annotator")
    logs = []
    cfg = _annotator_config(encoder_dir, out, python_negatives, positives, "mode=full", "lr=0.001", "epochs=6",
                            "batch_size=16", "micro_batch_size=16")
    return out, train_annotator(cfg, log=logs.append), logs


def _languages(paths: list[str]) -> collections.Counter:
    return collections.Counter("Python" if p.endswith(".py") else "other" for p in paths)


def test_tiny_bert_learns_quality_full_finetuning(python_annotator, python_negatives, positives):
    """Criterion 5: random-init BERT + WordPiece trained here separates the positive sources (documented
    standard-library modules, and instruction records made from their functions) from random corpus
    files of the same language, on held-out examples."""
    out, result, logs = python_annotator
    # the same language on both sides: every positive and every negative is Python
    neg_ids = set((out / "negative_ids.txt").read_text().split())
    paths = {r.id: r.path for r in records.iter_records(python_negatives)}
    assert len(neg_ids) == 200 and neg_ids <= set(paths) and _languages([paths[i] for i in neg_ids]) == {"Python": 200}
    assert all(p.suffix == ".py" for p in positives[0].iterdir())
    assert {json.loads(x)["lang"] for x in positives[1].read_text().splitlines()} == {"python"}
    # held-out separation: a bar far above chance (0.5) for 80 test examples
    assert result.test.roc_auc > 0.9, logs
    assert result.test.f1 > 0.8, logs
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch
    # The kept checkpoint is the epoch with the best validation F1.
    assert max(h["f1"] for h in metrics["history"]) == metrics["history"][result.best_epoch - 1]["f1"]
    assert metrics["positives"] == metrics["negatives"] == 200  # balanced
    Funnel.read(out / "training_data_funnel.json").check()


def test_saved_annotator_loads_in_transformers_pipeline(python_annotator):
    """The saved directory is a transformers text-classification model: its pipeline gives each text the
    score our Scorer gives it (one output, "high_quality", through a sigmoid)."""
    from transformers import pipeline

    from megatron_snow.phase2.scoring import Scorer

    out, _, _ = python_annotator
    texts = ["def add(a, b):\n    \"\"\"Return the sum.\"\"\"\n    return a + b\n",
             "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        self.assertTrue(1)\n"]
    pipe = pipeline("text-classification", model=str(out), tokenizer=str(out), device="cpu")
    assert pipe.model.config.id2label == {0: "high_quality"}  # one output: its label is the only one there is
    got = pipe(texts)
    ours = Scorer(out, device="cpu").score_texts(texts)
    for g, o in zip(got, ours):
        assert g["score"] == pytest.approx(o.score, abs=1e-5)  # short texts: one window, same score


def test_frozen_mode_trains_head_only(python_annotator, python_negatives, positives, tmp_path):
    """FineWeb-Edu recipe: embeddings and encoder layers stay fixed, pooler + linear head learn."""
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    # A pretrained encoder to freeze: the module's fine-tuned annotator without its head.
    encoder = tmp_path / "encoder"
    AutoModel.from_pretrained(python_annotator[0]).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(python_annotator[0]).save_pretrained(encoder)
    cfg = _annotator_config(encoder, tmp_path / "frozen", python_negatives, positives, "mode=frozen", "epochs=20",
                            "batch_size=32", "data.seed=7")
    logs = []
    result = train_annotator(cfg, log=logs.append)
    assert any("mode=frozen" in line and "trainable params=4,225" in line for line in logs), logs  # pooler + head
    before = AutoModel.from_pretrained(encoder).state_dict()
    after = AutoModelForSequenceClassification.from_pretrained(tmp_path / "frozen")
    changed = {k for k, v in after.bert.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"pooler.dense.weight", "pooler.dense.bias"}, changed
    assert result.test.roc_auc > 0.9, logs
    assert len(result.history) == 20
    # The head trained on cached [CLS] states computes what the saved model computes end to end.
    from megatron_snow.phase2.annotator import _Head

    after.eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "frozen")
    batch = tok(["def f(x):\n    return x\n", "#include <stdio.h>\nint main(void);\n"], padding=True,
                return_tensors="pt")
    with torch.no_grad():
        cls_state = after.bert(**batch)[0][:, 0]
        assert torch.allclose(_Head(after)(cls_state), after(**batch).logits, atol=1e-5)


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    tools = Path(__file__).resolve().parents[2] / "tools/preprocess"
    cases = [  # bad input: exit code 2 and one line naming the problem
        (["train_annotator.py", "mode=frozen", "epochs=many"], "train-annotator", "epochs: expected int"),
        (["train_annotator.py", "epochs=0"], "train-annotator", "epochs=0 is out of range"),
        (["train_annotator.py", f"out={tmp_path}", "data.positives=[{path: x}]"], "train-annotator", "data.corpus"),
        (["annotate.py", "corpus=/nonexistent", "model=/nonexistent"], "annotate", "no shards in corpus /nonexistent"),
        (["annotate.py", "batch_size=-1"], "annotate", "batch_size=-1 is out of range"),
        (["alignment.py", "corpus=/x"], "alignment", "alignment needs model="),
        (["select_data.py", "repetition=0"], "select", "repetition=0 is out of range"),
    ]
    for argv, prog, message in cases:
        run = subprocess.run([sys.executable, str(tools / argv[0]), *argv[1:]], capture_output=True, text=True,
                             timeout=120)
        last = run.stderr.strip().splitlines()[-1]
        assert run.returncode == 2 and last.startswith(f"{prog}: error:") and message in last, run.stderr[-2000:]
        assert "Traceback" not in run.stderr
