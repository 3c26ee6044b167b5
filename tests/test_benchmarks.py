"""The repository stands alone: shipped benchmark copies, the directory resolver, and the
downloader (exercised on a local mirror, since tests never use the network)."""
from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path


from megatron_snow import benchmarks
from megatron_snow.benchmarks_fetch import BY_STEM, SOURCES, fetch, main
from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator

REPO = Path(__file__).resolve().parents[1]


def test_shipped_copies_match_the_pinned_hashes(benchmarks_dir):
    """Every shipped file is the pinned upstream content (so the downloader would fetch the same)."""
    shipped = sorted(p.name.removesuffix(".jsonl.gz") for p in benchmarks_dir.glob("*.jsonl.gz"))
    assert len(shipped) == 13
    for stem in shipped:
        content = gzip.decompress((benchmarks_dir / f"{stem}.jsonl.gz").read_bytes())
        assert hashlib.sha256(content).hexdigest() == BY_STEM[stem].sha256, stem
    assert (benchmarks_dir / "README.md").is_file()


def test_nothing_in_the_repository_points_outside_it():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    offenders = []
    for name in tracked:
        p = REPO / name
        if p.suffix in (".gz", ".png") or not p.is_file() or name == "tests/test_benchmarks.py":
            continue
        text = p.read_text(errors="ignore")
        if "../shared" in text or "/work/shared" in text:
            offenders.append(name)
    assert offenders == []


def test_resolver_order(tmp_path, monkeypatch):
    monkeypatch.delenv(benchmarks.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert benchmarks.resolve_benchmarks_dir(None) == benchmarks.SHIPPED_DIR
    cache = tmp_path / "cache/megatron_snow/benchmarks"
    cache.mkdir(parents=True)
    (cache / "humaneval.jsonl.gz").write_bytes(b"")
    assert benchmarks.resolve_benchmarks_dir(None) == cache
    monkeypatch.setenv(benchmarks.ENV_VAR, str(tmp_path / "env"))
    assert benchmarks.resolve_benchmarks_dir(None) == tmp_path / "env"
    assert benchmarks.resolve_benchmarks_dir(tmp_path / "given") == tmp_path / "given"


def _mirror(tmp_path: Path, benchmarks_dir: Path) -> Path:
    """A local stand-in for the network: upstream file names, upstream compression."""
    m = tmp_path / "mirror"
    m.mkdir()
    for src in SOURCES:
        shipped = benchmarks_dir / f"{src.stem}.jsonl.gz"
        if src.kind == "url":
            name = Path(src.where).name
            data = shipped.read_bytes()
            (m / name).write_bytes(data if name.endswith(".gz") else gzip.decompress(data))
    (m / "apps_test.jsonl").write_text(json.dumps(
        {"problem_id": 4000, "question": "Read n and print the sum of the first n odd numbers.",
         "solutions": json.dumps(["n = int(input())\nprint(sum(range(1, 2 * n, 2)))  # odd numbers\n"])}) + "\n")
    (m / "ds1000.jsonl").write_text(json.dumps({"prompt": "import numpy as np\na = np.arange(12)",
                                                "reference_code": "result = a.reshape(3, 4).T.copy()"}) + "\n")
    (m / "bigcodebench_hard.jsonl").write_text(json.dumps({"task_id": "BigCodeBench/13"}) + "\n")
    return m


def test_fetch_from_a_mirror_fills_the_default_layout(tmp_path, benchmarks_dir):
    out = tmp_path / "bench"
    result = fetch(out, mirror=_mirror(tmp_path, benchmarks_dir), log=lambda *_: None)
    assert result["failed"] == []
    assert sorted(result["fetched"]) == sorted(BY_STEM)
    sources = json.loads((out / "sources.json").read_text())
    assert sources["mbpp"]["records"] == 974 and sources["humanevalplus"]["records"] == 164
    # the fetched sets are what decontamination reads, including the ones not shipped
    decon = Decontaminator(DecontamConfig(benchmarks_dir=str(out), benchmarks=["apps_test", "ds1000"]))
    hit = decon.check("def f():\n    n = int(input())\n    print(sum(range(1, 2 * n, 2)))  # odd numbers\n")
    assert hit is not None


def test_fetch_refuses_a_changed_file_and_says_which(tmp_path, benchmarks_dir):
    mirror = _mirror(tmp_path, benchmarks_dir)
    (mirror / "test.jsonl").write_text('{"question": "edited", "answer": "#### 1"}\n')  # gsm8k changed upstream
    code = main(["--out", str(tmp_path / "bench"), "--mirror", str(mirror), "--only", "gsm8k_test,humaneval"])
    assert code == 1
    assert (tmp_path / "bench/humaneval.jsonl.gz").is_file()
    assert not (tmp_path / "bench/gsm8k_test.jsonl.gz").exists()
    assert main(["--only", "humaneval_xl", "--out", str(tmp_path / "x")]) == 2


def test_fetch_benchmarks_help_runs_from_the_one_command_line():
    proc = subprocess.run([sys.executable, "-m", "megatron_snow", "fetch-benchmarks", "--help"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and "--mirror" in proc.stdout
