"""Train a SentencePiece BPE tokenizer suited to source code.

Settings that matter for code (each checked by tests/tokenization):
- identity normalisation, no whitespace collapsing, no dummy prefix: the
  decoded text is byte-for-byte the source (indentation, tabs, trailing
  spaces, CRLF);
- newlines stay inside training "sentences" (documents are cut into chunks at
  line boundaries, never at every line), so pieces such as ``):\\n`` are learned;
- byte fallback: any character outside the learned alphabet becomes UTF-8
  byte pieces, never ``<unk>``;
- digits split, whitespace-only pieces (indentation runs) allowed;
- reserved ids for end of document, padding, file separator and FIM.

The training text is a seeded sample bounded in bytes: every document gets a
key from a hash of (seed, id, text) and the documents with the smallest keys
are kept while they fit in ``sample_bytes``. The sample therefore depends on
the input and the seed only (not on file order), and memory stays bounded.
SentencePiece's result also depends on ``num_threads``; it is fixed in the
config (default 8, whatever the machine's core count) so that the same input,
seed and config give the same model bytes.
"""
from __future__ import annotations

import hashlib
import heapq
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable, Iterator

from megatron_snow.funnel import Funnel
from megatron_snow.tokenization.inputs import plan_units, read_unit
from megatron_snow.tokenization.tokenizer import (
    CONTROL_TOKENS,
    USER_DEFINED_TOKENS,
    CodeTokenizer,
    sentencepiece_special_args,
)


@dataclass
class TrainTokenizerConfig:
    inputs: list[str] = field(default_factory=list)  # records directories and/or JSONL files
    output: str = ""  # path of the .model file to write (a .vocab and .json report go beside it)
    vocab_size: int = 64000
    seed: int = 1234
    sample_bytes: int = 2_000_000_000  # memory bound: bytes of text sampled for training
    max_sentence_length: int = 16384  # bytes per training chunk; documents are cut at line ends to fit
    num_threads: int = 8  # part of the result: keep it fixed for reproducibility
    character_coverage: float = 0.9999
    max_piece_length: int = 16
    text_field: str = "text"  # JSONL inputs only
    id_field: str = "id"
    language_field: str = "language"
    extra_user_defined_symbols: list[str] = field(default_factory=list)

    # vocab_size: byte fallback alone needs 256 pieces plus the special ones
    RANGES: ClassVar[dict[str, str]] = {"vocab_size": ">= 300", "sample_bytes": ">= 1", "max_sentence_length": ">= 64",
                                        "num_threads": ">= 1", "character_coverage": "(0, 1]", "max_piece_length": ">= 1"}


def _key(seed: int, doc_id: str, text: str) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{seed}\x00{doc_id}\x00".encode("utf-8", "surrogatepass"))
    h.update(text.encode("utf-8", "surrogatepass"))
    return h.digest()


def sample_documents(docs: Iterable[tuple[str, str]], sample_bytes: int, seed: int) -> list[str]:
    """Texts of the documents with the smallest seeded keys whose sizes add up to at most ``sample_bytes``.

    Streams once holding at most ``sample_bytes`` of text; the result is in key
    order and does not depend on the order of ``docs``.
    """
    heap: list[tuple[bytes, str]] = []  # max-heap on key via inverted bytes
    total = 0
    cutoff: bytes | None = None  # smallest key ever evicted: later keys >= cutoff can never be in
    for doc_id, text in docs:
        key = _key(seed, doc_id, text)
        if cutoff is not None and key >= cutoff:
            continue
        n = len(text.encode("utf-8", "surrogatepass"))
        heapq.heappush(heap, (bytes(255 - b for b in key), text))
        total += n
        while total > sample_bytes and heap:
            inv, t = heapq.heappop(heap)
            total -= len(t.encode("utf-8", "surrogatepass"))
            cutoff = bytes(255 - b for b in inv)
    return [t for _, t in sorted(heap, reverse=True)]


def split_for_training(text: str, max_bytes: int) -> Iterator[str]:
    """Cut a document into chunks of at most ``max_bytes`` UTF-8 bytes, at line ends where possible."""
    chunk: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        b = len(line.encode("utf-8", "surrogatepass"))
        if size + b > max_bytes and chunk:
            yield "".join(chunk)
            chunk, size = [], 0
        while b > max_bytes:  # one very long line: cut it by characters
            part, pb = [], 0
            for ch in line:
                cb = len(ch.encode("utf-8", "surrogatepass"))
                if pb + cb > max_bytes:
                    break
                part.append(ch)
                pb += cb
            yield "".join(part)
            line = line[len(part):]
            b -= pb
        chunk.append(line)
        size += b
    if chunk:
        yield "".join(chunk)


