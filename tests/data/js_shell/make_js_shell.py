"""Re-make js-shell.tar.xz, the tests' JavaScript and shell files (maintainers only; tests read the archive).

Real files of permissively licensed projects, unchanged, each project's licence file beside its files:

- ``javascript/<package>/...``: ``.js`` files (1-40 kB, no tests, no nested ``node_modules``) of ten
  packages bundled with npm 11.19.1 (``<npm>/node_modules/<package>``), ISC or MIT licensed;
- ``shell/<project>/...``: the Bash scripts of pyenv and three of its plugins (MIT).

Package versions are checked against ``JS_PACKAGES`` / ``SHELL_PROJECTS`` so a different install fails instead
of making a different archive. The archive is byte-for-byte reproducible (sorted entries, fixed times, owners
and modes); its SHA-256 is pinned in tests/shipped_files.py. Usage::

    python tests/data/js_shell/make_js_shell.py --npm /usr/lib/node_modules/npm --pyenv /root/.pyenv
"""
from __future__ import annotations

import argparse
import io
import json
import lzma
import subprocess
import tarfile
from pathlib import Path

# package -> (version, licence, licence file); all bundled with npm 11.19.1
JS_PACKAGES = {
    "semver": ("7.8.5", "ISC", "LICENSE"),
    "debug": ("4.4.3", "MIT", "LICENSE"),
    "nopt": ("9.0.0", "ISC", "LICENSE"),
    "hosted-git-info": ("9.0.3", "ISC", "LICENSE"),
    "node-gyp": ("12.4.0", "MIT", "LICENSE"),
    "cacache": ("20.0.4", "ISC", "LICENSE.md"),
    "pacote": ("21.5.1", "ISC", "LICENSE"),
    "make-fetch-happen": ("15.0.6", "ISC", "LICENSE"),
    "@npmcli/config": ("10.12.0", "ISC", "LICENSE"),
    "@npmcli/package-json": ("7.0.5", "ISC", "LICENSE"),
}
# project -> (folder under the pyenv root, git commit, licence, globs of its Bash scripts)
SHELL_PROJECTS = {
    "pyenv": (".", "f6a5b409e9fd1ad78aa4350ddc1fc5fc3d0fa666", "MIT",
              ["libexec/pyenv*", "completions/pyenv.bash", "pyenv.d/*/*.bash", "plugins/python-build/bin/*",
               "plugins/python-build/install.sh"]),
    "pyenv-virtualenv": ("plugins/pyenv-virtualenv", "eda64556af9b2992386deeb75dad2130899fc4c9", "MIT", ["bin/*"]),
    "pyenv-doctor": ("plugins/pyenv-doctor", "bad83e51e1409665de6cb37537cfc1e02e154bec", "MIT", ["bin/*"]),
    "pyenv-update": ("plugins/pyenv-update", "4c536d76f9fe1a2a7f528b2aa1f609d7e64b2a28", "MIT", ["bin/*"]),
}
JS_SIZE = (1000, 40000)
SKIP_DIRS = {"test", "tests", "node_modules"}


def js_files(npm: Path) -> list[tuple[str, Path]]:
    """(name in the archive, source file) of the JavaScript packages, after checking their versions."""
    files = []
    for pkg, (version, _, licence) in JS_PACKAGES.items():
        root = npm / "node_modules" / pkg
        found = json.loads((root / "package.json").read_text())["version"]
        if found != version:
            raise SystemExit(f"{pkg} is {found} here, the archive pins {version}")
        files.append((f"javascript/{pkg}/{licence}", root / licence))
        for p in sorted(root.rglob("*.js")):
            rel = p.relative_to(root)
            if p.is_file() and not SKIP_DIRS & set(rel.parts[:-1]) and JS_SIZE[0] <= p.stat().st_size <= JS_SIZE[1]:
                files.append((f"javascript/{pkg}/{rel.as_posix()}", p))
    return files


def shell_files(pyenv: Path) -> list[tuple[str, Path]]:
    """(name in the archive, source file) of the Bash scripts, after checking each checkout's commit."""
    files = []
    for project, (sub, commit, _, globs) in SHELL_PROJECTS.items():
        root = (pyenv / sub).resolve()
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        if head != commit:
            raise SystemExit(f"{project} is at {head} here, the archive pins {commit}")
        files.append((f"shell/{project}/LICENSE", root / "LICENSE"))
        for g in globs:
            for p in sorted(root.glob(g)):
                if p.is_file() and not p.is_symlink() and (p.suffix == ".bash"
                                                           or p.read_bytes().startswith(b"#!/usr/bin/env bash")):
                    files.append((f"shell/{project}/{p.relative_to(root).as_posix()}", p))
    return files


def make_archive(npm: Path, pyenv: Path, out: Path) -> int:
    files = sorted(set(js_files(npm) + shell_files(pyenv)))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in files:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    out.write_bytes(lzma.compress(raw.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return len(files)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--npm", type=Path, required=True, help="npm 11.19.1's folder (e.g. /usr/lib/node_modules/npm)")
    ap.add_argument("--pyenv", type=Path, required=True, help="a pyenv checkout at the pinned commit, with the plugins")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("js-shell.tar.xz"))
    args = ap.parse_args()
    n = make_archive(args.npm, args.pyenv, args.out)
    print(f"{args.out}: {n} files, {args.out.stat().st_size} bytes")
