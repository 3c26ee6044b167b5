"""One record schema for code documents, stored as sharded JSONL.gz with a manifest.

A dataset is a directory::

    DIR/part-00000.jsonl.gz
    DIR/part-00001.jsonl.gz
    ...
    DIR/manifest.json        # written last: its presence means "complete"

Shards are written to a temporary name and renamed into place, so a shard
that exists is whole; a killed stage re-run skips shards already present.
Gzip headers carry no timestamp, so the same records give the same bytes.
Records are streamed shard by shard: a dataset never loads whole into memory.

Speed (phase 1 reads and writes every record once per stage): lines are parsed by orjson,
gzip levels 0-3 are ISA-L's (``isal``, ~4x zlib's level 1 at a smaller size) and reading is
ISA-L's too; a record read from a shard and written back unchanged is written as the very
line it was read from (no re-encoding), others by ``json`` as always.
Any line orjson cannot take is read by ``json`` as before, so the reasons below and the
values read do not change (orjson reads integers beyond 64 bits as floats: a record
holding a float is re-read by ``json``).

Input is untrusted: ``iter_json_lines`` / ``read_shard_checked`` are the one
reader of JSON-lines records (ours or anyone's). A truncated gzip, a line that
is not UTF-8 or not JSON, JSON nested too deep, or a field of the wrong type
comes back as a ``BadRecord`` with a named reason and the file and line, never
as an exception; the stage counts it in its funnel and goes on.
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import operator
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson
from isal import igzip, isal_zlib

from megatron_snow.atomic import atomic_write_bytes

MANIFEST = "manifest.json"
SHARD_GLOB = "part-*.jsonl.gz"


@dataclass
class CodeRecord:
    """A code file (or, after grouping, a repository document)."""

    id: str
    content: str
    language: str = ""
    repo: str = ""
    path: str = ""
    source: str = ""
    license: str | None = None
    # Per-stage metadata (e.g. {"pii": {"email": 2}, "annotator": {"score": 0.93}}).
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """What ``dataclasses.asdict`` gives (meta copied deeply), without its generic walk (a third of
        the cost of writing a shard was that walk)."""
        try:
            meta = _copy_plain(self.meta)
        except _NotPlain:
            return dataclasses.asdict(self)
        return {"id": self.id, "content": self.content, "language": self.language, "repo": self.repo,
                "path": self.path, "source": self.source, "license": self.license, "meta": meta}

    def line_if_unchanged(self) -> bytes | None:
        """The JSON line this record was read from (``read_shard_checked``) while no field has changed
        since (strings compared by identity, meta by value); None otherwise: the writer encodes it."""
        src = self.__dict__.get("_src")
        if src is None:
            return None
        line, fields, meta = src
        now = (self.id, self.content, self.language, self.repo, self.path, self.source, self.license)
        if all(map(operator.is_, now, fields)) and self.meta == meta:
            return line
        return None

    def _remember_line(self, line: bytes) -> None:
        try:
            meta = _copy_plain(self.meta)
        except _NotPlain:
            return
        self.__dict__["_src"] = (line, (self.id, self.content, self.language, self.repo, self.path, self.source,
                                        self.license), meta)

    @classmethod
    def from_dict(cls, d: dict) -> "CodeRecord":
        """A record from its dict; a field of the wrong type raises RecordError naming the field."""
        bad = field_type_error(d)
        if bad:
            raise RecordError(bad)
        known = _field_names(cls)
        if known.issuperset(d):
            return cls(**d)
        extra = {k: v for k, v in d.items() if k not in known}
        rec = cls(**{k: v for k, v in d.items() if k in known})
        rec.meta.setdefault("extra", {}).update(extra)
        return rec


@functools.lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


class _NotPlain(Exception):
    pass


_ATOMS = (str, int, float, bool, type(None))


def _copy_plain(v: Any) -> Any:
    """A deep copy of JSON-like data (exact types dict/list/tuple and atoms); anything else raises _NotPlain."""
    t = type(v)
    if t is dict:
        return {_copy_plain(k): _copy_plain(x) for k, x in v.items()}
    if t is list:
        return [_copy_plain(x) for x in v]
    if t is tuple:
        return tuple(_copy_plain(x) for x in v)
    if t in _ATOMS:
        return v
    raise _NotPlain


class RecordError(ValueError):
    """A record or shard that cannot be read; the message is one line naming the file (and line)."""


_STR_FIELDS = ("id", "content", "language", "repo", "path", "source")


def field_type_error(d: dict) -> str | None:
    """Which field of a record dict has the wrong type (None when all fit the schema)."""
    if "id" not in d or "content" not in d:
        return "missing field " + ("'id'" if "id" not in d else "'content'")
    for name in _STR_FIELDS:
        if name in d and not isinstance(d[name], str):
            return f"field '{name}' is {type(d[name]).__name__}, not str"
    if d.get("license") is not None and not isinstance(d["license"], str):
        return f"field 'license' is {type(d['license']).__name__}, not str"
    if "meta" in d and not isinstance(d["meta"], dict):
        return f"field 'meta' is {type(d['meta']).__name__}, not an object"
    return None


@dataclass
class BadRecord:
    """A line or file that did not give a record: why (a funnel reason), where, and a stand-in record
    (id ``FILE:LINE``, the language when one could be read) to count and set aside."""

    reason: str
    file: str
    line: int | None
    error: str
    record: "CodeRecord"
    count: int = 1  # records it stands for (the lost tail of a damaged shard whose manifest gives the count)

    def details(self) -> dict:
        d = {"file": self.file, "line": self.line, "error": self.error}
        if self.count != 1:
            d["records"] = self.count
        return d


def _bad(reason: str, file: str, line: int | None, error: str, d: Any = None) -> BadRecord:
    lang = d.get("language") if isinstance(d, dict) else None
    rec_id = f"{file}:{line}" if line is not None else file
    rec = CodeRecord(id=rec_id, content="", language=lang if isinstance(lang, str) and lang else "unknown",
                     source="", meta={})
    return BadRecord(reason, file, line, error[:200], rec)


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(obj) -> bool:
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
            return False
        except UnicodeEncodeError:
            return True
    if isinstance(obj, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_lone_surrogate(v) for v in obj)
    return False


def iter_json_lines(path: str | Path, name: str | None = None) -> Iterator[tuple[int, dict] | BadRecord]:
    """(line number, object) for every JSON object line of a .jsonl / .jsonl.gz file, or a BadRecord.

    Reasons: ``unreadable_file``, ``corrupt_gzip`` (the rest of a truncated or damaged gzip, once),
    ``invalid_utf8``, ``invalid_json``, ``json_too_deep``, ``not_an_object``. ``name`` is how the
    file is named in them (default: the path).
    """
    for item in _json_lines(path, name or str(path)):
        yield item if isinstance(item, BadRecord) else item[:2]


def _has_float(v: Any) -> bool:
    t = type(v)
    if t is float:
        return True
    if t is dict:
        return any(_has_float(x) for x in v.values())
    if t is list:
        return any(_has_float(x) for x in v)
    return False


def _json_lines(path: str | Path, where: str) -> Iterator[tuple[int, dict, bytes] | BadRecord]:
    """``iter_json_lines`` with each object's raw line (bytes, as read)."""
    try:
        f = igzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")
    except OSError as e:
        yield _bad("unreadable_file", where, None, e.strerror or str(e))
        return
    lineno = 0
    loads = orjson.loads
    try:
        with f:
            for lineno, raw in enumerate(_salvaging(f, path) if isinstance(f, igzip.IGzipFile) else f):
                try:  # the fast path: orjson takes valid UTF-8 JSON without lone surrogates
                    d = loads(raw)
                    if type(d) is dict and not _has_float(d):
                        yield lineno, d, raw
                        continue
                except orjson.JSONDecodeError:
                    pass
                bad_or_obj = _parse_slowly(raw, where, lineno)
                if bad_or_obj is None:
                    continue
                yield bad_or_obj if isinstance(bad_or_obj, BadRecord) else (lineno, bad_or_obj, raw)
    except (EOFError, OSError, zlib.error, isal_zlib.error, gzip.BadGzipFile) as e:
        yield _bad("corrupt_gzip", where, lineno + 1, str(e) or type(e).__name__)


