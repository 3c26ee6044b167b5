"""Grouping: partition by language, group by repository, shuffle with a fixed seed, concatenate.

The paper's ablation (Table 3) found per-language repository documents
(``by=language_repo``, the default) better than mixed-language ones grouped
by repository alone (``by=repo``, kept so that ablation can be run: a
repository-only document takes its most common language as its language).
Each file is preceded by a separator that carries its path, so the model sees
repository structure. Routing to output shards hashes the group key, so a
group is whole in one shard whatever the number of input shards or ranks.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Iterable, Literal

import xxhash

from megatron_snow.config import Config, setting
from megatron_snow.records import CodeRecord


@dataclass
class GroupingConfig(Config):
    enabled: bool = setting(True, help="concatenate the files of a repository into documents")
    by: Literal["language_repo", "repo"] = setting("language_repo", help="paper: language then repository (Table 3)")
    seed: int = setting(1234, help="seed of the file order inside a document")
    num_shards: int = setting(
        16, help="output shards (hash buckets of (language, repo)); independent of MPI ranks", range="[1, 1000000]")
    file_separator: str = setting("<file_sep>{path}\n", help="placed before every file; {path} {repo} {language}")
    max_document_bytes: int = setting(
        0, help="split a group into several documents above this (0: never)", range=">= 0")


def group_key(rec: CodeRecord, by: str = "language_repo") -> tuple[str, str]:
    # files without a repository stand alone; by=repo puts all languages of a repository together
    repo = rec.repo if rec.repo else f"<file>{rec.id}"
    return ("" if by == "repo" and rec.repo else rec.language), repo


def bucket_of(rec: CodeRecord, num_shards: int, by: str = "language_repo") -> int:
    lang, repo = group_key(rec, by)
    return xxhash.xxh64_intdigest(f"{lang}\x00{repo}".encode()) % num_shards


def build_documents(records: Iterable[CodeRecord], cfg: GroupingConfig) -> list[CodeRecord]:
    """One (or, above max_document_bytes, several) documents per (language, repo), in a fixed order."""
    groups: dict[tuple[str, str], list[CodeRecord]] = defaultdict(list)
    for r in records:
        groups[group_key(r, cfg.by)].append(r)
    docs = []
    for (key_lang, repo), files in sorted(groups.items()):
        files.sort(key=lambda r: (r.path, r.id))
        lang = key_lang or _most_common_language(files)
        random.Random(f"{cfg.seed}\x00{lang}\x00{repo}").shuffle(files)
        chunks: list[list[CodeRecord]] = [[]]
        size = 0
        for f in files:
            n = len(f.content.encode("utf-8", "surrogatepass"))
            if cfg.max_document_bytes and chunks[-1] and size + n > cfg.max_document_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(f)
            size += n
        for ci, chunk in enumerate(chunks):
            content = "".join(cfg.file_separator.format(path=f.path or f.id, repo=repo, language=lang) + f.content
                              for f in chunk)
            licenses = sorted({f.license for f in chunk if f.license})
            pii: dict[str, int] = defaultdict(int)
            for f in chunk:
                for k, v in f.meta.get("pii", {}).items():
                    pii[k] += v
            meta = {"files": len(chunk), "file_ids": [f.id for f in chunk]}
            if not key_lang:
                meta["languages"] = dict(sorted(Counter(f.language for f in chunk).items()))
            if pii:
                meta["pii"] = dict(sorted(pii.items()))
            docs.append(CodeRecord(
                id=f"{key_lang or '*'}/{repo}" + (f"#{ci}" if len(chunks) > 1 else ""), content=content, language=lang,
                repo=repo if not repo.startswith("<file>") else "", path="" if len(chunk) > 1 else chunk[0].path,
                source="grouped", license=",".join(licenses) or None, meta=meta))
    return docs


def _most_common_language(files: list[CodeRecord]) -> str:
    counts = Counter(f.language for f in files)
    return min(counts, key=lambda lang: (-counts[lang], lang))
