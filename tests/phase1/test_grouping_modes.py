"""Grouping modes: the recipe's language-then-repository documents and the repository-only ones of the
paper's Table 3 ablation."""
from __future__ import annotations

from megatron_snow.phase1.grouping import GroupingConfig, bucket_of, build_documents
from megatron_snow.records import CodeRecord


def _files():
    return [CodeRecord("a", "x = 1\n", "python", repo="r1", path="a.py"),
            CodeRecord("b", "int b;\n", "c", repo="r1", path="b.h"),
            CodeRecord("c", "y = 2\n", "python", repo="r1", path="c.py"),
            CodeRecord("d", "z = 3\n", "python", repo="r2", path="d.py"),
            CodeRecord("e", "w = 4\n", "python", repo="", path="e.py")]


def test_language_then_repository_keeps_languages_apart():
    docs = build_documents(_files(), GroupingConfig())
    assert sorted((d.id, d.language, d.meta["files"]) for d in docs) == [
        ("c/r1", "c", 1), ("python/<file>e", "python", 1), ("python/r1", "python", 2), ("python/r2", "python", 1)]


def test_repository_only_mixes_languages_and_names_them():
    docs = {d.id: d for d in build_documents(_files(), GroupingConfig(by="repo"))}
    assert sorted(docs) == ["*/r1", "*/r2", "python/<file>e"]  # a file without a repository stands alone
    r1 = docs["*/r1"]
    assert r1.meta["files"] == 3 and r1.meta["languages"] == {"c": 1, "python": 2}
    assert r1.language == "python"  # its most common language
    assert "int b;" in r1.content and "x = 1" in r1.content
    # one repository is one shard bucket whatever its files' languages
    assert len({bucket_of(f, 16, "repo") for f in _files() if f.repo == "r1"}) == 1