def _salvaging(f: Any, path: str | Path) -> Iterator[bytes]:
    """The lines of an ISA-L gzip reader; where damage stops it, zlib reads on from the same line (ISA-L
    drops the whole lines of its last block before the damage, zlib gives them) and raises at the damage."""
    n = 0
    try:
        for line in f:
            yield line
            n += 1
        return
    except (EOFError, OSError, isal_zlib.error):
        pass
    with gzip.open(path, "rb") as z:
        for i, line in enumerate(z):
            if i >= n:
                yield line


def _parse_slowly(raw: bytes, where: str, lineno: int) -> dict | BadRecord | None:
    """A line by ``json`` (None: a blank line), each failure under its reason."""
    if not raw.strip():
        return None
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _bad("invalid_utf8", where, lineno, f"byte {e.start}")
    try:
        d = json.loads(line)
    except RecursionError:
        return _bad("json_too_deep", where, lineno, "JSON nested too deep")
    except ValueError as e:
        return _bad("invalid_json", where, lineno, str(e))
    if not isinstance(d, dict):
        return _bad("not_an_object", where, lineno, f"a JSON {type(d).__name__}, not an object")
    if "\\u" in line and _SURROGATE_ESCAPE.search(line) and _has_lone_surrogate(d):
        # valid JSON, but a lone \\uD800-\\uDFFF escape is no text: it cannot be written back as UTF-8
        return _bad("invalid_utf8", where, lineno, "a lone surrogate escape (\\uD800-\\uDFFF)")
    return d


