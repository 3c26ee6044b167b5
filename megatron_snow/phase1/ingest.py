"""Ingest raw code into CodeRecords: Stack-layout parquet/arrow (or a hub id), JSONL, repo directories.

Input is cut into *units* (a chunk of a directory listing, one JSONL file, one
parquet row group, one arrow file); each unit becomes exactly one output shard,
so the output does not depend on how many MPI ranks share the work.
Binary, non-UTF-8, unreadable and out-of-scope files are set aside with a reason.
"""
from __future__ import annotations

import glob
import gzip
import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal

from megatron_snow.phase1.languages import (
    RECIPE_LANGUAGES, NotebookError, language_from_path, normalize_language, notebook_to_script,
)
from megatron_snow.records import CodeRecord


@dataclass
class SourceConfig:
    """One input. kind: directory (top-level folders are repos), jsonl, stack (parquet/arrow), hub."""

    kind: Literal["directory", "jsonl", "stack", "hub"]
    path: str  # directory, file or glob; for hub: the dataset id
    name: str = ""  # source tag written into records (default: kind)
    hub_config: str | None = None  # hub: data_dir / config name (e.g. "data/python")
    hub_split: str = "train"
    hub_cache_dir: str | None = None  # datasets cache (default: the HF cache)
    files_per_shard: int = 1000  # directory sources: files per output shard


@dataclass
class IngestConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    languages: list[str] = field(default_factory=lambda: list(RECIPE_LANGUAGES))
    max_read_bytes: int = 20_000_000  # larger files are set aside unread
    binary_probe_bytes: int = 8192  # a NUL byte in this prefix marks a file binary


@dataclass
class Dropped:
    record: CodeRecord
    reason: str
    details: dict = field(default_factory=dict)


def _source_name(src: SourceConfig) -> str:
    return src.name or src.kind


def _expand(path: str, patterns: tuple[str, ...]) -> list[str]:
    if os.path.isdir(path):
        out: list[str] = []
        for p in patterns:
            out += glob.glob(os.path.join(path, "**", p), recursive=True)
        return sorted(set(out))
    found = sorted(glob.glob(path))
    if not found:
        raise FileNotFoundError(f"ingest: no input files match {path}")
    return found


def list_units(sources: list[SourceConfig]) -> list[dict]:
    """Deterministic list of work units over all sources (one output shard each)."""
    units: list[dict] = []
    for si, src in enumerate(sources):
        if src.kind == "directory":
            root = Path(src.path)
            if not root.is_dir():
                raise FileNotFoundError(f"ingest: directory source not found: {root}")
            files = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                for fn in sorted(filenames):
                    files.append(os.path.relpath(os.path.join(dirpath, fn), root))
            n = max(1, src.files_per_shard)
            for start in range(0, len(files), n):
                units.append({"source": si, "kind": "directory", "files": files[start:start + n]})
        elif src.kind == "jsonl":
            for f in _expand(src.path, ("*.jsonl", "*.jsonl.gz", "*.json")):
                units.append({"source": si, "kind": "jsonl", "file": f})
        elif src.kind == "stack":
            for f in _expand(src.path, ("*.parquet", "*.arrow")):
                if f.endswith(".parquet"):
                    import pyarrow.parquet as pq

                    for rg in range(pq.ParquetFile(f).num_row_groups):
                        units.append({"source": si, "kind": "parquet", "file": f, "row_group": rg})
                else:
                    units.append({"source": si, "kind": "arrow", "file": f})
        elif src.kind == "hub":
            for f in hub_arrow_files(src):
                units.append({"source": si, "kind": "arrow", "file": f})
        else:  # pragma: no cover - the config Literal rejects this first
            raise ValueError(f"unknown source kind {src.kind!r}")
    return units


def hub_arrow_files(src: SourceConfig) -> list[str]:
    """Download (or reuse the cache of) a hub dataset and return its arrow cache files."""
    import datasets

    kwargs = {"data_dir": src.hub_config} if src.hub_config and "/" in src.hub_config else {}
    name = src.hub_config if src.hub_config and "/" not in src.hub_config else None
    ds = datasets.load_dataset(src.path, name, split=src.hub_split, cache_dir=src.hub_cache_dir, **kwargs)
    return sorted(c["filename"] for c in ds.cache_files)


