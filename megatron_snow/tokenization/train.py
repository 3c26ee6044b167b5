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

It is a step of the stage runner (``megatron_snow.stages``), run over 1 or N
MPI ranks: each input unit (a records shard, a JSONL file or byte range) is
read, counted and sampled on its own (its sample, at most ``sample_bytes``,
is a part under ``X.step/_work/``); rank 0 samples the union of the parts, which
is exactly the sample of the whole input, and trains. ``X.step/`` holds the
fingerprint (settings and input content), funnel, ranks and the manifest
written last; a killed run redoes only unfinished units; a model made
otherwise is refused unless ``--force``. Beside ``X.model``: ``X.vocab`` and
``X.json`` (the report, with the funnel).
"""
from __future__ import annotations

import gzip
import hashlib
import heapq
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from megatron_snow.atomic import atomic_write_bytes, atomic_write_text, temp_path
from megatron_snow.config import Config, setting, to_dict
from megatron_snow.dist import Comm, get_comm
from megatron_snow.funnel import Funnel
from megatron_snow.stages.runner import ArtefactStep, StepContext, StepError, UnitResult, run_step
from megatron_snow.tokenization.inputs import Unit, input_dependencies, manifest_records, plan_units, read_unit
from megatron_snow.tokenization.tokenizer import (
    CONTROL_TOKENS,
    USER_DEFINED_TOKENS,
    CodeTokenizer,
    sentencepiece_special_args,
)


@dataclass
class TrainTokenizerConfig(Config):
    inputs: list[str] = setting(help="records directories and/or JSONL files", factory=list)
    output: str = setting("", help="path of the .model file to write (a .vocab and .json report go beside it)")
    vocab_size: int = setting(64000, help="pieces; byte fallback alone needs 256 plus the special ones", range=">= 300")
    seed: int = setting(1234, help="seed of the training sample")
    sample_bytes: int = setting(2_000_000_000, help="memory bound: bytes of text sampled for training", range=">= 1")
    max_sentence_length: int = setting(
        16384, help="bytes per training chunk; documents are cut at line ends to fit", range=">= 64")
    num_threads: int = setting(8, help="part of the result: keep it fixed for reproducibility", range=">= 1")
    character_coverage: float = setting(
        0.9999, help="SentencePiece: share of characters covered by pieces (the rest: byte fallback)", range="(0, 1]")
    max_piece_length: int = setting(16, help="SentencePiece: longest piece in characters", range=">= 1")
    text_field: str = setting("text", help="JSONL inputs only")
    id_field: str = setting("id", help="JSONL inputs only")
    language_field: str = setting("language", help="JSONL inputs only")
    extra_user_defined_symbols: list[str] = setting(help="pieces added whole besides the special tokens", factory=list)
    progress: bool = setting(True, help="progress bar on rank 0")
    # vocab_size: byte fallback alone needs 256 pieces plus the special ones


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
    return [t for _, t in sample_pairs(docs, sample_bytes, seed)]


def sample_pairs(docs: Iterable[tuple[str, str]], sample_bytes: int, seed: int) -> list[tuple[str, str]]:
    """``sample_documents`` as (id, text) pairs. The sample is the key-sorted prefix that fits: the sample
    of a union of per-unit samples is therefore the sample of the whole input (how the units combine)."""
    heap: list[tuple[bytes, str, str]] = []  # max-heap on key via inverted bytes
    total = 0
    cutoff: bytes | None = None  # smallest key ever evicted: later keys >= cutoff can never be in
    for doc_id, text in docs:
        key = _key(seed, doc_id, text)
        if cutoff is not None and key >= cutoff:
            continue
        n = len(text.encode("utf-8", "surrogatepass"))
        heapq.heappush(heap, (bytes(255 - b for b in key), text, doc_id))
        total += n
        while total > sample_bytes and heap:
            inv, t, _ = heapq.heappop(heap)
            total -= len(t.encode("utf-8", "surrogatepass"))
            cutoff = bytes(255 - b for b in inv)
    return [(i, t) for _, t, i in sorted(heap, reverse=True)]


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


def run_dir(output: str | Path) -> Path:
    """The runner's directory of a tokenizer ``X.model``: ``X.step`` (step.json, funnel, ranks, unit samples)."""
    return Path(output).with_suffix(".step")