def shard_name(index: int) -> str:
    return f"part-{index:05d}.jsonl.gz"


def list_shards(directory: str | Path) -> list[Path]:
    """Shards of a dataset in order (manifest order when there is one)."""
    d = Path(directory)
    m = d / MANIFEST
    if m.is_file():
        manifest = json.loads(m.read_text())
        return [d / s["name"] for s in manifest["shards"]]
    return sorted(d.glob(SHARD_GLOB))


def read_shard_checked(path: str | Path, name: str | None = None) -> Iterator[CodeRecord | BadRecord]:
    """Every record of a shard, or a BadRecord (see ``iter_json_lines``; plus ``wrong_field_type``)."""
    where = name or str(path)
    for item in _json_lines(path, where):
        if isinstance(item, BadRecord):
            yield item
            continue
        lineno, d, raw = item
        bad = field_type_error(d)
        if bad:
            yield _bad("wrong_field_type", where, lineno, bad, d)
            continue
        rec = CodeRecord.from_dict(d)
        if raw.endswith(b"}\n") and "meta" in d and len(d) == 8:  # all fields and no others: a line we wrote
            rec._remember_line(raw)
        yield rec


def read_shard(path: str | Path) -> Iterator[CodeRecord]:
    """Every record of a shard we wrote; anything unreadable raises RecordError (one line, file and line)."""
    for item in read_shard_checked(path):
        if isinstance(item, BadRecord):
            raise RecordError(f"{item.file}:{item.line}: {item.reason}: {item.error}")
        yield item


def iter_records(directory: str | Path) -> Iterator[CodeRecord]:
    """Stream every record of a dataset, shard by shard."""
    shards = list_shards(directory)
    if not shards:
        raise FileNotFoundError(f"no shards ({SHARD_GLOB}) in {directory}")
    for s in shards:
        yield from read_shard(s)


_atomic_write_bytes = atomic_write_bytes  # the old private name, still used by phase2


COMPRESSLEVEL = 6  # gzip level of a shard unless its writer asks for another (phase 1: its shard_compresslevel)


