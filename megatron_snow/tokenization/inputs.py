"""Documents to tokenize: a records dataset (``megatron_snow.records``) or plain JSONL files.

The input is cut into *units* (a records shard or a record range of it, a
``.jsonl.gz`` file, or a byte range of a plain ``.jsonl`` file). The base plan
(``plan_units``) depends only on the input paths and ``chunk_bytes``, never on
how many workers or ranks run; ``split_units`` cuts it further when there are
fewer units than processes. Documents come out in input order however the
units are cut, which is what keeps the index byte-identical.

Input is untrusted. A line that is not a readable record becomes a
``Document`` with ``error`` set to a funnel reason (``invalid_json``,
``invalid_utf8``, ``json_too_deep``, ``not_an_object``, ``wrong_field_type``,
``missing_text``, ``corrupt_gzip`` ...), naming its file and line. A records
shard is also checked against its manifest entry: records the manifest
promises but a truncated gzip does not hold are counted as ``corrupt_gzip``;
a shard that holds *more* records than its manifest says, or fewer without
being damaged, is a damaged dataset and raises ``InputError``.
"""
from __future__ import annotations

import gzip
import json
import os
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterator

from megatron_snow.records import MANIFEST, BadRecord, field_type_error, iter_json_lines, read_manifest

JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class Unit:
    """One independent piece of input.

    ``start``/``end`` select part of the file: byte offsets for plain ``.jsonl``
    (lines starting in the range), record numbers for gzip files (which cannot
    be seeked; skipping records costs only decompression). ``end`` None: to the
    end. ``size`` is the estimated text bytes, used to schedule big units first.
    ``records`` (records shards): how many records the manifest says the whole
    shard holds; the unit that reads to the shard's end checks it.
    """

    kind: str  # "records" (CodeRecord JSONL.gz shard) or "jsonl" (foreign JSONL, text field configurable)
    path: str
    start: int = 0
    end: int | None = None
    size: int = 0
    records: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def by_bytes(self) -> bool:
        return not self.path.endswith(".gz")


@dataclass
class Document:
    id: str
    text: str | None  # None: the line had no usable text field (counted, not tokenized)
    language: str
    repo: str = ""
    path: str = ""
    file_ids: list[str] | None = None  # the files of a repository document (phase-1 grouping meta)
    error: str = ""  # funnel reason this line could not be used ("invalid_json", "missing_text", ...)
    count: int = 1  # documents this one stands for (a truncated shard: the records it lost)
    where: str = ""  # file:line of an error


