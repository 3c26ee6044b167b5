"""Stand-in "GitHub repositories" for the tiny example, made from code already on the machine.

Each top-level folder of OUT is one repository (the layout phase-1 ingest reads):
a few Python standard-library packages, and C headers from /usr/include when the
machine has them. The choice is fixed, so every run sees the same input.
"""
from __future__ import annotations

import argparse
import shutil
import sysconfig
from pathlib import Path

STDLIB_PACKAGES = ["json", "email", "logging", "http", "urllib", "xml", "concurrent", "importlib",
                   "unittest", "sqlite3", "wsgiref", "xmlrpc", "html", "dbm", "curses", "ctypes"]
MAX_HEADERS = 120


def make_repos(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    n = 0
    for pkg in STDLIB_PACKAGES:
        src = stdlib / pkg
        if src.is_dir() and not (out / pkg).exists():
            shutil.copytree(src, out / pkg, ignore=shutil.ignore_patterns("__pycache__", "test", "tests"))
        n += (out / pkg).is_dir()
    include = Path("/usr/include")
    if include.is_dir():
        dest = out / "usr-include"
        headers = sorted(p for p in include.glob("*.h") if p.is_file() and not p.is_symlink())[:MAX_HEADERS]
        for h in headers:
            dest.mkdir(exist_ok=True)
            if not (dest / h.name).exists():
                shutil.copyfile(h, dest / h.name)
        n += dest.is_dir()
    return n


def make_positives(out: Path, limit: int = 120) -> int:
    """Stand-in for the recipe's high-quality positives (hqcode + instructions, a download):
    the standard library's top-level modules, which are not in the stand-in repositories."""
    out.mkdir(parents=True, exist_ok=True)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    modules = [p for p in sorted(stdlib.glob("*.py")) if 2000 <= p.stat().st_size <= 60000][:limit]
    for p in modules:
        if not (out / p.name).exists():
            shutil.copyfile(p, out / p.name)
    return len(modules)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, type=Path, help="directory of repositories to create")
    ap.add_argument("--positives", type=Path, help="also write annotator positives here")
    args = ap.parse_args()
    print(f"{make_repos(args.out)} repositories under {args.out}")
    if args.positives:
        print(f"{make_positives(args.positives)} positive files under {args.positives}")