def encode_line(d: dict) -> bytes:
    """One record dict as a JSON line: sorted keys, ``json``'s separators, UTF-8 (the format every shard has
    had; orjson would write the same records faster but as other bytes)."""
    return (json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def gzip_bytes(data: bytes, compresslevel: int = COMPRESSLEVEL) -> bytes:
    """Deterministic gzip (no timestamp, no name): levels 0-3 by ISA-L, 4-9 by zlib."""
    if compresslevel <= 3:
        return igzip.compress(data, compresslevel, mtime=0)
    return gzip.compress(data, compresslevel, mtime=0)


def encode_shard(records: Iterable[CodeRecord | dict], compresslevel: int = COMPRESSLEVEL) -> tuple[bytes, int, int]:
    """Deterministic gzip bytes of records; returns (bytes, n_records, n_content_bytes). The level changes
    the bytes, never the records they decompress to. A record read from a shard and not changed since is
    written as the line it was read from."""
    lines = []
    nbytes = 0
    for r in records:
        if isinstance(r, CodeRecord):
            line = r.line_if_unchanged()
            if line is not None:
                lines.append(line)
                nbytes += len(r.content.encode("utf-8"))
                continue
            r = r.to_dict()
        lines.append(encode_line(r))
        nbytes += len(r.get("content", "").encode("utf-8"))
    return gzip_bytes(b"".join(lines), compresslevel), len(lines), nbytes


def write_shard(path: str | Path, records: Iterable[CodeRecord | dict], compresslevel: int = COMPRESSLEVEL) -> dict:
    """Write one whole shard atomically; returns its manifest entry (with a hash of the file's bytes)."""
    p = Path(path)
    data, n, nbytes = encode_shard(records, compresslevel)
    atomic_write_bytes(p, data)
    return {"name": p.name, "records": n, "content_bytes": nbytes,
            "blake2b": hashlib.blake2b(data, digest_size=16).hexdigest()}


def shard_entry(path: str | Path) -> dict:
    """Manifest entry of an existing shard (re-read; used when resuming)."""
    n = nbytes = 0
    for r in read_shard(path):
        n += 1
        nbytes += len(r.content.encode("utf-8"))
    return {"name": Path(path).name, "records": n, "content_bytes": nbytes,
            "blake2b": hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()}


def write_manifest(directory: str | Path, shard_entries: list[dict], **info: Any) -> dict:
    """Write the manifest (last step of a stage): shards in order, totals, and free-form info."""
    entries = sorted(shard_entries, key=lambda e: e["name"])
    manifest = {
        "format": "megatron-snow-records-v1",
        "shards": entries,
        "records": sum(e["records"] for e in entries),
        "content_bytes": sum(e["content_bytes"] for e in entries),
        **info,
    }
    atomic_write_bytes(Path(directory) / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def read_manifest(directory: str | Path) -> dict:
    """A finished dataset's manifest; a missing or damaged one raises (one line naming it)."""
    m = Path(directory) / MANIFEST
    if not m.is_file():
        raise FileNotFoundError(f"{directory} has no {MANIFEST}: not a finished dataset")
    try:
        manifest = json.loads(m.read_text())
        entries = manifest["shards"]
        if not isinstance(entries, list) or sum(int(e["records"]) for e in entries) != manifest["records"]:
            raise ValueError("shard counts do not add up to 'records'")
    except (ValueError, KeyError, TypeError) as e:
        raise RecordError(f"{m}: damaged manifest ({e})") from None
    return manifest


class ShardedWriter:
    """Write a stream of records into shards of at most ``records_per_shard``."""

    def __init__(self, directory: str | Path, records_per_shard: int = 10000, start_index: int = 0):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.records_per_shard = records_per_shard
        self.index = start_index
        self.buffer: list[CodeRecord | dict] = []
        self.entries: list[dict] = []

    def add(self, record: CodeRecord | dict) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= self.records_per_shard:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self.entries.append(write_shard(self.directory / shard_name(self.index), self.buffer))
            self.index += 1
            self.buffer = []

    def close(self, **manifest_info: Any) -> dict:
        self.flush()
        return write_manifest(self.directory, self.entries, **manifest_info)
