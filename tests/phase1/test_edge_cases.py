"""Cases found in review: each was a wrong result or a crash before its fix."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_snow.phase1.filters import FilterThresholds, filter_reason
from megatron_snow.phase1.ingest import IngestConfig, Ingestor, SourceConfig, list_units
from megatron_snow.phase1.pii import PIIConfig, redact


def test_version_strings_are_not_addresses_and_a_sentence_end_is():
    for code in ('[assembly: AssemblyVersion("1.0.0.0")]\n', '__version__ = "1.2.3.4"\n', "tag v1.2.3.4\n"):
        assert redact(code, PIIConfig()) == (code, {}), code
    assert redact("connect to 52.14.1.7.\n", PIIConfig()) == ("connect to <IP_ADDRESS>.\n", {"ip_address": 1})
    assert redact("oid 52.14.1.7.5\n", PIIConfig())[1] == {}  # five parts: not an IPv4 address


def test_average_line_length_is_the_mean_of_line_lengths():
    t = FilterThresholds()
    assert filter_reason(("x" * 100 + "\n") * 10, "a.py", t) is None  # mean exactly 100: kept (StarCoder)
    assert filter_reason(("x" * 101 + "\n") * 10, "a.py", t) == "avg_line_length"


def test_truncated_gzip_keeps_what_was_read_and_counts_the_rest(tmp_path):
    raw = "".join(json.dumps({"content": f"x = {i}\n", "path": f"f{i}.py"}) + "\n" for i in range(2000)).encode()
    whole = gzip.compress(raw)
    bad = tmp_path / "trunc.jsonl.gz"
    bad.write_bytes(whole[: len(whole) // 2])
    src = [SourceConfig(kind="jsonl", path=str(bad), name="crawl")]
    out = [x for u in list_units(src) for x in Ingestor(IngestConfig()).read_unit(u, src)]
    kept = [x for x in out if not hasattr(x, "reason")]
    dropped = [x for x in out if hasattr(x, "reason")]
    assert 0 < len(kept) < 2000 and [d.reason for d in dropped] == ["corrupt_gzip"]
    assert dropped[0].details["file"].endswith("trunc.jsonl.gz")


def test_dataset_language_label_wins_over_the_extension(tmp_path):
    table = pa.table({"content": ["int f();\n"], "max_stars_repo_name": ["o/q"], "max_stars_repo_path": ["x.h"],
                      "lang": ["C++"]})
    (tmp_path / "data").mkdir()
    pq.write_table(table, tmp_path / "data" / "s.parquet")
    src = [SourceConfig(kind="stack", path=str(tmp_path / "data"), name="stack")]
    out = [x for u in list_units(src) for x in Ingestor(IngestConfig()).read_unit(u, src)]
    assert [r.language for r in out] == ["cpp"]


@pytest.mark.mpi
def test_an_uncaught_error_on_one_rank_ends_the_mpi_job(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("from megatron_snow.dist import get_comm\nc = get_comm()\n"
                      "if c.rank == 1:\n    raise EOFError('rank 1 fails')\nc.barrier()\nprint('unreachable')\n")
    run = subprocess.run(["mpiexec", "-n", "2", sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode != 0 and "rank 1 fails" in run.stderr and "unreachable" not in run.stdout


def test_ten_gram_rule_ignores_literal_heavy_ngrams(tmp_path):
    """A benchmark item with a generic literal must not flag every file holding the same literal,
    while a real 10-gram of its text still matches."""
    from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator

    solution = ("    grid = np.array([1, 2, 3, 4, 5, 6, 7, 8])\n"
                "    return sorted(grid, key=lambda value: abs(value - pivot_threshold), reverse=descending_order)\n")
    with gzip.open(tmp_path / "humaneval.jsonl.gz", "wt") as f:
        f.write(json.dumps({"task_id": "HumanEval/900", "entry_point": "closest",
                            "prompt": "def closest(pivot_threshold):\n    \"\"\"Order the grid by distance.\"\"\"\n",
                            "canonical_solution": solution}) + "\n")
    d = Decontaminator(DecontamConfig(benchmarks_dir=str(tmp_path), min_substring_chars=1000))
    assert d.check("import numpy as np\nweights = np.array([1, 2, 3, 4, 5, 6, 7, 8])\n") is None
    hit = d.check("out = sorted(grid, key=lambda value: abs(value - pivot_threshold), reverse=descending_order)\n")
    assert hit and hit["reason"] == "benchmark_ngram" and hit["item"] == "HumanEval/900"
