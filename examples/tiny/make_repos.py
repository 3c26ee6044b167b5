"""Stand-in "GitHub repositories" for the tiny example: pinned files of CPython 3.11.7, shipped in the repository.

corpus/cpython-3.11.7.tar.xz (PSF License Version 2, corpus/LICENSE; how it was made: corpus/make_corpus.py)
holds 16 standard-library packages and CPython's C headers, each top-level folder of OUT one repository (the
layout phase-1 ingest reads), and 120 top-level standard-library modules as the annotator's positives. The
archive's SHA-256 is checked before it is unpacked, so every machine runs the example on the same bytes,
whatever Python or system headers it has.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import lzma
import sys
import tarfile
from pathlib import Path

CORPUS = Path(__file__).with_name("corpus") / "cpython-3.11.7.tar.xz"
SHA256 = "45f62bfd40452883c82f5bc18379b29963472649bf306be4c2fa57b1b9b92313"


def corpus_members() -> tuple[tarfile.TarFile, list[tarfile.TarInfo]]:
    data = CORPUS.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        sys.exit(f"make_repos: {CORPUS} has SHA-256 {digest}, expected {SHA256} (a damaged or changed corpus)")
    tar = tarfile.open(fileobj=io.BytesIO(lzma.decompress(data)), mode="r")
    return tar, tar.getmembers()


def unpack(prefix: str, out: Path) -> int:
    """Write the archive's files under ``prefix/`` into ``out`` (existing files are left as they are)."""
    tar, members = corpus_members()
    n = 0
    for m in members:
        if m.isfile() and m.name.startswith(prefix + "/"):
            dest = out / m.name[len(prefix) + 1:]
            n += 1
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(tar.extractfile(m).read())
    return n


def make_repos(out: Path) -> int:
    unpack("repos", out)
    return sum(1 for p in out.iterdir() if p.is_dir())


def make_positives(out: Path) -> int:
    """Stand-in for the recipe's high-quality positives (hqcode + instructions, a download)."""
    return unpack("positives", out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path, help="directory of repositories to create")
    ap.add_argument("--positives", type=Path, help="also write annotator positives here")
    args = ap.parse_args()
    print(f"{make_repos(args.out)} repositories under {args.out}")
    if args.positives:
        print(f"{make_positives(args.positives)} positive files under {args.positives}")
