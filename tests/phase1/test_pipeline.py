"""The whole phase-1 chain on real code with planted cases: every case caught and counted by reason."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_snow.funnel import Funnel
from megatron_snow.phase1.grouping import GroupingConfig, build_documents
from megatron_snow.phase1.minhash import jaccard
from megatron_snow.phase1.pipeline import STAGE_DIRS
from megatron_snow.records import iter_records, read_manifest
from megatron_snow.stages import RANKS_FILE
from tests.phase1.corpus import shingle_set


def _by_path(directory: Path) -> dict[str, object]:
    return {f"{r.repo}/{r.path}" if r.repo else r.path: r for r in iter_records(directory)}


def test_the_stage_list_alone_makes_each_step(tmp_path):
    """PHASE1 is the one list of stages: each line's settings are a Phase1Config field and its step
    carries the stage's name (the funnel's stage)."""
    from megatron_snow.phase1.pipeline import PHASE1, STAGES, Phase1Config, enabled_stages, make_step

    cfg = Phase1Config()
    assert enabled_stages(cfg) == list(STAGES) == [s.name for s in PHASE1]
    for s in PHASE1:
        assert make_step(cfg, s.name, tmp_path).name == s.name
    cfg.near_dedup.enabled = False
    assert "near_dedup" not in enabled_stages(cfg)


def test_every_stage_has_balanced_funnel_and_manifest(phase1_run):
    _, out, corpus = phase1_run
    summary = json.loads((out / "funnel.json").read_text())
    assert list(summary) == list(STAGE_DIRS)
    for stage, sub in STAGE_DIRS.items():
        f = Funnel.read(out / sub / "funnel.json")
        f.check()
        kept_docs = f.total("kept")[0]
        manifest = read_manifest(out / sub)
        if stage != "group":  # grouping turns files into documents
            assert manifest["records"] == kept_docs
        dropped = read_manifest(out / sub / "dropped")["records"]
        assert dropped == sum(f.reasons().values())
        assert (out / "funnel.txt").read_text().count("== funnel:") == len(STAGE_DIRS)
    assert Funnel.read(out / "01_ingest" / "funnel.json").total("in")[0] == corpus.n_files


def test_planted_cases_dropped_with_expected_reason(phase1_run):
    _, out, corpus = phase1_run
    dropped = {stage: _by_path(out / sub / "dropped") for stage, sub in STAGE_DIRS.items()}
    for rel, (stage, reason) in sorted(corpus.expect_reason.items()):
        assert rel in dropped[stage], f"{rel} not dropped by {stage}"
        got = dropped[stage][rel].meta["dropped"]
        assert got["stage"] == stage
        if reason:
            assert got["reason"] == reason, f"{rel}: {got}"
    reasons = {stage: Funnel.read(out / sub / "funnel.json").reasons() for stage, sub in STAGE_DIRS.items()}
    for stage, reason in set(corpus.expect_reason.values()):
        if reason:
            assert reasons[stage].get(reason, 0) >= 1


def test_exact_duplicates_point_to_kept_original(phase1_run):
    _, out, corpus = phase1_run
    dropped = _by_path(out / "03_exact_dedup" / "dropped")
    kept = _by_path(out / "03_exact_dedup")
    for orig, copy in corpus.exact_pairs:
        assert dropped[copy].meta["dropped"]["duplicate_of"] == f"local/{orig}"
        assert orig in kept
    assert Funnel.read(out / "03_exact_dedup" / "funnel.json").reasons() == {"exact_duplicate": len(corpus.exact_pairs)}


def test_near_dedup_precision_and_recall(phase1_run):
    _, out, corpus = phase1_run
    before = {r.id: r for r in iter_records(out / "03_exact_dedup")}
    dropped = [r for r in iter_records(out / "04_near_dedup" / "dropped")]
    shingles = {i: shingle_set(r.content) for i, r in before.items()}
    planted = {f"local/{copy}" for _, copy, _ in corpus.near_pairs}
    dropped_ids = {r.id for r in dropped}
    recall = len(planted & dropped_ids) / len(planted)
    # a drop is right if the file truly has Jaccard >= 0.7 with some other file (its cluster's reason to exist)
    correct = 0
    for r in dropped:
        s = shingles[r.id]
        rep = r.meta["dropped"]["duplicate_of"]
        j = jaccard(s, shingles[rep])
        if j < 0.7:
            j = max(jaccard(s, t) for i, t in shingles.items() if i != r.id)
        correct += j >= 0.7
    precision = correct / len(dropped)
    far = {f"local/{copy}" for _, copy, _ in corpus.far_pairs}
    # on the planted pairs alone: positives = edited copies (J >= 0.75), negatives = heavy edits (J <= 0.6)
    tp, fp = len(planted & dropped_ids), len(far & dropped_ids)
    planted_precision = tp / max(1, tp + fp)
    print(f"near dedup: {len(dropped)} dropped; planted {len(planted)} near / {len(far)} far; recall {recall:.3f}, "
          f"precision on planted {planted_precision:.3f}, precision on all drops {precision:.3f}")
    assert len(far) >= 8
    assert recall >= 0.95 and planted_precision >= 0.95 and precision >= 0.95
    kept = {r.id for r in iter_records(out / "04_near_dedup")}
    for r in dropped:  # every dropped file's keeper survives: a cluster is never removed whole
        assert r.meta["dropped"]["duplicate_of"] in kept, r.meta["dropped"]
    assert len(planted) >= 20


def test_decontamination_records_benchmark_and_item(phase1_run):
    _, out, corpus = phase1_run
    dropped = _by_path(out / "05_decontaminate" / "dropped")
    assert corpus.benchmark_hits
    for rel, (benches, item) in corpus.benchmark_hits.items():
        d = dropped[rel].meta["dropped"]
        assert d["benchmark"] in benches and d["item"] == item, (rel, d)
        assert d["reason"] in ("benchmark_substring", "benchmark_ngram")
    reasons = Funnel.read(out / "05_decontaminate" / "funnel.json").reasons()
    assert reasons.get("benchmark_ngram", 0) >= 1 and reasons.get("benchmark_substring", 0) >= 4
    stats = json.loads((out / "05_decontaminate" / "stats.json").read_text())
    assert set(stats["matches"]) >= {"humaneval", "mbpp", "bigcodebench", "gsm8k"}


def test_pii_replaced_and_counted(phase1_run):
    _, out, corpus = phase1_run
    rec = _by_path(out / "06_pii")[corpus.pii_file]
    text = rec.content
    for secret in ("jane.roe@example.org", "ops-team@corp-mail.com", "34.201.77.12", "AKIAQ7XJ3M5KZ2LPW8RT",
                   "ghp_Zt9x2Lq8Vb4Nw6Hj1Kc3Mf5Rd7Sp0Ga2Ye4U", "f83Kd92LmQ0zX7vB4nR1tY6u", "MIIEowIBAAKCAQEA"):
        assert secret not in text
    for kept in ("10.0.0.12", "8.8.8.8", "version 2.4.1.0"):  # bigcode's false-positive rules
        assert kept in text
    assert rec.meta["pii"] == {"email": 2, "ip_address": 1, "key": 4}
    assert text.count("<EMAIL>") == 2 and text.count("<IP_ADDRESS>") == 1 and text.count("<KEY>") == 4
    stats = json.loads((out / "06_pii" / "stats.json").read_text())
    assert stats["redacted"]["python"]["key"] >= 4


def test_notebook_converted_to_script(phase1_run):
    _, out, _ = phase1_run
    nb = _by_path(out / "01_ingest")["planted/analysis.ipynb"]
    assert nb.language == "jupyter"
    assert nb.content.startswith("# # Sales analysis\n# Load and summarise.\n\nimport statistics\n")


def test_grouped_documents_by_language_and_repo(phase1_run):
    _, out, _ = phase1_run
    files = list(iter_records(out / "06_pii"))
    docs = list(iter_records(out / "07_grouped"))
    assert sum(d.meta["files"] for d in docs) == len(files)
    keys = [(d.language, d.repo) for d in docs]
    assert len(keys) == len(set(keys))  # one document per (language, repo)
    by_id = {f.id: f for f in files}
    for d in docs:
        members = [by_id[i] for i in d.meta["file_ids"]]
        assert {m.language for m in members} == {d.language}
        assert {m.repo for m in members} == {d.repo}
        expected = "".join(f"<file_sep>{m.path}\n{m.content}" for m in members)
        assert d.content == expected
    # the order inside a repo is a seeded shuffle: same seed same order, another seed another order
    big = max(docs, key=lambda d: d.meta["files"])
    members = [by_id[i] for i in big.meta["file_ids"]]
    again = build_documents(reversed(members), GroupingConfig(seed=1234))[0]
    other = build_documents(members, GroupingConfig(seed=99))[0]
    assert again.content == big.content and other.meta["file_ids"] != big.meta["file_ids"]
    assert big.meta["file_ids"] != sorted(big.meta["file_ids"], key=lambda i: by_id[i].path)


def tree(root: Path) -> dict[str, bytes]:
    """Every file's bytes, but ranks.json (the one file that records how many ranks ran)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != RANKS_FILE}


