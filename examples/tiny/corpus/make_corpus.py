"""Re-make cpython-3.11.7.tar.xz, the tiny example's input (maintainers only; the example just unpacks it).

The archive holds files of CPython 3.11.7 (PSF License Version 2, LICENSE in this folder), taken from its
``Lib/`` and ``Include/`` folders (a source tree, or an installation, which copies them verbatim):

- ``repos/<package>/``: 16 standard-library packages (tests and caches left out), one "repository" each;
- ``repos/cpython-include/``: the C headers of ``Include/`` and ``Include/cpython/`` (not the generated
  ``pyconfig.h``), a C "repository";
- ``positives/``: 120 top-level standard-library modules of 2-60 kB (not the generated ``_sysconfigdata*``),
  the annotator's stand-in high-quality files (they are not in the repositories).

The archive is byte-for-byte reproducible (sorted entries, fixed times, owners and modes): its SHA-256 is
pinned in ../make_repos.py. Usage::

    python examples/tiny/corpus/make_corpus.py --lib Python-3.11.7/Lib --include Python-3.11.7/Include
"""
from __future__ import annotations

import argparse
import io
import lzma
import tarfile
from pathlib import Path

PACKAGES = ["json", "email", "logging", "http", "urllib", "xml", "concurrent", "importlib",
            "unittest", "sqlite3", "wsgiref", "xmlrpc", "html", "dbm", "curses", "ctypes"]
SKIP_DIRS = {"__pycache__", "test", "tests"}
POSITIVES = 120


def corpus_files(lib: Path, include: Path) -> list[tuple[str, Path]]:
    """(name in the archive, source file), sorted by name."""
    files = []
    for pkg in PACKAGES:
        for p in sorted((lib / pkg).rglob("*")):
            rel = p.relative_to(lib)
            if p.is_file() and not SKIP_DIRS & set(rel.parts[:-1]) and p.suffix != ".pyc":
                files.append((f"repos/{rel.as_posix()}", p))
    for sub in ("", "cpython"):
        for p in sorted((include / sub).glob("*.h")):
            if p.name != "pyconfig.h":
                files.append((f"repos/cpython-include/{sub + '/' if sub else ''}{p.name}", p))
    modules = [p for p in sorted(lib.glob("*.py"))
               if 2000 <= p.stat().st_size <= 60000 and not p.name.startswith("_sysconfigdata")][:POSITIVES]
    files += [(f"positives/{p.name}", p) for p in modules]
    return sorted(files)


def make_archive(lib: Path, include: Path, out: Path) -> int:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in corpus_files(lib, include):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(lzma.compress(raw.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return len(corpus_files(lib, include))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", type=Path, required=True, help="CPython 3.11.7's Lib/ folder")
    ap.add_argument("--include", type=Path, required=True, help="CPython 3.11.7's Include/ folder")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("cpython-3.11.7.tar.xz"))
    args = ap.parse_args()
    n = make_archive(args.lib, args.include, args.out)
    print(f"{args.out}: {n} files, {args.out.stat().st_size} bytes")