def _training_documents(cfg: TrainTokenizerConfig, funnel: Funnel) -> Iterator[tuple[str, str]]:
    from megatron_snow.tokenization.build_index import unusable_count  # the same rules as the index

    for unit in plan_units(cfg.inputs):
        for doc in read_unit(unit, cfg.text_field, cfg.id_field, cfg.language_field):
            nbytes = len(doc.text.encode("utf-8", "surrogatepass")) if doc.text else 0
            if not unusable_count(funnel, doc, nbytes):
                funnel.kept(doc.language, nbytes)
                yield doc.id, doc.text


def train_tokenizer(cfg: TrainTokenizerConfig) -> dict:
    """Train and write ``cfg.output``; returns the report also written to ``<output>.json``.

    The funnel counts input documents; "kept" means eligible for the sample
    (the report gives how many of them the byte-bounded sample took).
    """
    import sentencepiece as spm

    if not cfg.output:
        raise ValueError("output: path of the .model file to write is required")
    funnel = Funnel("train_tokenizer")
    texts = sample_documents(_training_documents(cfg, funnel), cfg.sample_bytes, cfg.seed)
    funnel.check()
    if not texts:
        raise ValueError(f"no documents with text in {cfg.inputs}: nothing to train on\n{funnel.table()}")
    chunks = [c for t in texts for c in split_for_training(t, cfg.max_sentence_length)]
    sample_docs, sample_bytes = len(texts), sum(len(t.encode("utf-8")) for t in texts)
    del texts

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(chunks),
        model_writer=model,
        model_type="bpe",
        vocab_size=cfg.vocab_size,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        split_by_whitespace=True,
        max_sentence_length=cfg.max_sentence_length,
        max_sentencepiece_length=cfg.max_piece_length,
        character_coverage=cfg.character_coverage,
        input_sentence_size=0,  # the sample above is already bounded; use all of it
        shuffle_input_sentence=False,
        num_threads=cfg.num_threads,
        # unk/bos/eos/pad as the model's own fields: Megatron-LM and Hugging Face read them.
        **sentencepiece_special_args(cfg.extra_user_defined_symbols),
        hard_vocab_limit=True,
        minloglevel=2,
    )
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_bytes(model.getvalue())
    os.replace(tmp, out)

    tok = CodeTokenizer(str(out))
    vocab_lines = [f"{tok.id_to_token(i)}\t{tok._sp.get_score(i)}" for i in range(tok.vocab_size)]
    out.with_suffix(".vocab").write_text("\n".join(vocab_lines) + "\n", encoding="utf-8")
    report = {
        "model": str(out),
        "sha256": tok.sha256,
        "vocab_size": tok.vocab_size,
        "special_ids": {t: tok.token_to_id(t) for t in CONTROL_TOKENS + USER_DEFINED_TOKENS},
        "eligible_documents": funnel.total("kept")[0],
        "sample_documents": sample_docs,
        "sample_bytes": sample_bytes,
        "training_chunks": len(chunks),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "funnel": funnel.to_dict(),
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(funnel.table())
    return report


USAGE = """examples:
  python -m megatron_snow train-tokenizer --input data/grouped --output tok/code64k.model
  python -m megatron_snow train-tokenizer --input corpus.jsonl --output tok/small.model vocab_size=8000"""


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow train-tokenizer`` / ``tools/preprocess/train_tokenizer.py``."""
    from megatron_snow.stages import StepError
    from megatron_snow.stages.cli import run_cli
    from megatron_snow.tokenization.inputs import InputError

    def add_arguments(ap) -> None:
        ap.add_argument("--input", action="append", help="records directory or JSONL file (repeatable)")
        ap.add_argument("--output", help="path of the .model to write (.vocab and .json report beside it)")

    def extra_overrides(args) -> list[str]:
        out = [f"inputs={json.dumps(args.input)}"] if args.input else []
        return out + ([f"output={json.dumps(args.output)}"] if args.output else [])

    def run(cfg, args, comm):
        if not comm.is_root:
            return
        try:
            report = train_tokenizer(cfg)
        except (InputError, ValueError) as e:
            raise StepError(str(e).splitlines()[0], 2) from None
        print(f"wrote {report['model']}: vocab {report['vocab_size']}, sample {report['sample_documents']:,} "
              f"documents / {report['sample_bytes']:,} bytes, sha256 {report['sha256'][:12]}")

    return run_cli(argv, prog="train-tokenizer", doc=__doc__.split("\n\n")[0] + "\n\n" + USAGE,
                   config_cls=TrainTokenizerConfig, run=run, add_arguments=add_arguments,
                   extra_overrides=extra_overrides)
