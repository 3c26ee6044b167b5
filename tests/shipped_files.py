"""Real source files the repository ships, so tests read the same bytes on every machine.

Three pinned archives, read in memory (nothing unpacked), in a fixed order:
- examples/tiny/corpus/cpython-3.11.7.tar.xz: CPython 3.11.7 ``repos/<package>/...`` (16 stdlib packages),
  ``repos/cpython-include/...`` (C headers) and ``positives/<module>.py`` (120 top-level stdlib modules);
- tests/phase1/data/clean_code.jsonl.xz: 1,396 files of CPython, numpy, scipy, fsspec, attrs, click (Python)
  and torch / pyarrow headers (C++, labelled "c" or "c++" in the archive);
- tests/data/js_shell/js-shell.tar.xz: JavaScript of ten packages bundled with npm 11.19.1 and the Bash scripts of
  pyenv and three plugins (ISC/MIT; versions, licences and SHA-256 in its README).
Never the machine's own standard library or system headers: those differ from one machine to the next.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import lzma
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPYTHON_ARCHIVE = REPO / "examples" / "tiny" / "corpus" / "cpython-3.11.7.tar.xz"
CLEAN_CODE_ARCHIVE = REPO / "tests" / "phase1" / "data" / "clean_code.jsonl.xz"
JS_SHELL_ARCHIVE = REPO / "tests" / "data" / "js_shell" / "js-shell.tar.xz"
JS_SHELL_SHA256 = "a6d5f6b65b1aabd0823599c51fb211acfbed6f30b10030d015b4ce01341e09a6"
_LANGUAGE = {".py": "python", ".h": "c"}


@functools.lru_cache(maxsize=None)
def cpython_files() -> tuple[tuple[str, str, str], ...]:
    """(path in the archive, language, text) of every file of the CPython archive, sorted by path."""
    out = []
    with tarfile.open(CPYTHON_ARCHIVE, mode="r:xz") as tar:
        for m in tar.getmembers():
            if m.isfile():
                text = tar.extractfile(m).read().decode("utf-8")
                out.append((m.name, _LANGUAGE.get(Path(m.name).suffix, "text"), text))
    return tuple(sorted(out))


@functools.lru_cache(maxsize=None)
def clean_code_records() -> tuple[dict, ...]:
    """The records of clean_code.jsonl.xz ({package, version, license, path, language, text}), in file order."""
    with lzma.open(CLEAN_CODE_ARCHIVE, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def clean_code_files(package: str | None = None) -> list[tuple[str, str, str]]:
    """(path, language, text) of clean_code.jsonl.xz, optionally of one package (e.g. "torch"), sorted by path.

    torch and pyarrow headers are C++ whatever their record says ("c" for ``.h``): they are reported as "c++".
    """
    out = []
    for r in clean_code_records():
        if package is None or r["package"] == package:
            lang = "c++" if r["package"] in ("torch", "pyarrow") else r["language"]
            out.append((r["path"], lang, r["text"]))
    return sorted(out)


def stdlib_modules() -> list[tuple[str, str, str]]:
    """The 120 top-level standard-library modules (``positives/*.py``) of the CPython archive."""
    return [f for f in cpython_files() if f[0].startswith("positives/")]


def stdlib_package(name: str) -> list[tuple[str, str, str]]:
    """The files of one shipped standard-library package (e.g. "json", "email") or "cpython-include"."""
    return [f for f in cpython_files() if f[0].startswith(f"repos/{name}/")]


def write_package(name: str, root: Path) -> Path:
    """Write one shipped package's files as ``root/<name>/...`` (a stand-in repository); returns ``root/name``."""
    for path, _, text in stdlib_package(name):
        dest = Path(root) / path.split("/", 1)[1]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    return Path(root) / name


@functools.lru_cache(maxsize=None)
def js_shell_files(language: str | None = None) -> tuple[tuple[str, str, str], ...]:
    """(path in the archive, "javascript" or "shell", text) of js-shell.tar.xz, licence files left out, sorted by
    path; optionally of one language. The SHA-256 is checked first, so a changed archive fails here, by name."""
    data = JS_SHELL_ARCHIVE.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != JS_SHELL_SHA256:
        raise RuntimeError(f"{JS_SHELL_ARCHIVE} has SHA-256 {digest}, expected {JS_SHELL_SHA256}")
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:xz") as tar:
        for m in tar.getmembers():
            if m.isfile() and not Path(m.name).name.startswith("LICENSE"):
                lang = m.name.split("/", 1)[0]
                if language in (None, lang):
                    out.append((m.name, lang, tar.extractfile(m).read().decode("utf-8")))
    return tuple(sorted(out))
