"""Megatron indexed datasets (``PREFIX.bin`` / ``PREFIX.idx``) and blend files: the one reader and writer.

- ``IndexWriter`` writes a dataset through megatron-core's ``IndexedDatasetBuilder``
  under temporary names and renames both files at the end, so a prefix that
  exists is complete. The token dtype follows megatron-core's rule (uint16 for
  vocabularies under 65,500, int32 above).
- ``read_idx`` parses a ``.idx`` file with every size checked against the file
  length, so a damaged index is one ``IndexFormatError`` line, never a numpy
  traceback (megatron-core's own reader trusts the header).
- A *blend file* (``write_blend_file`` / ``read_blend_file``) names datasets by
  prefix with their weights and how many times each is to be seen in training;
  phase-2 selection writes one and ``pretrain_gpt.py`` reads it as
  ``data.blend_file=PATH``.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from megatron_snow import faults

IDX_MAGIC = b"MMIDIDX\x00\x00"
_HEADER = struct.Struct("<QBQQ")  # version, dtype code, sequence count, document-index count
# megatron-core's DType codes (indexed_dataset.DType); kept here so reading needs no torch import.
DTYPE_CODES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32,
               8: np.uint16}
BLEND_FORMAT = "megatron-snow-blend-v1"


class IndexFormatError(ValueError):
    """A ``.idx`` / ``.bin`` pair that is not a well-formed megatron-core indexed dataset."""


def index_dtype(vocab_size: int) -> type[np.number]:
    """megatron-core's choice: uint16 when every id fits (vocabulary under 65,500), else int32."""
    return np.uint16 if vocab_size is not None and vocab_size < 65500 else np.int32


def dtype_code(dtype) -> int:
    t = np.dtype(dtype).type
    for code, d in DTYPE_CODES.items():
        if d is t:
            return code
    raise ValueError(f"no megatron-core dtype code for {np.dtype(dtype).name}")


# -- reading ------------------------------------------------------------------
@dataclass
class IdxHeader:
    version: int
    dtype_code: int
    sequences: int
    document_indices: int

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(DTYPE_CODES[self.dtype_code])


@dataclass
class Idx:
    """A parsed ``.idx``: the header and its arrays (memory-mapped)."""

    header: IdxHeader
    sequence_lengths: np.ndarray  # int32, tokens per sequence (= per document here)
    sequence_pointers: np.ndarray  # int64, byte offset of each sequence in .bin
    document_indices: np.ndarray  # int64, sequence index where each document starts (+ the end)

    @property
    def dtype(self) -> np.dtype:
        return self.header.dtype


def idx_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.idx")


def bin_path(prefix: str | Path) -> Path:
    return Path(f"{prefix}.bin")


