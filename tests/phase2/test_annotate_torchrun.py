"""Annotate under torchrun (one process per GPU on clusters, no MPI): the same scores, byte for byte, as one
process and as ``mpiexec -n 2``, with both torchrun processes doing their share."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from megatron_snow import records
from megatron_snow.phase2.score_store import read_scores
from megatron_snow.phase2.scoring import main
from megatron_snow.stages.runner import RANKS_FILE
from tests.test_dist import clean_env

REPO = Path(__file__).resolve().parents[2]
ANNOTATE = str(REPO / "tools/preprocess/annotate.py")


@pytest.fixture(scope="module")
def small_job(corpus_tools, tmp_path_factory) -> tuple[Path, Path]:
    """(a 4-shard corpus of real local code, one document short, one without tokens; a tiny BERT annotator:
    a WordPiece vocabulary learnt on the corpus and a BERT with a seeded classifier head, saved)."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    from megatron_snow.phase2.tiny_encoder import make_tiny_encoder

    root = tmp_path_factory.mktemp("annotate_torchrun")
    docs = corpus_tools.local_code_files(per_language=5)
    docs.insert(7, ("/empty.py", "Python", "\n\n   \n"))  # no tokens: set aside as no_tokens
    docs.insert(2, ("/short.py", "Python", "x = 1\n"))  # one window (the others have three)
    corpus = corpus_tools.write_corpus(root / "corpus", docs, per_shard=5)
    assert len(records.list_shards(corpus)) == 4
    encoder = make_tiny_encoder([t for _, _, t in docs], root / "encoder", hidden_size=32, max_positions=64)
    torch.manual_seed(1)
    model = BertForSequenceClassification.from_pretrained(
        encoder, num_labels=2, id2label={0: "low_quality", 1: "high_quality"},
        label2id={"low_quality": 0, "high_quality": 1})
    annotator = root / "annotator"
    model.save_pretrained(annotator)
    AutoTokenizer.from_pretrained(encoder).save_pretrained(annotator)
    return corpus, annotator


def _args(corpus: Path, model: Path, out: Path) -> list[str]:
    # max_length below the model's 64 positions: long documents get three windows
    return [ANNOTATE, "--quiet", f"corpus={corpus}", f"model={model}", f"out={out}", "batch_size=4",
            "docs_per_chunk=3", "max_length=40", "device=auto"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RANKS_FILE}


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=cwd, env=clean_env())
    assert p.returncode == 0, (cmd[:6], p.stderr[-3000:])
    return p


@pytest.mark.slow  # two launches of 2 processes (each loads torch and transformers) and one in-process run
@pytest.mark.distributed
@pytest.mark.mpi
def test_annotate_under_torchrun_equals_one_process_and_mpiexec(small_job, tmp_path, monkeypatch):
    if shutil.which("mpiexec") is None:
        pytest.skip("mpiexec not on PATH")
    corpus, model = small_job
    outs = {k: tmp_path / k for k in ("one", "mpi", "torch")}
    # one process, in this one (one thread, as each launched process has: the same float sums)
    monkeypatch.setenv("MEGATRON_SNOW_NO_MPI", "1")  # (not passed to the launched jobs: clean_env)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(_args(corpus, model, outs["one"])[1:]) == 0
    finally:
        torch.set_num_threads(threads)
    _run(["mpiexec", "-n", "2", sys.executable, *_args(corpus, model, outs["mpi"])], tmp_path)
    t = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
              *_args(corpus, model, outs["torch"])], tmp_path)
    # each torchrun process loaded the annotator on its own device (CPU here; its LOCAL_RANK's GPU on a GPU node)
    assert "[annotate rank 0/2] device=cpu" in t.stdout and "[annotate rank 1/2] device=cpu" in t.stdout, t.stdout

    one, mpi, torch_ = (_files(outs[k]) for k in ("one", "mpi", "torch"))
    assert sorted(one) == sorted(torch_) and "manifest.json" in one and "part-00003.jsonl.gz" in one
    assert one == mpi == torch_  # byte-identical scores, funnel, stats, manifests, step fingerprint
    for k, world in (("one", 1), ("mpi", 2), ("torch", 2)):
        ranks = json.loads((outs[k] / RANKS_FILE).read_text())
        assert ranks["world_size"] == world
        assert [(r["rank"], r["world_size"]) for r in ranks["ranks"]] == [(i, world) for i in range(world)]
    torch_ranks = json.loads((outs["torch"] / RANKS_FILE).read_text())["ranks"]
    assert [r["units"] for r in torch_ranks] == [[0, 2], [1, 3]]  # both processes scored their shards
    assert torch_ranks[0]["pid"] != torch_ranks[1]["pid"]
    # the scores are real: one row per document, in corpus order, the empty one set aside
    rows = list(read_scores(outs["torch"]))
    ids = [r.id for r in records.iter_records(corpus)]
    assert [r["id"] for r in rows] == ids
    assert [r["dropped"] for r in rows].count("no_tokens") == 1
    assert all(0.0 < r["score"] < 1.0 for r in rows if r["dropped"] is None)
    assert any(len(r["window_scores"]) == 3 for r in rows) and any(len(r["window_scores"]) == 1 for r in rows)
