"""Maintainer tool (not run by tests): how ``clean_code.jsonl.xz`` was made.

The decontamination false-positive test needs clean real code that is the same on every machine, so
the corpus is shipped, not read from whatever is installed. It was drawn once (seed 0) from:
  - CPython 3.11.7's standard library (PSF-2.0),
  - numpy 2.4.6, scipy 1.17.1, click 8.5.1, attrs 26.1.0, fsspec 2026.9.0 (BSD-3-Clause / MIT),
  - C/C++ headers of torch 2.13.0 (BSD-3-Clause) and pyarrow 26.0.1 (Apache-2.0).
Files of 300 B to 8 KB; every record names its package, path, version and licence.

    python tests/phase1/data/make_clean_code.py STDLIB_DIR SITE_PACKAGES_DIR
"""
from __future__ import annotations

import json
import lzma
import random
import sys
from pathlib import Path

PY_PACKAGES = {"numpy": ("2.4.6", "BSD-3-Clause"), "scipy": ("1.17.1", "BSD-3-Clause"),
               "click": ("8.5.1", "BSD-3-Clause"), "attr": ("26.1.0", "MIT"), "fsspec": ("2026.9.0", "BSD-3-Clause")}
HEADER_PACKAGES = {"torch": ("2.13.0", "BSD-3-Clause"), "pyarrow": ("26.0.1", "Apache-2.0")}
N_STDLIB, N_PACKAGES, N_HEADERS = 800, 400, 400


def _pick(root: Path, suffixes: tuple[str, ...], n: int, rng: random.Random) -> list[Path]:
    files = sorted(p for s in suffixes for p in root.rglob(f"*{s}")
                   if p.is_file() and 300 <= p.stat().st_size <= 8000
                   and "site-packages" not in p.parts[len(root.parts):])
    return rng.sample(files, min(n, len(files)))


def main(stdlib: Path, site: Path) -> None:
    rng = random.Random(0)
    rows = []
    for p in _pick(stdlib, (".py",), N_STDLIB, rng):
        rows.append(("cpython", "3.11.7", "PSF-2.0", p.relative_to(stdlib), "python", p))
    per = N_PACKAGES // len(PY_PACKAGES)
    for pkg, (ver, lic) in PY_PACKAGES.items():
        for p in _pick(site / pkg, (".py",), per, rng):
            rows.append((pkg, ver, lic, p.relative_to(site), "python", p))
    per = N_HEADERS // len(HEADER_PACKAGES)
    for pkg, (ver, lic) in HEADER_PACKAGES.items():
        for p in _pick(site / pkg, (".h", ".hpp"), per, rng):
            rows.append((pkg, ver, lic, p.relative_to(site), "c++" if p.suffix == ".hpp" else "c", p))
    out = Path(__file__).with_name("clean_code.jsonl.xz")
    with lzma.open(out, "wt", encoding="utf-8", preset=9) as f:
        for pkg, ver, lic, rel, lang, p in rows:
            f.write(json.dumps({"package": pkg, "version": ver, "license": lic, "path": str(rel), "language": lang,
                                "text": p.read_text(encoding="utf-8", errors="replace")}, ensure_ascii=False) + "\n")
    print(f"{len(rows)} files -> {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
