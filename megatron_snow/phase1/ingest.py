"""Ingest raw code into CodeRecords: Stack-layout parquet/arrow (or a hub id), JSONL, repo directories.

Input is cut into *units* (a chunk of a directory listing, one JSONL file, one
parquet row group, one arrow file); each unit becomes exactly one output shard,
so the output does not depend on how many MPI ranks share the work.
Every file, line and row is untrusted: binary, non-UTF-8, unreadable, damaged,
wrongly typed and out-of-scope inputs are set aside with a named reason and
the file they came from; nothing here stops the run but a missing source.
"""
from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow.languages import (
    RECIPE_LANGUAGES, NotebookError, language_from_path, normalize_language, notebook_to_script,
)
from megatron_snow.records import BadRecord, CodeRecord, iter_json_lines
from megatron_snow.stages.runner import Dropped  # noqa: F401 - re-exported (the old import path)


@dataclass
class SourceConfig(Config):
    """One input. kind: directory (top-level folders are repos), jsonl, stack (parquet/arrow), hub."""

    kind: Literal["directory", "jsonl", "stack", "hub"] = setting(help="what the path holds (see above)")
    path: str = setting(help="directory, file or glob; for hub: the dataset id")
    name: str = setting("", help="source tag written into records (default: kind)")
    hub_config: str | None = setting(None, help="hub: data_dir / config name (e.g. \"data/python\")")
    hub_split: str = setting("train", help="hub: the split")
    hub_cache_dir: str | None = setting(None, help="datasets cache (default: the HF cache)")
    files_per_shard: int = setting(1000, help="directory sources: files per output shard", range=">= 1")


@dataclass
class IngestConfig(Config):
    sources: list[SourceConfig] = setting(help="the inputs, each a source:", factory=list)
    languages: list[str] = setting(help="languages kept (others are set aside)", factory=lambda: list(RECIPE_LANGUAGES))
    max_read_bytes: int = setting(20_000_000, help="larger files are set aside unread", range=">= 1")
    binary_probe_bytes: int = setting(8192, help="a NUL byte in this prefix marks a file binary", range=">= 1")

    def validate(self) -> None:
        unknown = [lang for lang in self.languages if lang not in RECIPE_LANGUAGES]
        if unknown:
            raise ConfigError(f"{self.key('languages')}: unknown {unknown} (known: {list(RECIPE_LANGUAGES)})")


