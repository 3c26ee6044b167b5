"""Where built indexes are kept: in this process (``_INDEX_CACHE``) and on disk (``KEY.npz`` + ``KEY.json``),
keyed by ``index_key``: the benchmark files' content, the settings and the index format."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from megatron_snow.atomic import atomic_write_bytes, atomic_write_text
from megatron_snow.benchmarks import benchmark_path
from megatron_snow.phase1.decontam.benchmarks import BENCHMARK_FIELDS
from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.index import Index

_log = logging.getLogger(__name__)
_INDEX_CACHE: dict[str, Index] = {}  # index_key -> index, the last few built or loaded in this process
_MEMORY_KEEP = 4
INDEX_VERSION = 3  # bump when the index's content or on-disk layout changes
_SOURCE_SHA = None


def _source_sha() -> str:
    """This package's source: a rule changed without a version bump still invalidates cached indexes."""
    global _SOURCE_SHA
    if _SOURCE_SHA is None:
        h = hashlib.sha256()
        for path in sorted(Path(__file__).parent.glob("*.py")):
            h.update(path.name.encode() + b"\0" + path.read_bytes())
        _SOURCE_SHA = h.hexdigest()
    return _SOURCE_SHA


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def index_key(cfg: DecontamConfig) -> str | None:
    """sha256 of what the index is built from: the content of every benchmark file read, the settings
    (not the folder or the cache location) and the index format (version + this module's source).
    None when some benchmark would come from the Hub (``online``): such an index is not cached."""
    stems = cfg.benchmarks or list(BENCHMARK_FIELDS)
    files = []
    for stem in stems:
        p = benchmark_path(cfg.benchmarks_dir, stem) if stem in BENCHMARK_FIELDS else None
        if p is None:
            if cfg.online:
                return None
            continue
        files.append((stem, p.name, _file_sha256(p)))
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("benchmarks_dir", "cache_dir")}
    blob = json.dumps({"version": INDEX_VERSION, "source": _source_sha(), "settings": settings, "files": files},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_dir(cfg: DecontamConfig) -> Path | None:
    """Where built indexes are kept: ``cache_dir``; None: $XDG_CACHE_HOME (or ~/.cache)/megatron_snow/decontam;
    "": no on-disk cache."""
    if cfg.cache_dir == "":
        return None
    if cfg.cache_dir is not None:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "megatron_snow" / "decontam"


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz with fixed timestamps: equal arrays give equal bytes, so ranks writing the same index at
    once write the same file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            one = io.BytesIO()
            np.lib.format.write_array(one, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), one.getvalue())
    return buf.getvalue()


def _meta_text(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def _write_cache(directory: Path, key: str, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """``KEY.npz`` (arrays) then ``KEY.json`` (strings and counts, the npz's sha256, its own sha256):
    the json is written last, so a complete json names a complete npz. Both written atomically."""
    data = _npz_bytes(arrays)
    text = _meta_text(meta)
    head = {"version": INDEX_VERSION, "key": key, "npz_sha256": hashlib.sha256(data).hexdigest(),
            "meta_sha256": hashlib.sha256(text.encode()).hexdigest()}
    atomic_write_bytes(directory / f"{key}.npz", data)
    atomic_write_text(directory / f"{key}.json", json.dumps(head, sort_keys=True) + "\n" + text + "\n")
    _prune(directory, keep=CACHE_KEEP)


CACHE_KEEP = 8  # entries (~25 MB each for every shipped benchmark) kept; least recently used go first


def _prune(directory: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used entries (a load touches its json)."""
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns if p.exists() else 0, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)  # json first: a half-removed entry is never taken for whole
        old.with_suffix(".npz").unlink(missing_ok=True)


def _read_cache(directory: Path, key: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(meta, arrays) of a complete, intact cached index; None when missing. A damaged one (checksum,
    key or parse mismatch) is reported and ignored: the caller rebuilds it. Never unpickles."""
    jpath, npath = directory / f"{key}.json", directory / f"{key}.npz"
    if not jpath.is_file():
        return None
    try:
        head_line, text = jpath.read_text(encoding="utf-8").split("\n", 1)
        head = json.loads(head_line)
        text = text.rstrip("\n")
        if head.get("version") != INDEX_VERSION or head.get("key") != key:
            raise ValueError("key or version mismatch")
        if hashlib.sha256(text.encode()).hexdigest() != head["meta_sha256"]:
            raise ValueError("metadata checksum mismatch")
        data = npath.read_bytes()
        if hashlib.sha256(data).hexdigest() != head["npz_sha256"]:
            raise ValueError("array checksum mismatch")
        meta = json.loads(text)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        try:
            os.utime(jpath)  # recently used: kept by _prune
        except OSError:
            pass
        return meta, arrays
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        _log.warning("decontaminate: cached index %s is damaged (%s); rebuilding it", jpath, e)
        return None



def load_index(cfg: DecontamConfig, build: Callable[[], Index]) -> tuple[Index, str]:
    """(index, where it came from: built | memory | disk). ``build`` makes it when no cached copy holds;
    an index whose key is None (some benchmark from the Hub) is built and not kept."""
    key = index_key(cfg)
    if key is None:
        return build(), "built"
    if key in _INDEX_CACHE:  # the same benchmark content, the same settings, in this process
        return _INDEX_CACHE[key], "memory"
    directory = cache_dir(cfg)
    cached = _read_cache(directory, key) if directory is not None else None
    if cached is not None:
        index, source = Index.from_arrays(*cached), "disk"
    else:
        index, source = build(), "built"
        if directory is not None:
            try:
                _write_cache(directory, key, *index.to_arrays())
            except OSError as e:  # a read-only home is no reason to fail
                _log.warning("decontaminate: cannot cache the index in %s (%s)", directory, e)
    if len(_INDEX_CACHE) >= _MEMORY_KEEP:
        _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
    _INDEX_CACHE[key] = index
    return index, source
