"""Fixtures for the tokenizer/index tests: real code (mostly shipped in the repository), tiny tokenizers on it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from megatron_snow.records import CodeRecord, ShardedWriter
from tests.shipped_files import clean_code_files, js_shell_files, stdlib_modules, stdlib_package
from tok_corpus import EDGE_CASES, SHELL_WITH_TABS

def _collect() -> list[tuple[str, str, str]]:
    """(name, language, text) of real source files: Python, C and C++ from the archives the repository ships
    (tests/shipped_files.py), the same on every machine; JavaScript and shell from the shipped js-shell archive."""
    out: list[tuple[str, str, str]] = [(p, "python", t[:60_000]) for p, _, t in stdlib_modules()[:40]]
    out += [(p, "c", t[:60_000]) for p, _, t in stdlib_package("cpython-include")[:20]]
    out += [(p, "c++", t[:60_000]) for p, _, t in clean_code_files("torch")[:7] + clean_code_files("pyarrow")[:7]]

    # JavaScript (npm's bundled packages) and Bash (pyenv) from the shipped archive
    out += [(p, "javascript", t[:60_000]) for p, _, t in js_shell_files("javascript")[:2]]
    out += [(p, "shell", t[:60_000]) for p, _, t in js_shell_files("shell")[:1]]
    out.append(("synthetic/build.sh", "shell", SHELL_WITH_TABS))
    return out


@pytest.fixture(scope="session")
def code_corpus() -> list[tuple[str, str, str]]:
    corpus = _collect()
    langs = {lang for _, lang, _ in corpus}
    assert {"python", "c", "c++", "javascript", "shell"} <= langs, f"missing real code for some languages: {langs}"
    return corpus


def write_records(directory: Path, docs: list[dict], per_shard: int = 10) -> Path:
    """A records dataset (megatron_snow.records) of the given documents."""
    w = ShardedWriter(directory, records_per_shard=per_shard)
    for d in docs:
        w.add(CodeRecord(**d))
    w.close()
    return directory


@pytest.fixture(scope="session")
def corpus_records(code_corpus, tmp_path_factory) -> tuple[Path, list[dict]]:
    """The code corpus (plus edge cases) as a records dataset in several shards."""
    docs = [{"id": f"doc-{i:03d}", "content": text, "language": lang, "path": name}
            for i, (name, lang, text) in enumerate(code_corpus)]
    docs += [{"id": f"edge-{i:02d}", "content": t, "language": "text"} for i, t in enumerate(EDGE_CASES)]
    d = write_records(tmp_path_factory.mktemp("corpus") / "records", docs, per_shard=9)
    return d, docs


@pytest.fixture(scope="session")
def sp_model(corpus_records, tmp_path_factory) -> Path:
    """A tiny SentencePiece tokenizer trained by our trainer on the corpus."""
    from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "code.model"
    train_tokenizer(TrainTokenizerConfig(inputs=[str(corpus_records[0])], output=str(out), vocab_size=2000,
                                         num_threads=2, sample_bytes=3_000_000, max_sentence_length=4096))
    return out


@pytest.fixture(scope="session")
def hf_tokenizer_json(code_corpus, tmp_path_factory) -> Path:
    """A tiny byte-level BPE tokenizer.json trained with Hugging Face tokenizers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>", "<|pad|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([t for _, _, t in code_corpus], trainer=trainer)
    out = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    tok.save(str(out))
    return out


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture
def make_records():
    return write_records


@pytest.fixture
def make_jsonl():
    return jsonl
