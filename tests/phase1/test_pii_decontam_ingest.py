"""PII rules, decontamination against the shared benchmark files, and every ingest source kind."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_snow.dist import Comm
from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator
from megatron_snow.phase1.ingest import IngestConfig, Ingestor, SourceConfig, list_units
from megatron_snow.phase1.pii import PIIConfig, redact
from megatron_snow.phase1.pipeline import Phase1Config, run_phase1
from megatron_snow.records import iter_records
from tests.shipped_files import stdlib_modules

C = PIIConfig()


def test_pii_kinds_and_false_positive_rules():
    text, counts = redact("contact: dev@mail.example.com; pip install pkg python@2.7 user@localhost\n", C)
    assert text == "contact: <EMAIL>; pip install pkg python@2.7 user@localhost\n" and counts == {"email": 1}
    ips = ("a = '52.14.3.9'\nb = '192.168.0.1'\nc = '127.0.0.1'\nd = '8.8.4.4'\n"
           "e = 'version 3.1.4.1'\nf = '999.1.1.1'\ng = '2a00:1450:4001:82b::200e'\nh = std::vector; i = fe80::1\n")
    text, counts = redact(ips, C)
    assert counts == {"ip_address": 2}
    assert "52.14.3.9" not in text and "2a00:1450" not in text
    for kept in ("192.168.0.1", "127.0.0.1", "8.8.4.4", "version 3.1.4.1", "999.1.1.1", "std::vector", "fe80::1"):
        assert kept in text
    keys = ('aws_key = "AKIAIOSFODNN7EXAMPL3"\nslack = "xoxb-1234567890-abcdefghij"\n'
            'google = "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"\n'
            'password = "hunter2hunter2hunter2"\nsecret_token = "Zx81kLmN0pQ2rS3tU4vW"\n'
            'jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"\n')
    text, counts = redact(keys, C)
    assert counts == {"key": 5}, text
    assert 'password = "hunter2hunter2hunter2"' in text  # a word, not a random key: kept
    off = PIIConfig(redact_emails=False)
    assert redact("a@b.com 52.14.3.9", off) == ("a@b.com <IP_ADDRESS>", {"ip_address": 1})


@pytest.fixture(scope="module")
def decon(benchmarks_dir):
    return Decontaminator(DecontamConfig(benchmarks_dir=str(benchmarks_dir)))


def _load(benchmarks_dir, name):
    with gzip.open(Path(benchmarks_dir) / name, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_all_shared_benchmarks_are_indexed(decon):
    assert set(decon.benchmarks) >= {"humaneval", "humaneval+", "mbpp", "mbpp+", "bigcodebench", "gsm8k",
                                     "evoeval_difficult", "evoeval_creative", "evoeval_subtle",
                                     "evoeval_combine", "evoeval_tool_use"}
    assert len(decon.patterns) > 5000 and len(decon.ngram_keys) > 100_000


def test_pasted_solutions_caught_case_and_indent_insensitive(decon, benchmarks_dir):
    mbppplus = _load(benchmarks_dir, "mbppplus.jsonl.gz")
    evo = _load(benchmarks_dir, "evoeval_creative.jsonl.gz")
    sol = mbppplus[5]["canonical_solution"]
    hit = decon.check("import sys\n\n" + sol.upper().replace("    ", "\t") + "\nprint('done')\n")
    assert hit and hit["reason"] == "benchmark_substring" and hit["item"] == mbppplus[5]["task_id"]
    hit = decon.check("# helper\n" + evo[3]["canonical_solution"] + "\n")
    assert hit and hit["item"] == evo[3]["task_id"] and hit["benchmark"].startswith("evoeval")


def test_real_stdlib_code_is_mostly_clean(decon):
    files = stdlib_modules()[:120]  # CPython 3.11.7's top-level modules, shipped in the repository
    flagged = [(name, h) for name, _, text in files if (h := decon.check(text))]
    assert len(flagged) <= 3, flagged


def test_missing_benchmarks_are_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark files"):
        Decontaminator(DecontamConfig(benchmarks_dir=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="'humaneval' not found"):
        Decontaminator(DecontamConfig(benchmarks_dir=str(tmp_path), benchmarks=["humaneval"]))
    with pytest.raises(ValueError, match="unknown"):
        Decontaminator(DecontamConfig(benchmarks_dir=str(tmp_path), benchmarks=["humaneval_xl"]))


def _stack_table(n: int, offset: int = 0) -> pa.Table:
    files = [(Path(name).name, text) for name, _, text in stdlib_modules()[offset:offset + n]]
    return pa.table({
        "hexsha": [f"{i:040x}" for i in range(offset, offset + n)],
        "size": [len(text.encode()) for _, text in files],
        "ext": ["py"] * n,
        "lang": ["Python"] * n,
        "max_stars_repo_path": [f"Lib/{name}" for name, _ in files],
        "max_stars_repo_name": ["python/cpython"] * n,
        "max_stars_repo_licenses": [["PSF-2.0"]] * n,
        "content": [text for _, text in files],
    })


def test_stack_parquet_arrow_jsonl_and_hub_sources(tmp_path):
    stack = tmp_path / "stack" / "data" / "python"
    stack.mkdir(parents=True)
    pq.write_table(_stack_table(10), stack / "train-00000.parquet", row_group_size=4)  # 3 row groups
    with pa.OSFile(str(tmp_path / "stack" / "cache.arrow"), "wb") as sink:
        t = _stack_table(3, offset=10)
        with pa.ipc.new_stream(sink, t.schema) as w:
            w.write_table(t)
    jl = tmp_path / "crawl.jsonl.gz"
    with gzip.open(jl, "wt") as f:
        f.write(json.dumps({"content": "fn main() {}\n", "repo": "me/r", "path": "src/main.rs"}) + "\n")
        f.write("{broken json\n")
        f.write(json.dumps({"text": "puts 1\n", "path": "a.rb", "license": "MIT"}) + "\n")
        f.write(json.dumps({"content": "x\n", "path": "notes.txt"}) + "\n")
        f.write(json.dumps({"content": "bad \ud800 surrogate", "path": "s.py"}) + "\n")
    hub_dir = tmp_path / "hubdata"
    hub_dir.mkdir()
    pq.write_table(_stack_table(2, offset=20), hub_dir / "train.parquet")
    sources = [SourceConfig(kind="stack", path=str(tmp_path / "stack"), name="stack"),
               SourceConfig(kind="jsonl", path=str(jl), name="crawl"),
               SourceConfig(kind="hub", path=str(hub_dir), name="hub", hub_cache_dir=str(tmp_path / "hfcache"))]
    units = list_units(sources)
    assert [u["kind"] for u in units] == ["arrow", "parquet", "parquet", "parquet", "jsonl", "arrow"]
    cfg = Phase1Config(output_dir=str(tmp_path / "out"), stages=["ingest"], progress=False,
                       ingest=IngestConfig(sources=sources))
    f = run_phase1(cfg, comm=Comm(None))["ingest"]
    recs = list(iter_records(tmp_path / "out" / "01_ingest"))
    assert len(recs) == 10 + 3 + 2 + 2
    r = next(r for r in recs if r.id == "stack/train-00000.parquet#1:0")
    assert (r.repo, r.path, r.language, r.license) == ("python/cpython", r.path, "python", "PSF-2.0")
    assert r.path.startswith("Lib/") and r.meta["hexsha"] == f"{4:040x}"
    rs = next(r for r in recs if r.language == "rust")
    assert (rs.repo, rs.path, rs.source) == ("me/r", "src/main.rs", "crawl")
    assert next(r for r in recs if r.language == "ruby").license == "MIT"
    assert f.reasons() == {"invalid_json": 1, "invalid_utf8": 1, "unsupported_language": 1}
    assert sum(1 for r in recs if r.source == "hub") == 2


def test_directory_ingest_sets_aside_with_reasons(tmp_path):
    root = tmp_path / "repos"
    (root / "alpha" / "src").mkdir(parents=True)
    (root / "alpha" / "src" / "main.go").write_text("package main\n")
    (root / "alpha" / "run").write_text("#!/bin/bash\necho run\n")
    (root / "alpha" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (root / "beta").mkdir()
    (root / "beta" / "big.py").write_text("x = 1\n" * 1000)
    (root / "beta" / "nul.py").write_bytes(b"x = 1\x00\x00\n")
    (root / "top.py").write_text("print(1)\n")
    ing = Ingestor(IngestConfig(max_read_bytes=5000))
    src = [SourceConfig(kind="directory", path=str(root), files_per_shard=2)]
    units = list_units(src)
    assert len(units) == 3
    out = [x for u in units for x in ing.read_unit(u, src)]
    got = {(getattr(x, "record", x).repo, getattr(x, "record", x).path): getattr(x, "reason", "kept") for x in out}
    assert got == {("alpha", "src/main.go"): "kept", ("alpha", "run"): "kept",
                   ("alpha", "logo.png"): "unsupported_language", ("beta", "big.py"): "too_large_to_read",
                   ("beta", "nul.py"): "binary", ("", "top.py"): "kept"}
    with pytest.raises(ValueError, match="unknown"):
        Ingestor(IngestConfig(languages=["python", "cobol"]))
    with pytest.raises(FileNotFoundError):
        list_units([SourceConfig(kind="jsonl", path=str(tmp_path / "none*.jsonl"))])


def test_apps_and_ds1000_layouts_when_given(tmp_path):
    """APPS (solutions as a JSON list) and DS-1000 are used when their files are present."""
    sol = "n = int(input())\nprint(sum(range(n + 1)) * 2 - n)\nfor i in range(n):\n    print(i * i + n)\n"
    with gzip.open(tmp_path / "apps_test.jsonl.gz", "wt") as f:
        f.write(json.dumps({"problem_id": 4242, "question": "Compute the doubled triangular sum minus n for the input.",
                            "solutions": json.dumps([sol])}) + "\n")
    with gzip.open(tmp_path / "ds1000.jsonl.gz", "wt") as f:
        f.write(json.dumps({"task_id": 7, "prompt": "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2]})",
                            "reference_code": ("result = df.groupby('a')"
                                               ".agg(lambda s: s.iloc[::-1].cumsum()).reset_index()")}) + "\n")
    d = Decontaminator(DecontamConfig(benchmarks_dir=str(tmp_path)))
    assert d.benchmarks == ["apps", "ds1000"]
    hit = d.check("# my solution\n" + sol.replace("    ", "  ") + "\n")
    assert hit["benchmark"] == "apps" and hit["item"] == "4242" and hit["reason"] == "benchmark_substring"
    hit = d.check("x = 1\nresult = df.groupby('a').agg(lambda s: s.iloc[::-1].cumsum()).reset_index()\n")
    assert hit["benchmark"] == "ds1000" and hit["item"] == "7"
    assert d.check("print('hello world')\n") is None
