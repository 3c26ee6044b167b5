"""Documents to tokenize: a records dataset (``megatron_snow.records``) or plain JSONL files.

The input is cut into *units* (a records shard, a ``.jsonl.gz`` file, or a
byte range of a plain ``.jsonl`` file). The list of units depends only on the
input paths and ``chunk_bytes``, never on how many workers or ranks run, which
is what makes the index byte-identical however the work is spread.
"""
from __future__ import annotations

import gzip
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from megatron_snow.records import MANIFEST, read_manifest

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class Unit:
    """One independent piece of input.

    ``start``/``end`` select part of the file: byte offsets for plain ``.jsonl``
    (lines starting in the range), record numbers for gzip files (which cannot
    be seeked; skipping records costs only decompression). ``end`` None: to the
    end. ``size`` is the estimated text bytes, used to schedule big units first.
    """

    kind: str  # "records" (CodeRecord JSONL.gz shard) or "jsonl" (foreign JSONL, text field configurable)
    path: str
    start: int = 0
    end: int | None = None
    size: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Document:
    id: str
    text: str | None  # None: the line had no usable text field (counted, not tokenized)
    language: str
    repo: str = ""
    path: str = ""
    file_ids: list[str] | None = None  # the files of a repository document (phase-1 grouping meta)
    error: str = ""  # reason this line could not be read ("bad_json", "missing_text")


class InputError(ValueError):
    """Input paths that cannot be read as documents."""


def plan_units(inputs: list[str], chunk_bytes: int = 64 << 20) -> list[Unit]:
    """Units of the given inputs, in a fixed order.

    A directory is a records dataset (its shards in manifest order); a file
    ending in .jsonl/.json(.gz) is plain JSONL. Units hold about ``chunk_bytes``
    of text: records shards are split into record ranges (the manifest gives
    their record and byte counts), uncompressed JSONL into byte ranges, so a
    few big files still spread over many workers.
    """
    if not inputs:
        raise InputError("no input given")
    units: list[Unit] = []
    for inp in inputs:
        p = Path(os.path.abspath(inp))  # a resumed or verified run may start from another directory
        if p.is_dir():
            if not (p / MANIFEST).is_file():  # a stage still running (or killed) has no manifest yet
                raise InputError(f"{inp}: no {MANIFEST}: not a finished records dataset")
            entries = read_manifest(p)["shards"]
            if not entries:
                raise InputError(f"{inp}: directory has no part-*.jsonl.gz shards (not a records dataset)")
            for e in entries:
                n, nbytes = int(e["records"]), int(e["content_bytes"])
                k = max(1, min(n, -(-nbytes // chunk_bytes)))
                bounds = [round(i * n / k) for i in range(k + 1)]
                units += [Unit("records", str(p / e["name"]), bounds[i], bounds[i + 1], nbytes * (bounds[i + 1] - bounds[i]) // max(n, 1))
                          for i in range(k)]
        elif p.is_file():
            if not p.name.endswith(JSONL_SUFFIXES):
                raise InputError(f"{inp}: expected a records directory or a file ending in {', '.join(JSONL_SUFFIXES)}")
            if p.name.endswith(".gz"):
                units.append(Unit("jsonl", str(p), size=p.stat().st_size * 4))
            else:
                size = p.stat().st_size
                for start in range(0, max(size, 1), chunk_bytes):
                    end = min(start + chunk_bytes, size)
                    units.append(Unit("jsonl", str(p), start, end, end - start))
        else:
            raise InputError(f"{inp}: no such file or directory")
    return units


def _lines(unit: Unit) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of the unit's non-blank lines."""
    if unit.path.endswith(".gz"):
        with gzip.open(unit.path, "rb") as f:
            pos = record = 0
            for line in f:
                if line.strip():
                    if unit.end is not None and record >= unit.end:
                        return
                    if record >= unit.start:
                        yield pos, line
                    record += 1
                pos += len(line)
        return
    with open(unit.path, "rb") as f:
        pos = unit.start
        if pos > 0:  # the line holding byte start-1 belongs to the previous unit
            f.seek(pos - 1)
            pos = pos - 1 + len(f.readline())
        end = unit.end if unit.end is not None else os.fstat(f.fileno()).st_size
        while pos < end:
            line = f.readline()
            if not line:
                break
            yield pos, line
            pos += len(line)


def read_unit(unit: Unit, text_field: str = "text", id_field: str = "id", language_field: str = "language") -> Iterator[Document]:
    """Documents of a unit in file order. Records shards always use the CodeRecord fields."""
    if unit.kind == "records":
        text_field, id_field, language_field = "content", "id", "language"
    name = os.path.basename(unit.path)
    for pos, line in _lines(unit):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("not an object")
        except ValueError:
            yield Document(id=f"{name}@{pos}", text=None, language="", error="bad_json")
            continue
        doc_id = d.get(id_field)
        doc_id = f"{name}@{pos}" if doc_id is None else str(doc_id)
        lang = d.get(language_field) or ""
        text = d.get(text_field)
        doc = Document(id=doc_id, text=text if isinstance(text, str) else None, language=str(lang),
                       repo=str(d.get("repo") or ""), path=str(d.get("path") or ""))
        meta = d.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("file_ids"), list):
            doc.file_ids = [str(x) for x in meta["file_ids"]]
        if doc.text is None:
            doc.error = "missing_text"
        yield doc
