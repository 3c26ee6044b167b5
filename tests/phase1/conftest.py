"""Phase-1 fixtures: one real-code corpus with planted cases, and one reference pipeline run over it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from megatron_snow.config import load_config
from megatron_snow.dist import Comm
from megatron_snow.phase1.pipeline import Phase1Config, run_phase1
from tests.phase1.corpus import build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, benchmarks_dir):
    return build_corpus(tmp_path_factory.mktemp("corpus") / "repos", benchmarks_dir)


def write_config(path: Path, corpus_root: Path, out: Path, benchmarks_dir: Path) -> Path:
    cfg = {
        "output_dir": str(out),
        "progress": False,
        "ingest": {"sources": [{"kind": "directory", "path": str(corpus_root), "name": "local",
                                "files_per_shard": 40}]},
        "decontaminate": {"benchmarks_dir": str(benchmarks_dir)},
        "grouping": {"num_shards": 3, "seed": 1234},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def phase1_run(tmp_path_factory, corpus, benchmarks_dir):
    """The reference run: single process, in this process; returns (config path, output dir, corpus)."""
    d = tmp_path_factory.mktemp("phase1_ref")
    cfg_path = write_config(d / "cfg.yaml", corpus.root, d / "out", benchmarks_dir)
    cfg = load_config(Phase1Config, cfg_path)
    run_phase1(cfg, comm=Comm(None))
    return cfg_path, Path(cfg.output_dir), corpus
