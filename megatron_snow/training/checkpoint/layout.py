"""Where a checkpoint lives and how its directory and markers are named (no torch, no megatron).

A save root holds ``iter_NNNNNNN/`` directories, one checkpoint each (megatron-core's
dist_checkpointing files plus ``snow_meta.json``, written last), and ``latest``, the
iteration of the newest complete one. A directory without ``snow_meta.json`` is a save
that never finished.
"""
from __future__ import annotations

import json
from pathlib import Path

from megatron_snow.atomic import atomic_write_text
from megatron_snow.config import ConfigError

LATEST = "latest"
META = "snow_meta.json"


def iter_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def latest_iteration(root: str | Path | None) -> int | None:
    """The iteration of the newest complete checkpoint in ``root``, or None."""
    if not root:
        return None
    marker = Path(root) / LATEST
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    try:
        it = int(text)
    except ValueError:
        raise ConfigError(f"checkpoint marker {marker} is corrupt: {text!r}") from None
    if not (iter_dir(root, it) / META).is_file():
        raise ConfigError(f"checkpoint marker {marker} names iteration {it} but {iter_dir(root, it)} is incomplete")
    return it


def complete_iterations(root) -> list[int]:
    """Iterations of the checkpoints in root whose save finished (META written), newest first."""
    out = []
    for p in Path(root).glob("iter_*"):
        try:
            it = int(p.name.split("_")[1])
        except ValueError:
            continue
        if (p / META).is_file():
            out.append(it)
    return sorted(out, reverse=True)


def resolve(path: str | Path) -> Path | None:
    """A checkpoint directory, or a save root (its latest complete one) -> the checkpoint directory;
    None when ``path`` is neither (callers word the error for their own flag)."""
    p = Path(path)
    if (p / META).is_file():
        return p
    it = latest_iteration(p) if p.is_dir() else None
    return None if it is None else iter_dir(p, it)


def read_meta(ckpt_dir: str | Path) -> dict:
    return json.loads((Path(ckpt_dir) / META).read_text())


def write_meta(ckpt_dir: str | Path, meta: dict) -> None:
    """Written last and atomically: its presence is what makes a checkpoint complete."""
    atomic_write_text(Path(ckpt_dir) / META, json.dumps(meta, indent=1))


def mark_latest(root: str | Path, iteration: int) -> None:
    atomic_write_text(Path(root) / LATEST, f"{iteration}\n")