def read_idx_header(path: str | Path) -> IdxHeader:
    """The fixed header of a ``.idx`` file (``path`` is the file itself)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(IDX_MAGIC) + _HEADER.size)
    except OSError as e:
        raise IndexFormatError(f"{path}: cannot read: {e.strerror or e}") from None
    if len(head) < len(IDX_MAGIC) + _HEADER.size or not head.startswith(IDX_MAGIC):
        raise IndexFormatError(f"{path}: not a megatron-core index (bad magic or truncated header)")
    version, code, seqs, docs = _HEADER.unpack_from(head, len(IDX_MAGIC))
    if version != 1:
        raise IndexFormatError(f"{path}: index version {version}, expected 1")
    if code not in DTYPE_CODES:
        raise IndexFormatError(f"{path}: unknown token dtype code {code}")
    return IdxHeader(version, code, seqs, docs)


def read_idx(prefix: str | Path) -> Idx:
    """Parse ``prefix.idx`` with every size checked; raises IndexFormatError naming the file."""
    path = idx_path(prefix)
    head = read_idx_header(path)
    offset = len(IDX_MAGIC) + _HEADER.size
    need = offset + head.sequences * (4 + 8) + head.document_indices * 8
    size = path.stat().st_size
    if size < need:
        raise IndexFormatError(f"{path}: {size} bytes, its header promises at least {need} (truncated?)")
    if head.document_indices < 1:
        raise IndexFormatError(f"{path}: no document index")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    lengths = np.frombuffer(mm, dtype=np.int32, count=head.sequences, offset=offset)
    offset += lengths.nbytes
    pointers = np.frombuffer(mm, dtype=np.int64, count=head.sequences, offset=offset)
    offset += pointers.nbytes
    docs = np.frombuffer(mm, dtype=np.int64, count=head.document_indices, offset=offset)
    return Idx(head, lengths, pointers, docs)


def idx_dtype(prefix: str | Path) -> np.dtype:
    """The token dtype of ``prefix.bin`` (from its ``.idx`` header)."""
    return read_idx_header(idx_path(prefix)).dtype


def check_idx(idx: Idx, bin_size: int | None = None) -> list[str]:
    """Structural problems of a parsed index (empty list: consistent); optionally against the .bin size."""
    errors = []
    lengths = idx.sequence_lengths.astype(np.int64)
    if (lengths < 0).any():
        errors.append(f"{int((lengths < 0).sum())} sequences have a negative length")
    expect = np.concatenate([[0], np.cumsum(lengths)[:-1]]) * idx.dtype.itemsize if lengths.size else lengths
    if not np.array_equal(idx.sequence_pointers, expect):
        errors.append("sequence pointers do not follow the sequence lengths")
    d = idx.document_indices
    if d[0] != 0 or d[-1] != lengths.size or (np.diff(d) < 0).any():
        errors.append("document indices are not an increasing cover of the sequences")
    if bin_size is not None and bin_size != int(lengths.sum()) * idx.dtype.itemsize:
        errors.append(f".bin is {bin_size} bytes, the index describes {int(lengths.sum()) * idx.dtype.itemsize}")
    return errors


# -- writing ------------------------------------------------------------------
class IndexWriter:
    """Write one indexed dataset; ``finish()`` renames the files into place (else nothing final exists).

    ``add(tokens)`` adds one document (one sequence); ``add_index(prefix)`` appends
    a whole finished dataset of the same dtype (megatron-core's concatenation).
    """

    def __init__(self, prefix: str | Path, dtype, vocab_size: int | None = None):
        from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

        self.prefix = str(prefix)
        Path(self.prefix).parent.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype).type
        self.vocab_size = vocab_size
        pid = os.getpid()
        self._tmp_bin, self._tmp_idx = f"{self.prefix}.bin.tmp-{pid}", f"{self.prefix}.idx.tmp-{pid}"
        self._builder = IndexedDatasetBuilder(self._tmp_bin, dtype=self.dtype)
        self.documents = 0
        self.tokens = 0
        self._doc_point = f"index.document:{Path(self.prefix).name}"

    def add(self, tokens) -> None:
        arr = np.asarray(tokens, dtype=np.int64)
        if self.vocab_size is not None and arr.size and (arr.min() < 0 or arr.max() >= self.vocab_size):
            bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
            raise ValueError(f"document {self.documents}: token id {bad} outside the vocabulary of {self.vocab_size}")
        self._builder.add_document(arr, [arr.size])
        faults.point(self._doc_point)  # kill tests: a part half written
        self.documents += 1
        self.tokens += int(arr.size)

    def add_index(self, prefix: str | Path) -> None:
        idx = read_idx(prefix)
        if idx.dtype.type is not self.dtype:
            raise IndexFormatError(
                f"{prefix}.idx holds {idx.dtype.name} tokens, this dataset {np.dtype(self.dtype).name}")
        self._builder.add_index(str(prefix))
        self.documents += int(idx.header.document_indices) - 1
        self.tokens += int(idx.sequence_lengths.sum(dtype=np.int64))

    def finish(self) -> int:
        """Write the index and move both files into place; returns the document count."""
        self._builder.finalize(self._tmp_idx)
        faults.point(f"index.written:{Path(self.prefix).name}")
        os.replace(self._tmp_bin, f"{self.prefix}.bin")
        faults.point(f"index.bin_renamed:{Path(self.prefix).name}")  # the new .bin beside no (or an old) .idx
        os.replace(self._tmp_idx, f"{self.prefix}.idx")
        return self.documents

    def abort(self) -> None:
        self._builder.data_file.close()
        for p in (self._tmp_bin, self._tmp_idx):
            if os.path.exists(p):
                os.remove(p)


def write_indexed_dataset(prefix: str | Path, documents: Iterable[Iterable[int]], vocab_size: int) -> int:
    """Write token-id documents as one indexed dataset; returns the document count.

    Each document is written as given (callers append the end-of-document id).
    Raises ValueError on an id outside ``[0, vocab_size)``.
    """
    w = IndexWriter(prefix, index_dtype(vocab_size), vocab_size)
    try:
        for doc in documents:
            w.add(doc)
    except BaseException:
        w.abort()
        raise
    return w.finish()


# -- blend files --------------------------------------------------------------
@dataclass
class BlendEntry:
    """One dataset of a blend: seen ``repetition`` times in training (``tokens`` = unique x repetition)."""

    prefix: str
    unique_tokens: int
    repetition: float = 1.0
    weight: float | None = None  # share of training samples; None: proportional to unique_tokens x repetition

    @property
    def tokens(self) -> int:
        return int(round(self.unique_tokens * self.repetition))


def write_blend_file(path: str | Path, entries: list[BlendEntry], **info) -> dict:
    """Write a blend file (JSON, atomically); prefixes relative to the file are kept relative."""
    total = sum(e.tokens for e in entries)
    datasets = []
    for e in entries:
        d = asdict(e)
        d["weight"] = e.weight if e.weight is not None else (e.tokens / total if total else 0.0)
        d["tokens"] = e.tokens
        datasets.append(d)
    blend = {"format": BLEND_FORMAT, **info, "datasets": datasets, "total_tokens": total}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(blend, indent=2) + "\n")
    os.replace(tmp, path)
    return blend


def read_blend_file(path: str | Path) -> list[BlendEntry]:
    """The datasets of a blend file; relative prefixes are relative to the file. ValueError names the problem."""
    path = Path(path)
    try:
        blend = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such blend file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable blend file ({e})") from None
    if not isinstance(blend, dict) or blend.get("format") != BLEND_FORMAT:
        raise ValueError(f"{path}: not a blend file (format is not {BLEND_FORMAT})")
    entries = []
    for i, d in enumerate(blend.get("datasets") or []):
        try:
            prefix = str(d["prefix"])
            e = BlendEntry(prefix if os.path.isabs(prefix) else str(path.parent / prefix),
                           int(d["unique_tokens"]), float(d.get("repetition", 1.0)),
                           None if d.get("weight") is None else float(d["weight"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: datasets[{i}] is malformed ({err!r})") from None
        if e.unique_tokens < 1 or e.repetition <= 0 or (e.weight is not None and e.weight <= 0):
            raise ValueError(f"{path}: datasets[{i}] needs unique_tokens >= 1, repetition > 0 and weight > 0")
        entries.append(e)
    if not entries:
        raise ValueError(f"{path}: the blend names no dataset")
    return entries
