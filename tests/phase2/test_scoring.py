"""Window scoring of long documents and the resumable, sharded annotate run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from megatron_snow import records
from megatron_snow.funnel import Funnel
from megatron_snow.phase2.score_store import read_score_shard, read_scores
from megatron_snow.phase2.scoring import AnnotateConfig, Scorer, annotate_corpus, window_spans
from tests.shipped_files import stdlib_modules, stdlib_package

REPO = Path(__file__).resolve().parents[2]


def test_window_spans():
    assert window_spans(0, 10) == []
    assert window_spans(7, 10) == [(0, 7)]
    assert window_spans(10, 10) == [(0, 10)]
    assert window_spans(11, 10) == [(0, 10), (0, 10), (1, 11)]
    assert window_spans(100, 10) == [(0, 10), (45, 55), (90, 100)]
    with pytest.raises(ValueError):
        window_spans(5, 0)


def _planted(marker: str, n_words: int) -> str:
    return " ".join(f"{marker}{i % 10}" for i in range(n_words))


@pytest.fixture(scope="module")
def scorer(trained_annotator):
    return Scorer(trained_annotator[0], device="cpu", batch_size=8)


def test_windows_take_top_middle_bottom(scorer):
    """A document planted with known content at its top, middle and bottom: each window holds one part."""
    w = scorer.window
    top, mid, bot = "TOPMARK", "MIDMARK", "BOTMARK"
    n_tokens = lambda text: len(scorer._ids([text])[0])  # noqa: E731  (pieces add up across whitespace)
    top_text, bot_text = _planted(top, w), _planted(bot, w)  # >= w tokens each
    imbalance = abs(n_tokens(top_text) - n_tokens(bot_text))
    k = w
    while n_tokens(_planted(mid, k)) < w + imbalance + 2:  # wide enough to hold the centred window
        k += w
    filler = _planted("filler", w)
    doc = "\n".join([top_text, filler, _planted(mid, k), filler, bot_text])
    (wins,) = scorer.windows([doc])
    assert len(wins) == 3 and all(len(x) == w for x in wins)
    decoded = [scorer.tokenizer.decode(x) for x in wins]
    assert top in decoded[0] and mid not in decoded[0] and bot not in decoded[0]
    assert mid in decoded[1] and top not in decoded[1] and bot not in decoded[1]
    assert bot in decoded[2] and top not in decoded[2] and mid not in decoded[2]
    ids = scorer._ids([doc])[0]
    full = [ids[a:b] for a, b in window_spans(len(ids), w)]
    assert wins[0] == full[0] and wins[2] == full[2]


def test_long_document_slices_give_the_same_windows(scorer):
    """Documents over the slicing threshold tokenize only head/middle/tail; the windows equal the full ones."""
    from megatron_snow.phase2 import scoring

    w = scorer.window
    n = scoring.CHARS_PER_TOKEN_SLICE * w * 3 // 5 + 50
    doc = _planted("alpha", n) + " middle " + _planted("alpha", n)
    assert len(doc) > 3 * w * scoring.CHARS_PER_TOKEN_SLICE  # takes the sliced path
    (sliced,) = scorer.windows([doc])
    ids = scorer._ids([doc])[0]
    full = [ids[a:b] for a, b in window_spans(len(ids), w)]
    assert sliced[0] == full[0] and sliced[2] == full[2]
    assert scorer.tokenizer.decode(sliced[1]).count("middle") == 1
    assert scorer.tokenizer.decode(full[1]).count("middle") == 1


def test_document_score_is_the_mean_of_its_window_scores(scorer, trained_annotator):
    """Each window scored alone through the plain transformers model; the document gets their mean."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(trained_annotator[0]).eval()
    # real C and Python of CPython 3.11.7, shipped in the repository (a 31 kB header, three stdlib modules)
    c_code = next(t for p, _, t in stdlib_package("cpython-include") if p.endswith("/abstract.h"))
    py_code = "\n".join([t for p, _, t in stdlib_modules() if Path(p).name[0] in "abc"][:3])
    docs = [py_code[:20000], c_code[:20000], "x = 1\n", "   \n\t"]
    results = scorer.score_texts(docs)
    for doc, res in zip(docs, results):
        wins = scorer.windows([doc])[0]
        assert len(res.window_scores) == len(wins)
        for win, s in zip(wins, res.window_scores):
            ids = torch.tensor([scorer.prefix + win + scorer.suffix])
            with torch.no_grad():
                p = torch.sigmoid(model(input_ids=ids).logits[0, 0]).item()
            assert s == pytest.approx(p, abs=1e-5)
        if wins:
            assert res.score == pytest.approx(np.mean(res.window_scores))
    assert len(results[0].window_scores) == 3 and len(results[2].window_scores) == 1
    assert results[3].score is None and results[3].window_scores == []
    # The annotator learnt what it was trained on: library Python above C headers.
    assert results[0].score > results[1].score


