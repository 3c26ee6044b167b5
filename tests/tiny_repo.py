"""A small deterministic source tree for data-step tests (generated here: no file of the machine is read)."""
from __future__ import annotations

from pathlib import Path

REPOSITORIES = 5  # top-level folders: pkg0, pkg1, pkg2, web, copy (each keeps files through phase 1)


def write_repo(root: Path) -> Path:
    """A small deterministic source tree: distinct Python and JavaScript files, one exact copy, one
    near copy (so every phase-1 stage has work and drops something)."""
    for i in range(14):
        body = "\n".join(f"    total += values[{j}] * {i + j} - {j * j}  # term {j}" for j in range(6 + i % 5))
        text = (f'"""Module {i}: sums weighted values."""\n\n\ndef weighted_{i}(values):\n    total = {i}\n'
                f"{body}\n    return total\n\n\nclass Holder{i}:\n    def __init__(self):\n"
                f"        self.items = list(range({i + 3}))\n")
        (root / f"pkg{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"pkg{i % 3}" / f"mod_{i}.py").write_text(text)
    for i in range(4):
        (root / "web").mkdir(exist_ok=True)
        (root / "web" / f"app{i}.js").write_text(
            "".join(f"function step{i}_{j}(x) {{\n  return x * {j + i} + {j};\n}}\n" for j in range(5 + i)))
    (root / "copy").mkdir(exist_ok=True)
    (root / "copy" / "mod_3.py").write_text((root / "pkg0" / "mod_3.py").read_text())
    near = (root / "pkg1" / "mod_4.py").read_text().replace("term 2", "term two")
    (root / "copy" / "mod_4_fork.py").write_text(near)
    return root
