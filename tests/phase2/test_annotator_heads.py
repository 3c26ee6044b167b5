"""Annotator heads (the paper's ``linear``, FineWeb-Edu's ``pooler``) and thread-count determinism (issue 27)."""
from __future__ import annotations

import hashlib

import pytest
import torch

from megatron_snow.config import load_config

MAX_POSITIONS = 128  # the tiny encoder of conftest.py


def _cfg(encoder_dir, corpus_dir, positives, out, *extra):
    from megatron_snow.phase2.annotator import TrainAnnotatorConfig

    files_dir, _ = positives
    return load_config(TrainAnnotatorConfig, None, [
        f"encoder={encoder_dir}", f"out={out}", "epochs=3", "batch_size=16", "micro_batch_size=16",
        f"max_length={MAX_POSITIONS}", "val_fraction=0.2", "test_fraction=0.2", f"data.corpus={corpus_dir}",
        f"data.positives=[{{path: {files_dir}, limit: 40, kind: code}}]", *extra])


def test_linear_head_is_one_layer_on_the_first_token(encoder_dir, corpus_dir, positives, tmp_path):
    from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer

    from megatron_snow.phase2.annotator import train_annotator
    from megatron_snow.phase2.scoring import Scorer

    logs: list[str] = []
    out = tmp_path / "linear"
    train_annotator(_cfg(encoder_dir, corpus_dir, positives, out, "mode=frozen", "head=linear", "lr=0.01"),
                    log=logs.append)
    hidden = AutoModel.from_pretrained(encoder_dir).config.hidden_size
    assert any(f"trainable params={hidden + 1:,}" in line for line in logs), logs  # one weight row and a bias
    model = AutoModelForTokenClassification.from_pretrained(out).eval()  # loads with plain transformers
    before = AutoModel.from_pretrained(encoder_dir, add_pooling_layer=False).state_dict()
    assert all(torch.equal(v, before[k]) for k, v in model.bert.state_dict().items())  # frozen encoder
    texts = ["def add(a, b):\n    return a + b\n", "#include <stdio.h>\nint main(void);\n"]
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        cls = model.bert(**tok(texts, padding=True, return_tensors="pt"))[0][:, 0]  # first-token output
        expected = torch.sigmoid(cls @ model.classifier.weight[0] + model.classifier.bias[0])
    got = [s.score for s in Scorer(out, device="cpu").score_texts(texts)]
    assert got == pytest.approx(expected.tolist(), abs=1e-6)


def test_pooler_head_is_dense_tanh_then_linear(encoder_dir, corpus_dir, positives, tmp_path):
    from transformers import AutoModel, AutoModelForSequenceClassification

    from megatron_snow.phase2.annotator import train_annotator

    logs: list[str] = []
    out = tmp_path / "pooler"
    train_annotator(_cfg(encoder_dir, corpus_dir, positives, out, "mode=frozen", "head=pooler"), log=logs.append)
    hidden = AutoModel.from_pretrained(encoder_dir).config.hidden_size
    assert any(f"trainable params={hidden * hidden + hidden + hidden + 1:,}" in line for line in logs), logs
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model.bert.pooler.activation) is torch.nn.Tanh


def _digest(directory) -> dict[str, str]:
    """Every output file's hash (train_config.yaml names the output directory, which differs here)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.is_file() and p.name != "train_config.yaml"}


def test_same_bytes_whatever_the_thread_count(encoder_dir, corpus_dir, positives, tmp_path):
    """Full fine-tuning (embedding gradients included) and scoring, with the machine at 1 and at 2 threads."""
    from megatron_snow.phase2.annotator import train_annotator
    from megatron_snow.phase2.scoring import Scorer

    before = torch.get_num_threads()
    outs, scores = [], []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out = tmp_path / f"threads{n}"
            train_annotator(_cfg(encoder_dir, corpus_dir, positives, out, "mode=full", "lr=0.001", "epochs=2"),
                            log=lambda *a: None)
            outs.append(_digest(out))
            scores.append([s.score for s in Scorer(out, device="cpu").score_texts(["x = 1\n" * 300, "int y;\n"])])
            assert torch.get_num_threads() == n  # the machine's setting is given back
    finally:
        torch.set_num_threads(before)
    assert outs[0] == outs[1] and "model.safetensors" in outs[0]
    assert scores[0] == scores[1]
    import json

    metrics = json.loads((tmp_path / "threads1" / "metrics.json").read_text())
    assert metrics["torch_threads"] == 1 and metrics["deterministic_algorithms"] is True


def test_paper_scale_config_uses_the_papers_linear_head():
    from pathlib import Path

    from megatron_snow.phase2.annotator import TrainAnnotatorConfig

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(TrainAnnotatorConfig, repo / "examples/snowcoder_1.3b/annotator.yaml")
    assert cfg.head == "linear" and TrainAnnotatorConfig().head == "pooler"
