"""The bad-records dataset (tests/bad_inputs.py) through build_index, train_tokenizer, annotate and select,
on 1 and 2 real MPI ranks: no traceback, every record accounted for by reason, every good record kept."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from megatron_snow import records
from megatron_snow.funnel import Funnel
from tests.bad_inputs import write_bad_records_dataset
from tests.rank_checks import assert_every_rank_did_units

REPO = Path(__file__).resolve().parents[2]
ENV1 = {**os.environ, "MEGATRON_SNOW_NO_MPI": "1"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad") / "corpus"
    info = write_bad_records_dataset(d)
    return d, info


@pytest.fixture(scope="module")
def sp_tokenizer(bad, tmp_path_factory):
    """A SentencePiece model trained (train-tokenizer, the real CLI) on the bad dataset itself."""
    d, info = bad
    model = tmp_path_factory.mktemp("tok") / "code.model"
    run = subprocess.run([sys.executable, str(REPO / "tools/preprocess/train_tokenizer.py"), "--input", str(d),
                          "--output", str(model), "vocab_size=400", "num_threads=1"],
                         capture_output=True, text=True, timeout=600, env=ENV1)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    report = json.loads(model.with_suffix(".json").read_text())
    funnel = Funnel.from_dict(report["funnel"])
    funnel.check()
    assert funnel.reasons() == info["expected"] and funnel.total("in")[0] == info["records"]
    assert report["eligible_documents"] == len(info["good_ids"])
    return model


def _launch(n: int, script: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "tools/preprocess" / script), *args]
    if n > 1:
        if shutil.which("mpiexec") is None:
            pytest.skip("mpiexec not on PATH")
        cmd = ["mpiexec", "-n", str(n)] + cmd
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV1 if n == 1 else os.environ)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout[-2000:] + run.stderr[-3000:]
    return run


def _check_funnel(path: Path, info: dict) -> Funnel:
    funnel = Funnel.read(path)
    funnel.check()
    assert funnel.total("in")[0] == info["records"]
    for reason, n in info["expected"].items():
        assert funnel.reasons().get(reason) == n, (reason, funnel.reasons())
    return funnel


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2])
def test_build_index_counts_every_bad_record(bad, sp_tokenizer, tmp_path, ranks):
    d, info = bad
    prefix = tmp_path / "idx"
    run = _launch(ranks, "build_index.py", "--input", str(d), "--tokenizer", str(sp_tokenizer),
                  "--output-prefix", str(prefix), "--workers", "2", "progress=false")
    if ranks == 2:  # each rank reported its rank and the world size, and built parts
        for r in (0, 1):
            assert re.search(rf"build_index rank {r}/2: built [1-9]", run.stdout), run.stdout[-2000:]
    funnel = _check_funnel(Path(f"{prefix}.funnel.json"), info)
    import gzip

    with gzip.open(f"{prefix}.docs.jsonl.gz", "rt") as f:
        ids = {json.loads(line)["id"] for line in f}
    assert ids == info["good_ids"] and funnel.total("kept")[0] == len(ids)


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [1, 2])
def test_annotate_and_select_count_every_bad_record(bad, sp_tokenizer, trained_annotator, tmp_path, ranks):
    d, info = bad
    corpus = tmp_path / "corpus"
    shutil.copytree(d, corpus)
    _launch(ranks, "annotate.py", "--quiet", f"corpus={corpus}", f"model={trained_annotator[0]}", "device=cpu")
    scores = corpus / "scores"
    funnel = _check_funnel(scores / "funnel.json", info)
    assert funnel.total("kept")[0] == len(info["good_ids"])
    from megatron_snow.phase2.score_store import read_scores

    assert {r["id"] for r in read_scores(scores) if r["score"] is not None} == info["good_ids"]
    ranks_json = json.loads((scores / "ranks.json").read_text())
    assert [(r["rank"], r["world_size"]) for r in ranks_json["ranks"]] == [(i, ranks) for i in range(ranks)]
    assert all(r["units"] for r in ranks_json["ranks"]), ranks_json  # every rank scored shards

    out = tmp_path / "p2"
    _launch(ranks, "select_data.py", "--quiet", f"corpus={corpus}", f"tokenizer={sp_tokenizer}", f"out={out}",
            "budget_tokens=2000")
    funnel = _check_funnel(out / "funnel.json", info)
    selected = {r.id for r in records.iter_records(out)}
    assert selected and selected <= info["good_ids"]
    assert funnel.total("kept")[0] == len(selected)
    assert funnel.reasons().get("below_cutoff", 0) == len(info["good_ids"]) - len(selected)
    assert_every_rank_did_units(out, ranks)  # select's passes too