class TrainTokenizerStep(ArtefactStep):
    """Units: the input plan. Each unit counts its documents and keeps its own bounded sample (a part
    under _work/); ``finalize`` samples the union of the parts, which is the sample of the whole input,
    and trains SentencePiece on rank 0. The model bytes do not depend on the number of ranks."""

    name = "train_tokenizer"
    weight_unit = "B"

    def __init__(self, cfg: TrainTokenizerConfig, base: list[Unit]):
        self.settings, self.base = cfg, base
        self.out = Path(cfg.output)

    def fingerprint_settings(self) -> dict:
        return {k: v for k, v in to_dict(self.settings).items() if k not in ("inputs", "output", "progress")}

    def depends_on(self) -> dict[str, str]:
        return input_dependencies(self.settings.inputs)

    def outputs(self) -> list[Path]:
        return [self.out, self.out.with_suffix(".vocab"), self.out.with_suffix(".json")]

    def input_records(self) -> int | None:
        return manifest_records(self.settings.inputs)

    def units(self, ctx: StepContext) -> list[dict]:
        return [u.to_dict() for u in self.base]

    def weight(self, unit: dict) -> int:
        return max(1, int(unit["size"]))

    def describe(self, unit: dict) -> str:
        return f"{unit['path']}[{unit['start']}:{'' if unit['end'] is None else unit['end']}]"

    def process(self, ctx: StepContext, index: int, unit: dict) -> UnitResult:
        from megatron_snow.tokenization.build_index import unusable_count  # the same rules as the index

        cfg, funnel = self.settings, Funnel(self.name)

        def eligible() -> Iterator[tuple[str, str]]:
            for doc in read_unit(Unit(**unit), cfg.text_field, cfg.id_field, cfg.language_field):
                nbytes = len(doc.text.encode("utf-8", "surrogatepass")) if doc.text else 0
                if not unusable_count(funnel, doc, nbytes):
                    funnel.kept(doc.language, nbytes)
                    yield doc.id, doc.text

        sample = sample_pairs(eligible(), cfg.sample_bytes, cfg.seed)
        name = f"sample-{index:05d}.jsonl.gz"
        tmp = temp_path(ctx.work / name)
        with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
            for doc_id, text in sample:
                f.write(json.dumps([doc_id, text]) + "\n")
        os.replace(tmp, ctx.work / name)
        n = funnel.total("kept")[0]
        return UnitResult([], [], funnel, represents=n, part={"file": name, "documents": len(sample), "eligible": n})

    def finalize(self, ctx: StepContext, parts: list[dict], funnel: Funnel) -> int:
        cfg = self.settings

        def candidates() -> Iterator[tuple[str, str]]:
            for p in parts:
                with gzip.open(ctx.work / p["file"], "rt", encoding="utf-8") as f:
                    for line in f:
                        doc_id, text = json.loads(line)
                        yield doc_id, text

        texts = [t for _, t in sample_pairs(candidates(), cfg.sample_bytes, cfg.seed)]
        if not texts:
            raise StepError(f"no documents with text in {cfg.inputs}: nothing to train on "
                            f"({funnel.total('in')[0]} in, dropped: {funnel.reasons() or 'none'})", 2)
        report = _train(cfg, texts, self.out)
        report.update(eligible_documents=funnel.total("kept")[0], funnel=funnel.to_dict())
        atomic_write_text(self.out.with_suffix(".json"), json.dumps(report, indent=2, sort_keys=True) + "\n")
        print(funnel.table(), flush=True)
        return sum(p["eligible"] for p in parts)

    def cleanup(self, ctx: StepContext) -> None:
        shutil.rmtree(ctx.work, ignore_errors=True)  # the units' samples


def _train(cfg: TrainTokenizerConfig, texts: list[str], out: Path) -> dict:
    """SentencePiece BPE on the sampled texts; writes ``out`` and its ``.vocab``; returns the report."""
    import sentencepiece as spm

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
    atomic_write_bytes(out, model.getvalue())
    tok = CodeTokenizer(str(out))
    vocab_lines = [f"{tok.id_to_token(i)}\t{tok._sp.get_score(i)}" for i in range(tok.vocab_size)]
    atomic_write_text(out.with_suffix(".vocab"), "\n".join(vocab_lines) + "\n")
    return {
        "model": str(out),
        "sha256": tok.sha256,
        "vocab_size": tok.vocab_size,
        "special_ids": {t: tok.token_to_id(t) for t in CONTROL_TOKENS + USER_DEFINED_TOKENS},
        "sample_documents": sample_docs,
        "sample_bytes": sample_bytes,
        "training_chunks": len(chunks),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }


def train_tokenizer(cfg: TrainTokenizerConfig, comm: Comm | None = None, force: bool = False) -> dict:
    """Train and write ``cfg.output`` on every rank of ``comm`` (the stage runner); returns the report
    also written to ``<output>.json``. A model already made from the same settings and input content is
    left as is; one made otherwise is refused (StaleOutputError) unless ``force``.

    The funnel counts input documents; "kept" means eligible for the sample
    (the report gives how many of them the byte-bounded sample took).
    """
    if not cfg.output:
        raise StepError("output: path of the .model file to write is required", 2)
    comm = comm or get_comm()
    step = TrainTokenizerStep(cfg, plan_units(cfg.inputs))
    run_step(step, run_dir(cfg.output), comm, force=force, progress=cfg.progress)
    return json.loads(Path(cfg.output).with_suffix(".json").read_text())


USAGE = """examples:
  python -m megatron_snow train-tokenizer --input data/grouped --output tok/code64k.model
  python -m megatron_snow train-tokenizer --input corpus.jsonl --output tok/small.model vocab_size=8000"""


def cli_run(cfg, args, comm) -> None:
    """The ``train-tokenizer`` command."""
    from megatron_snow.stages import StepError
    from megatron_snow.tokenization.inputs import InputError

    try:
        report = train_tokenizer(cfg, comm, force=args.force)
    except InputError as e:  # found before the runner starts: the same on every rank
        raise StepError(str(e).splitlines()[0], 2) from None
    if comm.is_root:
        print(f"wrote {report['model']}: vocab {report['vocab_size']}, sample {report['sample_documents']:,} "
              f"documents / {report['sample_bytes']:,} bytes, sha256 {report['sha256'][:12]}")


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow train-tokenizer`` / ``tools/preprocess/train_tokenizer.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["train-tokenizer"].main(argv)