def assert_ranks(stage_out: Path, world_size: int) -> None:
    """Every rank of the run reported its rank and the world size, and each did some units."""
    info = json.loads((stage_out / RANKS_FILE).read_text())
    assert info["world_size"] == world_size
    assert sorted(r["rank"] for r in info["ranks"]) == list(range(world_size))
    assert all(r["world_size"] == world_size for r in info["ranks"])
    assert len({r["pid"] for r in info["ranks"]}) == world_size
    if world_size > 1:
        assert all(r["units"] for r in info["ranks"]), info  # no rank sat idle


@pytest.mark.mpi
@pytest.mark.slow
def test_two_mpi_ranks_write_identical_output(phase1_run, tmp_path, repo_root, benchmarks_dir):
    import subprocess
    import sys

    from tests.phase1.conftest import write_config

    _, ref, corpus = phase1_run
    cfg = write_config(tmp_path / "cfg.yaml", corpus.root, tmp_path / "out", benchmarks_dir)
    proc = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "megatron_snow", "phase1",
                           "--config", str(cfg)], capture_output=True, text=True, timeout=600, cwd=repo_root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine, theirs = tree(ref), tree(tmp_path / "out")
    assert sorted(mine) == sorted(theirs)
    different = [k for k in mine if mine[k] != theirs[k]]
    assert not different, different[:10]
    for sub in STAGE_DIRS.values():
        assert_ranks(ref / sub, 1)
        assert_ranks(tmp_path / "out" / sub, 2)
