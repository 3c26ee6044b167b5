"""Atomic file writes: one helper and one temp-file convention for every data step.

A file is written to ``DIR/.NAME.tmp-PID`` (same directory, so the rename is
atomic on POSIX), flushed and fsync'ed, then renamed over ``DIR/NAME``. A file
that exists is therefore whole. A process killed mid-write leaves only a
``.*.tmp-*`` file behind, which ``remove_temp_files`` clears (the stage runner
does so before and after every step).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from megatron_snow import faults

TEMP_GLOB = ".*.tmp-*"


def temp_path(path: str | Path) -> Path:
    """The temp name a write of ``path`` goes through (one per process)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}")


def is_temp(path: str | Path) -> bool:
    name = Path(path).name
    return name.startswith(".") and ".tmp-" in name


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(p)
    try:
        with open(tmp, "wb") as f:
            faults.write_in_halves(f, data, f"write.half:{p.name}")  # kill tests: a torn temp file
            f.flush()
            os.fsync(f.fileno())
        faults.point(f"write.before_rename:{p.name}")
        os.replace(tmp, p)
        faults.point(f"write.done:{p.name}")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> None:
    """Sorted keys and a final newline, so equal objects give equal bytes."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def atomic_save_npy(path: str | Path, array) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())


def remove_temp_files(directory: str | Path, recursive: bool = True) -> int:
    """Delete temp files left by killed writes under ``directory``; returns how many."""
    d = Path(directory)
    if not d.is_dir():
        return 0
    found = d.rglob(TEMP_GLOB) if recursive else d.glob(TEMP_GLOB)
    n = 0
    for p in list(found):
        if p.is_file():
            p.unlink(missing_ok=True)
            n += 1
    return n
