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
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CodeRecord":
        known = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in d.items() if k not in known}
        rec = cls(**{k: v for k, v in d.items() if k in known})
        if extra:
            rec.meta.setdefault("extra", {}).update(extra)
        return rec


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


def read_shard(path: str | Path) -> Iterator[CodeRecord]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield CodeRecord.from_dict(json.loads(line))


def iter_records(directory: str | Path) -> Iterator[CodeRecord]:
    """Stream every record of a dataset, shard by shard."""
    shards = list_shards(directory)
    if not shards:
        raise FileNotFoundError(f"no shards ({SHARD_GLOB}) in {directory}")
    for s in shards:
        yield from read_shard(s)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_shard(records: Iterable[CodeRecord | dict]) -> tuple[bytes, int, int]:
    """Deterministic gzip bytes of records; returns (bytes, n_records, n_content_bytes)."""
    raw = io.BytesIO()
    n = nbytes = 0
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        for r in records:
            d = r.to_dict() if isinstance(r, CodeRecord) else r
            gz.write((json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
            n += 1
            nbytes += len(d.get("content", "").encode("utf-8"))
    return raw.getvalue(), n, nbytes


def write_shard(path: str | Path, records: Iterable[CodeRecord | dict]) -> dict:
    """Write one whole shard atomically; returns its manifest entry."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data, n, nbytes = encode_shard(records)
    _atomic_write_bytes(p, data)
    return {"name": p.name, "records": n, "content_bytes": nbytes}


def shard_entry(path: str | Path) -> dict:
    """Manifest entry of an existing shard (re-read; used when resuming)."""
    n = nbytes = 0
    for r in read_shard(path):
        n += 1
        nbytes += len(r.content.encode("utf-8"))
    return {"name": Path(path).name, "records": n, "content_bytes": nbytes}


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
    _atomic_write_bytes(Path(directory) / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


def read_manifest(directory: str | Path) -> dict:
    m = Path(directory) / MANIFEST
    if not m.is_file():
        raise FileNotFoundError(f"{directory} has no {MANIFEST}: not a finished dataset")
    return json.loads(m.read_text())


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
