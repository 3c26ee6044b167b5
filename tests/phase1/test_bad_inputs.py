"""Phase 1 over 40+ kinds of bad records and files (tests/bad_inputs.py) under 1 and 2 MPI ranks:
no traceback, every record accounted for by a named reason, every good record kept."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from megatron_snow.config import load_config
from megatron_snow.dist import Comm
from megatron_snow.funnel import Funnel
from megatron_snow.phase1.pipeline import STAGE_DIRS, Phase1Config, run_phase1
from megatron_snow.records import iter_records, read_manifest
from tests.bad_inputs import build_bad_corpus, config_for
from tests.phase1.test_pipeline import assert_ranks, tree


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, benchmarks_dir):
    d = tmp_path_factory.mktemp("bad_inputs")
    corpus = build_bad_corpus(d / "corpus")
    cfg_path = d / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(config_for(corpus, d / "out", benchmarks_dir)))
    run_phase1(load_config(Phase1Config, cfg_path), comm=Comm(None))
    return corpus, cfg_path, d / "out"


def test_every_bad_input_counted_by_reason_and_every_good_record_kept(bad_run):
    corpus, _, out = bad_run
    assert len(corpus.kinds) >= 20
    ingest = Funnel.read(out / "01_ingest" / "funnel.json")
    assert ingest.reasons() == corpus.expected
    # every set-aside record names where it came from
    for r in iter_records(out / "01_ingest" / "dropped"):
        d = r.meta["dropped"]
        assert r.id and d["reason"] in corpus.expected
        assert r.source in ("dir", "jl", "st") or d.get("file"), r
    # every stage balances and hands on exactly what it kept
    prev_kept = None
    for stage, sub in STAGE_DIRS.items():
        f = Funnel.read(out / sub / "funnel.json")
        f.check()
        if prev_kept is not None:
            assert f.total("in")[0] == prev_kept, stage
        prev_kept = read_manifest(out / sub)["records"] if stage != "group" else None
    docs = list(iter_records(out / "07_grouped"))
    grouped_ids = {i for d in docs for i in d.meta["file_ids"]}
    assert corpus.good_ids <= grouped_ids, sorted(corpus.good_ids - grouped_ids)
    assert int(corpus.notes["truncated_kept"]) > 0
    assert "dir/odd_names/caf\\xe9.py" in grouped_ids  # a name that is not UTF-8, kept with the byte escaped


@pytest.mark.mpi
def test_two_ranks_same_output_no_traceback(bad_run, tmp_path, repo_root):
    corpus, cfg_path, ref = bad_run
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["output_dir"] = str(tmp_path / "out")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "megatron_snow", "phase1", "--config",
                        str(tmp_path / "cfg.yaml")], capture_output=True, text=True, timeout=600, cwd=repo_root)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    mine, theirs = tree(ref), tree(tmp_path / "out")
    assert sorted(mine) == sorted(theirs) and [k for k in mine if mine[k] != theirs[k]] == []
    for sub in STAGE_DIRS.values():
        assert_ranks(tmp_path / "out" / sub, 2)


def _cli(repo_root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "megatron_snow", "phase1", *args], capture_output=True, text=True,
                          timeout=300, cwd=repo_root)


def test_rerun_with_other_sources_refused_and_force_replaces(bad_run, tmp_path, repo_root):
    corpus, cfg_path, _ = bad_run
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["output_dir"] = str(tmp_path / "out")
    cfg["ingest"]["sources"] = cfg["ingest"]["sources"][1:2]  # the JSONL files only: quick
    cfg["stages"] = ["ingest", "filter"]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(cfg))
    assert _cli(repo_root, "--config", str(tmp_path / "a.yaml")).returncode == 0
    before = read_manifest(tmp_path / "out" / "01_ingest")["records"]
    cfg["ingest"]["sources"] = cfg["ingest"]["sources"] + [{"kind": "stack", "path": str(corpus.root / "stack")}]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    p = _cli(repo_root, "--config", str(tmp_path / "b.yaml"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "01_ingest was made with other settings (ingest.sources[1]." in p.stderr and "'<unset>' ->" in p.stderr
    assert read_manifest(tmp_path / "out" / "01_ingest")["records"] == before
    p = _cli(repo_root, "--config", str(tmp_path / "b.yaml"), "--force")
    assert p.returncode == 0, p.stderr[-2000:]
    assert read_manifest(tmp_path / "out" / "01_ingest")["records"] > before
    step = json.loads((tmp_path / "out" / "01_ingest" / "step.json").read_text())
    assert len(step["settings"]["ingest"]["sources"]) == 2


@pytest.mark.parametrize("override,message", [
    ("grouping.num_shards=0", "grouping.num_shards=0 is out of range [1, 1000000]"),
    ("near_dedup.threshold=1.5", "threshold must be in (0, 1], got 1.5"),
    ("near_dedup.ngram=0", "ngram must be in [1, 64], got 0"),
    ("filter.default.min_alphanum_fraction=-0.1", "filter.default.min_alphanum_fraction=-0.1 is out of range [0, 1]"),
    ("filter.per_language={sql: {max_line_length: 0}}", "filter.per_language.sql.max_line_length=0 is out of range"),
    ("ingest.max_read_bytes=0", "ingest.max_read_bytes=0 is out of range >= 1"),
    ("stages=[ingest,dedup]", "stages: unknown ['dedup']"),
])
def test_settings_out_of_range_are_one_line_exit_2(repo_root, override, message):
    p = _cli(repo_root, override)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and message in p.stderr, p.stderr


def test_malformed_yaml_names_file_and_line(repo_root, tmp_path):
    (tmp_path / "bad.yaml").write_text("output_dir: x\ningest:\n  sources: [{kind: jsonl, path: a}\nfilter: {}\n")
    p = _cli(repo_root, "--config", str(tmp_path / "bad.yaml"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and f"{tmp_path / 'bad.yaml'}:4:" in p.stderr, p.stderr
    p = _cli(repo_root, f"output_dir={tmp_path / 'o'}")
    assert p.returncode == 2 and "ingest.sources: no input sources configured" in p.stderr, p.stderr
