"""Fixtures of the phase-2 tests: a corpus of real local code, a tiny BERT encoder, a trained annotator.

The corpus is built from real files the repository ships (tests/shipped_files.py: CPython 3.11.7's own
tests and C headers, torch and pyarrow C++ headers), the same on every machine and offline. The positive
set is the Python standard library's own top-level modules (shipped too), as files and as instruction
records made from their documented functions; the annotator must tell them from random corpus documents.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from megatron_snow import records
from megatron_snow.phase2.tiny_encoder import make_tiny_encoder
from tests.shipped_files import clean_code_files, stdlib_modules, stdlib_package

MAX_POSITIONS = 128  # the tiny encoder's window (126 content tokens + [CLS] + [SEP])


def local_code_files(per_language: int, max_chars: int = 6000) -> list[tuple[str, str, str]]:
    """(path, language, text) of real shipped files, a fixed deterministic choice."""
    sources = {
        "Python": [(p, t) for p, _, t in clean_code_files("cpython")
                   if p.startswith("test/") and Path(p).name.startswith("test_")],
        "C": [(p, t) for p, _, t in stdlib_package("cpython-include")],
        "C++": [(p, t) for p, _, t in clean_code_files("pyarrow") + clean_code_files("torch")],
    }
    out = []
    for lang, paths in sources.items():
        step = max(1, len(paths) // (per_language * 2))  # spread the choice over the tree
        chosen: list[tuple[str, str, str]] = []
        seen: set[str] = set()
        for p, text in paths[::step] + paths:
            if len(chosen) >= per_language:
                break
            if p in seen:
                continue
            seen.add(p)
            text = text[:max_chars]
            if len(text) >= 200:
                chosen.append((p, lang, text))
        out += chosen
    return out


def chunk_text(text: str, max_chars: int) -> list[str]:
    """Cut a file at line ends into pieces of at most ``max_chars`` (lines longer than that are cut)."""
    pieces, cur = [], ""
    for line in text.splitlines(keepends=True):
        while len(line) > max_chars:
            pieces.append(line[:max_chars])
            line = line[max_chars:]
        if len(cur) + len(line) > max_chars:
            pieces.append(cur)
            cur = ""
        cur += line
    if cur.strip():
        pieces.append(cur)
    return [p for p in pieces if p.strip()]


def write_corpus(directory: Path, docs: list[tuple[str, str, str]], per_shard: int) -> Path:
    w = records.ShardedWriter(directory, records_per_shard=per_shard)
    for i, (path, lang, text) in enumerate(docs):
        w.add(records.CodeRecord(id=f"doc-{i:05d}", content=text, language=lang, repo="local", path=path,
                                 source="test"))
    w.close()
    return directory


def stdlib_positives(directory: Path) -> tuple[Path, Path]:
    """(a directory of Python module files, a JSONL of instruction records) from the shipped stdlib modules."""
    files_dir = directory / "modules"
    files_dir.mkdir(parents=True, exist_ok=True)
    instructions = []
    for name, _, src in stdlib_modules():
        text = src[:6000]
        if len(text) < 200:
            continue
        (files_dir / Path(name).name).write_text(text)
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and ast.get_docstring(node) and len(instructions) < 200:
                doc = ast.get_docstring(node)
                code = ast.get_source_segment(src, node) or ""
                instructions.append({"instruction": f"Write a Python function `{node.name}`. {doc}",
                                     "response": code[:3000], "lang": "python"})
    jsonl = directory / "instructions.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in instructions))
    return files_dir, jsonl


@pytest.fixture(scope="session")
def corpus_tools():
    """The corpus-building helpers above, for tests that build their own corpus."""
    return SimpleNamespace(local_code_files=local_code_files, chunk_text=chunk_text, write_corpus=write_corpus)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> Path:
    """A phase-1-like corpus: ~240 real files of 3 languages in 4 shards."""
    docs = local_code_files(per_language=80)
    return write_corpus(tmp_path_factory.mktemp("corpus"), docs, per_shard=60)


@pytest.fixture(scope="session")
def positives(tmp_path_factory) -> tuple[Path, Path]:
    return stdlib_positives(tmp_path_factory.mktemp("positives"))


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory, corpus_dir, positives) -> Path:
    texts = [r.content for r in records.iter_records(corpus_dir)]
    texts += [p.read_text() for p in sorted(positives[0].glob("*.py"))]
    return make_tiny_encoder(texts, tmp_path_factory.mktemp("encoder"), max_positions=MAX_POSITIONS)


@pytest.fixture(scope="session")
def trained_annotator(tmp_path_factory, corpus_dir, positives, encoder_dir):
    """An annotator fine-tuned (full mode) in the test session; returns (directory, TrainResult)."""
    from megatron_snow.config import load_config
    from megatron_snow.phase2.annotator import TrainAnnotatorConfig, train_annotator

    out = tmp_path_factory.mktemp("annotator")
    files_dir, jsonl = positives
    cfg = load_config(TrainAnnotatorConfig, None, [
        f"encoder={encoder_dir}", f"out={out}", "mode=full", "lr=0.001", "epochs=6", "batch_size=16",
        "micro_batch_size=16", f"max_length={MAX_POSITIONS}", "val_fraction=0.15", "test_fraction=0.2",
        f"data.corpus={corpus_dir}",
        f"data.positives=[{{path: {files_dir}, limit: 100, kind: code}}, {{path: {jsonl}, limit: 100}}]",
    ])
    logs = []
    result = train_annotator(cfg, log=logs.append)
    return out, result, logs