def test_score_shard_sets_aside_documents_without_tokens(scorer, tmp_path):
    from megatron_snow.phase2.score_store import scores_funnel
    from megatron_snow.phase2.scoring import score_shard

    shard = tmp_path / "corpus" / "part-00000.jsonl.gz"
    records.write_shard(shard, [records.CodeRecord("a", "int x = 1;\n", "C"), records.CodeRecord("b", " \n\t ", "C"),
                                records.CodeRecord("c", "x = 2\n", "Python")])
    score_shard(scorer, shard, tmp_path / "scores" / shard.name)
    rows = read_score_shard(tmp_path / "scores" / shard.name)
    assert [(r["id"], r["dropped"], r["score"] is None) for r in rows] == [
        ("a", None, False), ("b", "no_tokens", True), ("c", None, False)]
    funnel = scores_funnel(tmp_path / "scores")
    funnel.check()
    assert funnel.reasons() == {"no_tokens": 1} and funnel.total("kept")[0] == 2


def _snapshot(d: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in d.glob("part-*.jsonl.gz")}


def _annotate_cmd(corpus: Path, model: Path, out: Path) -> list[str]:
    return [sys.executable, str(REPO / "tools/preprocess/annotate.py"), "--quiet", f"corpus={corpus}",
            f"model={model}", f"out={out}", "batch_size=16", "docs_per_chunk=16"]


def test_killed_annotate_resumes_without_rescoring(trained_annotator, corpus_dir, tmp_path):
    """Criterion 5: a real SIGKILL mid-run; the same command then scores only the missing shards.

    The third corpus shard is a named pipe while the first run goes: reading it blocks, so the run is
    certainly killed in the middle (two shards done, two not) however fast the machine is.
    """
    corpus = tmp_path / "corpus"
    shutil.copytree(corpus_dir, corpus)
    shards = records.list_shards(corpus)
    assert len(shards) == 4
    held = tmp_path / "held.jsonl.gz"
    shutil.move(shards[2], held)
    os.mkfifo(shards[2])
    out = tmp_path / "scores"
    env = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1"}
    proc = subprocess.Popen(_annotate_cmd(corpus, trained_annotator[0], out), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not out.is_dir() or len(_snapshot(out)) < 2:
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline, "the first run never scored two shards"
            time.sleep(0.1)
        time.sleep(0.5)  # it is now blocked on shard 2
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    before = _snapshot(out)
    assert sorted(before) == [shards[0].name, shards[1].name]
    assert not (out / records.MANIFEST).exists()

    os.remove(shards[2])
    shutil.move(held, shards[2])
    rerun = subprocess.run(_annotate_cmd(corpus, trained_annotator[0], out), env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())["ranks"]
    assert ranks[0]["units"] == [2, 3], ranks  # only the two shards the killed run had not finished
    after = _snapshot(out)
    assert sorted(after) == sorted(s.name for s in shards)
    for name in before:
        assert after[name] == before[name], f"{name} was rewritten"
    manifest = records.read_manifest(out)
    corpus_ids = [r.id for r in records.iter_records(corpus)]
    assert manifest["records"] == len(corpus_ids)
    rows = list(read_scores(out))
    assert [r["id"] for r in rows] == corpus_ids
    assert all(0.0 <= r["score"] <= 1.0 and len(r["window_scores"]) in (1, 3) for r in rows)
    Funnel.read(out / "funnel.json").check()
    # A resumed run gives what an uninterrupted one gives: re-score shard 0 in this process.
    fresh = tmp_path / "fresh"
    from megatron_snow.phase2.scoring import score_shard

    score_shard(Scorer(trained_annotator[0], device="cpu"), shards[0], fresh / shards[0].name)
    for a, b in zip(read_score_shard(fresh / shards[0].name), read_score_shard(out / shards[0].name)):
        assert a["id"] == b["id"] and a["score"] == pytest.approx(b["score"], abs=1e-5)


@pytest.mark.mpi
def test_annotate_shards_over_mpi_ranks(trained_annotator, corpus_dir, tmp_path, monkeypatch):
    """Two real MPI ranks share the shards round-robin; the result equals the one-process run."""
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not on PATH")
    out = tmp_path / "scores"
    cmd = ["mpiexec", "-n", "2"] + _annotate_cmd(corpus_dir, trained_annotator[0], out)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = json.loads((out / "ranks.json").read_text())
    assert ranks["world_size"] == 2 and [(r["rank"], r["world_size"], r["units"]) for r in ranks["ranks"]] == [
        (0, 2, [0, 2]), (1, 2, [1, 3])]  # each rank reported its rank and world size, and scored its shards
    single = tmp_path / "single"
    monkeypatch.setenv("MEGATRON_SNOW_NO_MPI", "1")
    annotate_corpus(AnnotateConfig(corpus=str(corpus_dir), model=str(trained_annotator[0]), out=str(single),
                                   device="cpu"), log=lambda *_: None, show_progress=False)
    a, b = list(read_scores(out)), list(read_scores(single))
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert np.allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)