class InputError(ValueError):
    """Input paths that cannot be read as documents, or a dataset whose shards contradict its manifest."""


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
            try:
                entries = read_manifest(p)["shards"]
            except ValueError as e:
                raise InputError(str(e)) from None
            if not entries:
                raise InputError(f"{inp}: the dataset has no shards")
            for e in entries:
                n, nbytes = int(e["records"]), int(e["content_bytes"])
                k = max(1, min(n, -(-nbytes // chunk_bytes)))
                bounds = [round(i * n / k) for i in range(k + 1)]
                units += [Unit("records", str(p / e["name"]), bounds[i], bounds[i + 1],
                               nbytes * (bounds[i + 1] - bounds[i]) // max(n, 1), n) for i in range(k)]
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


def count_lines(path: str) -> int:
    """Non-blank lines of a gzip JSONL file (stops quietly at a damaged end)."""
    n = 0
    try:
        with gzip.open(path, "rb") as f:
            for line in f:
                n += bool(line.strip())
    except (EOFError, OSError, zlib.error):
        pass
    return n


def split_units(units: list[Unit], parts: int) -> tuple[list[tuple[int, Unit]], str]:
    """Cut units so there are at least ``parts`` of them: (base unit index, sub-unit) in order, and a
    sentence saying how. Plain JSONL is cut by byte ranges; gzip files and records shards by records."""
    if len(units) >= parts or not units:
        return [(i, u) for i, u in enumerate(units)], f"{len(units)} units for {parts} processes: no split"
    k = -(-parts // len(units))
    out: list[tuple[int, Unit]] = []
    how = set()
    for i, u in enumerate(units):
        if u.by_bytes:
            end = u.end if u.end is not None else os.path.getsize(u.path)
            cuts = [u.start + (end - u.start) * j // k for j in range(k + 1)]
            how.add("byte ranges")
        else:
            end = u.end if u.end is not None else count_lines(u.path)
            cuts = [u.start + (end - u.start) * j // k for j in range(k + 1)]
            how.add("record ranges")
        pieces = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
        if len(pieces) < 2:  # too small to cut
            out.append((i, u))
            continue
        for a, b in pieces:
            last = b == end and u.end is None
            size = u.size * (b - a) // max(end - u.start, 1)
            out.append((i, replace(u, start=a, end=None if last else b, size=size)))
    return out, (f"{len(units)} units for {parts} processes: cut each into up to {k} by "
                 f"{' and '.join(sorted(how))} -> {len(out)} units")


def _gz_lines(unit: Unit) -> Iterator[tuple[int, dict | BadRecord]]:
    """(record number, object or BadRecord) of a gzip unit's range; a damaged end stands for what it lost.

    The unit that ends where the shard ends reads on to the real end, so a shard holding more records
    than its manifest says is found (not silently cut short).
    """
    name = os.path.basename(unit.path)
    to_end = unit.records is not None and (unit.end is None or unit.end >= unit.records)
    end = unit.end if unit.end is not None else unit.records
    record = 0

    def mismatch(n: int) -> InputError:
        return InputError(f"{unit.path} holds {n} records but its manifest says {unit.records}: "
                          "the dataset is damaged; rebuild it with the step that wrote it")

    for item in iter_json_lines(unit.path, name):
        if end is not None and record >= end and not to_end:
            return
        if isinstance(item, BadRecord) and item.reason in ("corrupt_gzip", "unreadable_file"):
            if end is not None and record >= end:
                raise mismatch(f"more than {record}")
            yield max(record, unit.start), item
            return
        if record >= unit.start and (end is None or record < end):
            yield record, item[1] if isinstance(item, tuple) else item
        record += 1
    if to_end and record != unit.records:
        raise mismatch(str(record))


def _plain_lines(unit: Unit) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of the lines of a plain file starting in [start, end)."""
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


def _parse(line: bytes) -> dict | tuple[str, str]:
    """A JSON object, or (reason, error) with the reasons of ``records.iter_json_lines``."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return "invalid_utf8", f"byte {e.start}"
    try:
        d = json.loads(text)
    except RecursionError:
        return "json_too_deep", "JSON nested too deep"
    except ValueError as e:
        return "invalid_json", str(e)
    if not isinstance(d, dict):
        return "not_an_object", f"a JSON {type(d).__name__}, not an object"
    return d


def read_unit(unit: Unit, text_field: str = "text", id_field: str = "id",
              language_field: str = "language") -> Iterator[Document]:
    """Documents of a unit in file order. Records shards always use the CodeRecord fields."""
    records_kind = unit.kind == "records"
    if records_kind:
        text_field, id_field, language_field = "content", "id", "language"
    name = os.path.basename(unit.path)
    if unit.by_bytes:
        def items():
            for pos, line in _plain_lines(unit):
                if line.strip():
                    yield pos, _parse(line)
    else:
        def items():
            yield from _gz_lines(unit)
    for pos, d in items():
        where = f"{name}:{pos}"
        if isinstance(d, BadRecord):
            lang = d.record.language if d.record.language != "unknown" else ""
            lost = 1
            if d.reason == "corrupt_gzip" and unit.records is not None:  # the records the manifest promised
                lost = max(1, (unit.end if unit.end is not None else unit.records) - pos)
            yield Document(id=f"{name}@{pos}", text=None, language=lang, error=d.reason, count=lost,
                           where=f"{d.file}:{d.line}: {d.error}")
            continue
        if isinstance(d, tuple):
            yield Document(id=f"{name}@{pos}", text=None, language="", error=d[0], where=f"{where}: {d[1]}")
            continue
        if records_kind:
            bad = field_type_error(d)
            if bad:
                lang = d.get("language") if isinstance(d.get("language"), str) else ""
                yield Document(id=f"{name}@{pos}", text=None, language=lang, error="wrong_field_type",
                               where=f"{where}: {bad}")
                continue
        doc_id = d.get(id_field)
        doc_id = f"{name}@{pos}" if doc_id is None else str(doc_id)
        lang = d.get(language_field)
        text = d.get(text_field)
        doc = Document(id=doc_id, text=text if isinstance(text, str) else None,
                       language=lang if isinstance(lang, str) else "",
                       repo=d.get("repo") if isinstance(d.get("repo"), str) else "",
                       path=d.get("path") if isinstance(d.get("path"), str) else "")
        meta = d.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("file_ids"), list):
            doc.file_ids = [str(x) for x in meta["file_ids"]]
        if doc.text is None:
            doc.error = "missing_text"
            doc.where = f"{where}: no string field {text_field!r}"
        yield doc


def input_dependencies(inputs: list[str]) -> dict[str, str]:
    """The inputs as a step's ``depends_on`` (fingerprinted by content: a dataset by its manifest)."""
    if len(inputs) == 1:
        return {"input": os.path.abspath(inputs[0])}
    return {f"input[{k}]": os.path.abspath(p) for k, p in enumerate(inputs)}


def manifest_records(inputs: list[str]) -> int | None:
    """Records the inputs hold by their manifests, when every input is a records dataset (plain JSONL
    files have no manifest to account against: None)."""
    total = 0
    for inp in inputs:
        if not Path(inp).is_dir():
            return None
        total += int(read_manifest(inp)["records"])
    return total