def printable(name: str) -> str:
    """A file name that may hold undecodable bytes (surrogate escapes), as text that can be written."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


UNREADABLE_DIR = "\x00unreadable-dir:"  # a listing entry for a directory that could not be listed


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


def _walk(root: Path) -> list[str]:
    """Every file under root (relative paths, sorted walk); a directory that cannot be listed is an
    entry of its own (UNREADABLE_DIR + path + error), so it is counted instead of skipped."""
    files: list[str] = []

    def onerror(e: OSError) -> None:
        rel = os.path.relpath(e.filename, root) if e.filename else "."
        files.append(f"{UNREADABLE_DIR}{rel}\x00{e.strerror or e}")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames.sort()
        for fn in sorted(filenames):
            files.append(os.path.relpath(os.path.join(dirpath, fn), root))
    return files


def list_units(sources: list[SourceConfig]) -> list[dict]:
    """Deterministic list of work units over all sources (one output shard each).

    A source that does not exist stops the run (FileNotFoundError: the configuration is wrong); a
    file that cannot be opened becomes a unit that counts it under a reason.
    """
    units: list[dict] = []
    for si, src in enumerate(sources):
        if src.kind == "directory":
            root = Path(src.path)
            if not root.is_dir():
                raise FileNotFoundError(f"ingest: directory source not found: {root}")
            files = _walk(root)
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

                    try:
                        n_groups = pq.ParquetFile(f).num_row_groups
                    except Exception as e:  # noqa: BLE001 - not parquet, truncated, unreadable
                        units.append({"source": si, "kind": "bad_file", "file": f, "error": str(e)[:200]})
                        continue
                    for rg in range(n_groups):
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
        self.languages = set(cfg.languages)

    def make(self, data: bytes | str, *, rec_id: str, repo: str, path: str, source: str,
             license: str | None = None, lang_hint: str | None = None, meta: dict | None = None
             ) -> CodeRecord | Dropped:
        rec = CodeRecord(id=rec_id, content="", language="", repo=repo, path=path, source=source,
                         license=license, meta=dict(meta or {}))
        if not isinstance(data, (bytes, str)):
            rec.language = "unknown"
            return Dropped(rec, "wrong_field_type", {"field": "content", "type": type(data).__name__})
        for name in ("id", "repo", "path", "license"):  # lone surrogates from JSON escapes cannot be written
            value = getattr(rec, name)
            if value and not _encodable(value):
                setattr(rec, name, printable(value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")))
                rec.language = "unknown"
                return Dropped(rec, "invalid_utf8", {"field": name})
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
        elif kind == "bad_file":
            yield _file_dropped(tag, unit["file"], "unreadable_file", unit["error"])

    def _read_directory(self, src: SourceConfig, files: list[str], tag: str) -> Iterator[CodeRecord | Dropped]:
        root = Path(src.path)
        for rel in files:
            if rel.startswith(UNREADABLE_DIR):
                where, error = rel[len(UNREADABLE_DIR):].split("\x00", 1)
                where = printable(where)
                parts = Path(where).parts
                rec = CodeRecord(id=f"{tag}/{where}/", content="", language="unknown",
                                 repo=parts[0] if parts else "", path=where, source=tag)
                yield Dropped(rec, "unreadable_directory", {"directory": str(root / where), "error": error})
                continue
            # a name with bytes that are not UTF-8 is kept, written with those bytes escaped (\\xNN)
            parts = Path(printable(rel)).parts
            repo, path = (parts[0], str(Path(*parts[1:]))) if len(parts) > 1 else ("", parts[0])
            rec_id = f"{tag}/{printable(rel)}"
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
        base = printable(os.path.basename(file))
        for item in iter_json_lines(file, name=printable(file)):
            if isinstance(item, BadRecord):  # damaged line or file: counted, the rest of the file goes on
                rec = item.record
                rec.id, rec.source = f"{tag}/{base}:{item.line}", tag
                yield Dropped(rec, item.reason, item.details())
                continue
            lineno, d = item
            rec_id = f"{tag}/{base}:{lineno}"
            content = d.get("content", d.get("text"))
            lang_hint = d.get("language", d.get("lang"))
            repo = d.get("repo") or d.get("repo_name") or d.get("max_stars_repo_name") or ""
            path = d.get("path") or d.get("max_stars_repo_path") or ""
            wrong = next((name for name, v, ok in (
                ("content", content, isinstance(content, str)),
                ("language", lang_hint, lang_hint is None or isinstance(lang_hint, str)),
                ("repo", repo, isinstance(repo, str)), ("path", path, isinstance(path, str)),
                ("id", d.get("id"), d.get("id") is None or isinstance(d.get("id"), (str, int)))) if not ok), None)
            if wrong:
                rec = CodeRecord(id=rec_id, content="", language="unknown", source=tag)
                value = {"content": content, "language": lang_hint, "repo": repo, "path": path}.get(wrong, d.get(wrong))
                yield Dropped(rec, "missing_content" if wrong == "content" and content is None else "wrong_field_type",
                              {"file": printable(file), "line": lineno, "field": wrong, "type": type(value).__name__})
                continue
            yield self.make(
                content, rec_id=str(d.get("id") or rec_id), source=tag, repo=repo, path=path,
                license=_license(d.get("license", d.get("max_stars_repo_licenses"))), lang_hint=lang_hint,
            )

    def _read_table(self, unit: dict, tag: str) -> Iterator[CodeRecord | Dropped]:
        import pyarrow as pa

        file = unit["file"]
        try:
            if unit["kind"] == "parquet":
                import pyarrow.parquet as pq

                table = pq.ParquetFile(file).read_row_group(unit["row_group"])
                where = f"{printable(os.path.basename(file))}#{unit['row_group']}"
            else:
                with pa.memory_map(file) as mm:
                    try:
                        table = pa.ipc.open_stream(mm).read_all()
                    except pa.ArrowInvalid:
                        table = pa.ipc.open_file(mm).read_all()
                where = printable(os.path.basename(file))
            rows = table.to_pylist()
        except Exception as e:  # noqa: BLE001 - damaged or unreadable file: one count, named
            yield _file_dropped(tag, file, "unreadable_file", f"{type(e).__name__}: {e}")
            return
        cols = set(table.column_names)
        if "content" not in cols:
            yield _file_dropped(tag, file, "missing_content_column", f"columns: {sorted(cols)}"[:200],
                                rows=len(rows))
            return
        for row_i, d in enumerate(rows):
            repo = d.get("max_stars_repo_name") or d.get("repo_name") or d.get("repo") or ""
            path = d.get("max_stars_repo_path") or d.get("path") or ""
            rec_id = f"{tag}/{where}:{row_i}"
            lang_hint = d.get("lang") or d.get("language")
            meta = {"hexsha": d["hexsha"]} if isinstance(d.get("hexsha"), str) and d["hexsha"] else {}
            content = d["content"]
            if content is None:
                yield Dropped(CodeRecord(id=rec_id, content="", language="unknown", source=tag,
                                         repo=repo if isinstance(repo, str) else "",
                                         path=path if isinstance(path, str) else ""), "missing_content")
                continue
            wrong = next((n for n, v in (("repo", repo), ("path", path)) if not isinstance(v, str)), None)
            if wrong is None and lang_hint is not None and not isinstance(lang_hint, str):
                wrong = "language"
            if wrong:
                yield Dropped(CodeRecord(id=rec_id, content="", language="unknown", source=tag), "wrong_field_type",
                              {"file": printable(file), "row": row_i, "field": wrong})
                continue
            yield self.make(content, rec_id=rec_id, repo=repo, path=path, source=tag,
                            license=_license(d.get("max_stars_repo_licenses", d.get("license"))),
                            lang_hint=lang_hint, meta=meta)


def _file_dropped(tag: str, file: str, reason: str, error: str, rows: int | None = None) -> Dropped:
    """A whole input file set aside: one count, named by the file (with its row count when known)."""
    name = printable(os.path.basename(file))
    rec = CodeRecord(id=f"{tag}/{name}", content="", language="unknown", source=tag, path=name)
    details = {"file": printable(file), "error": error}
    if rows is not None:
        details["rows"] = rows
    return Dropped(rec, reason, details)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _license(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value) or None
    return str(value) or None


def content_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