class Ingestor:
    """Turns raw bytes/strings plus where they came from into kept records or Dropped."""

    def __init__(self, cfg: IngestConfig):
        self.cfg = cfg
        unknown = [lang for lang in cfg.languages if lang not in RECIPE_LANGUAGES]
        if unknown:
            raise ValueError(f"ingest.languages: unknown {unknown} (known: {list(RECIPE_LANGUAGES)})")
        self.languages = set(cfg.languages)

    def make(self, data: bytes | str, *, rec_id: str, repo: str, path: str, source: str,
             license: str | None = None, lang_hint: str | None = None, meta: dict | None = None
             ) -> CodeRecord | Dropped:
        rec = CodeRecord(id=rec_id, content="", language="", repo=repo, path=path, source=source,
                         license=license, meta=dict(meta or {}))
        nbytes = len(data.encode("utf-8", "surrogatepass")) if isinstance(data, str) else len(data)
        rec.meta["bytes"] = nbytes
        # The dataset's own label first (a C++ repo's .h files are C++), then the extension.
        lang = normalize_language(lang_hint) or language_from_path(path, data[:200])
        rec.language = lang or "unknown"
        if lang is None or lang not in self.languages:
            return Dropped(rec, "unsupported_language", {"extension": os.path.splitext(path)[1]})
        if isinstance(data, bytes):
            if b"\x00" in data[: self.cfg.binary_probe_bytes]:
                return Dropped(rec, "binary")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                return Dropped(rec, "invalid_utf8", {"offset": e.start})
        else:
            text = data
            if "\x00" in text[: self.cfg.binary_probe_bytes]:
                return Dropped(rec, "binary")
        if text.startswith("\ufeff"):
            text = text[1:]
        if lang == "jupyter":
            try:
                text = notebook_to_script(text)
            except NotebookError as e:
                return Dropped(rec, "invalid_notebook", {"error": str(e)})
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # lone surrogates from JSON escapes
            return Dropped(rec, "invalid_utf8", {"offset": e.start})
        rec.meta.pop("bytes")
        rec.content = text
        return rec

    # -- unit readers ------------------------------------------------------
    def read_unit(self, unit: dict, sources: list[SourceConfig]) -> Iterator[CodeRecord | Dropped]:
        src = sources[unit["source"]]
        tag = _source_name(src)
        kind = unit["kind"]
        if kind == "directory":
            yield from self._read_directory(src, unit["files"], tag)
        elif kind == "jsonl":
            yield from self._read_jsonl(unit["file"], tag)
        elif kind in ("parquet", "arrow"):
            yield from self._read_table(unit, tag)

    def _read_directory(self, src: SourceConfig, files: list[str], tag: str) -> Iterator[CodeRecord | Dropped]:
        root = Path(src.path)
        for rel in files:
            parts = Path(rel).parts
            repo, path = (parts[0], str(Path(*parts[1:]))) if len(parts) > 1 else ("", parts[0])
            rec_id = f"{tag}/{rel}"
            full = root / rel
            try:
                size = full.stat().st_size
                if not full.is_file():
                    raise OSError("not a regular file")
                if size > self.cfg.max_read_bytes:
                    rec = CodeRecord(id=rec_id, content="", language=language_from_path(path) or "unknown",
                                     repo=repo, path=path, source=tag, meta={"bytes": size})
                    yield Dropped(rec, "too_large_to_read", {"bytes": size})
                    continue
                data = full.read_bytes()
            except OSError as e:
                rec = CodeRecord(id=rec_id, content="", language=language_from_path(path) or "unknown",
                                 repo=repo, path=path, source=tag)
                yield Dropped(rec, "unreadable", {"error": e.strerror or str(e)})
                continue
            yield self.make(data, rec_id=rec_id, repo=repo, path=path, source=tag)

    def _read_jsonl(self, file: str, tag: str) -> Iterator[CodeRecord | Dropped]:
        opener = gzip.open if file.endswith(".gz") else open
        base = os.path.basename(file)
        try:
            yield from self._jsonl_lines(opener(file, "rb"), base, tag)
        except (EOFError, OSError, zlib.error) as e:  # a truncated or corrupt .gz: keep what was read
            rec = CodeRecord(id=f"{tag}/{base}:corrupt", content="", language="unknown", source=tag)
            yield Dropped(rec, "corrupt_input", {"error": str(e)[:200]})

    def _jsonl_lines(self, f, base: str, tag: str) -> Iterator[CodeRecord | Dropped]:
        with f:
            for lineno, line in enumerate(f):
                if not line.strip():
                    continue
                rec_id = f"{tag}/{base}:{lineno}"
                try:
                    d = json.loads(line)
                    if not isinstance(d, dict):
                        raise ValueError("not an object")
                    content = d.get("content", d.get("text"))
                    if not isinstance(content, str):
                        raise ValueError("no string 'content' or 'text' field")
                except (ValueError, UnicodeDecodeError) as e:
                    rec = CodeRecord(id=rec_id, content="", language="unknown", source=tag)
                    yield Dropped(rec, "invalid_json", {"error": str(e)[:200]})
                    continue
                yield self.make(
                    content, rec_id=str(d.get("id") or rec_id), source=tag,
                    repo=str(d.get("repo") or d.get("repo_name") or d.get("max_stars_repo_name") or ""),
                    path=str(d.get("path") or d.get("max_stars_repo_path") or ""),
                    license=_license(d.get("license", d.get("max_stars_repo_licenses"))),
                    lang_hint=d.get("language") or d.get("lang"),
                )

    def _read_table(self, unit: dict, tag: str) -> Iterator[CodeRecord | Dropped]:
        import pyarrow as pa

        file = unit["file"]
        if unit["kind"] == "parquet":
            import pyarrow.parquet as pq

            table = pq.ParquetFile(file).read_row_group(unit["row_group"])
            where = f"{os.path.basename(file)}#{unit['row_group']}"
        else:
            with pa.memory_map(file) as mm:
                try:
                    table = pa.ipc.open_stream(mm).read_all()
                except pa.ArrowInvalid:
                    table = pa.ipc.open_file(mm).read_all()
            where = os.path.basename(file)
        cols = set(table.column_names)
        if "content" not in cols:
            raise ValueError(f"ingest: {file} has no 'content' column (columns: {sorted(cols)})")
        for row_i, d in enumerate(table.to_pylist()):
            repo = d.get("max_stars_repo_name") or d.get("repo_name") or d.get("repo") or ""
            path = d.get("max_stars_repo_path") or d.get("path") or ""
            rec_id = f"{tag}/{where}:{row_i}"
            meta = {"hexsha": d["hexsha"]} if d.get("hexsha") else {}
            content = d["content"]
            if content is None:
                yield Dropped(CodeRecord(id=rec_id, content="", language="unknown", repo=repo, path=path,
                                         source=tag), "missing_content")
                continue
            yield self.make(content, rec_id=rec_id, repo=repo, path=path, source=tag,
                            license=_license(d.get("max_stars_repo_licenses", d.get("license"))),
                            lang_hint=d.get("lang") or d.get("language"), meta=meta)


def _license(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or None
    return str(value) or None


def content_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
