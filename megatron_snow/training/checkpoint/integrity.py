"""Is a checkpoint whole: the SHA-256 of every file, recorded on save and verified on resume, and the
``checkpoint.on_damaged`` policy (fall back to the newest intact checkpoint, or stop) built on it.

Hashing is split over the ranks (each hashes the files it wrote, or a round-robin share), so
neither a save nor a resume reads the whole checkpoint on one rank.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch

from megatron_snow.config import ConfigError
from megatron_snow.training.checkpoint.layout import LATEST, META, complete_iterations, iter_dir, read_meta

_OWNED_FILE = re.compile(r"__(\d+)_\d+\.distcp$")  # torch_dist: __{global rank}_{n}.distcp


def _world() -> tuple[int, int]:
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather(obj) -> list:
    rank, world = _world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _owner(index: int, name: str, world: int) -> int:
    """The rank that hashes (on save) or verifies (on load) a file: its writer when the
    name says (torch_dist's per-rank files), else spread round-robin."""
    m = _OWNED_FILE.search(name)
    if m and int(m.group(1)) < world:
        return int(m.group(1))
    return index % world


def checksums(target: Path) -> dict:
    """{file: {"bytes", "sha256"}} of every file in target (except META), each rank hashing its share.
    Collective when a process group exists; every rank gets the whole table."""
    rank, world = _world()
    names = sorted(p.name for p in target.iterdir() if p.is_file() and p.name != META) if rank == 0 else None
    if world > 1:  # one directory listing (rank 0's), not one per rank on the parallel file system
        box = [names]
        torch.distributed.broadcast_object_list(box, src=0)
        names = box[0]
    mine = {n: {"bytes": (target / n).stat().st_size, "sha256": _sha256(target / n)}
            for i, n in enumerate(names) if _owner(i, n, world) == rank}
    merged: dict = {}
    for part in _gather(mine):
        merged.update(part)
    return dict(sorted(merged.items()))


def verify_checkpoint(ckpt_dir: str | Path) -> str | None:
    """What is wrong with a checkpoint's files (missing, truncated, altered), or None.

    Collective when a process group exists: every rank checks a share of the files
    and all ranks return the same answer. Checkpoints written before checksums
    were recorded are not checked (None)."""
    ckpt_dir = Path(ckpt_dir)
    try:
        files = read_meta(ckpt_dir).get("files")
    except (OSError, ValueError) as e:
        files, local = None, f"{META} unreadable ({type(e).__name__})"
    else:
        local = None
    rank, world = _world()
    if files is not None:
        for i, (name, want) in enumerate(files.items()):
            if local or _owner(i, name, world) != rank:
                continue
            path = ckpt_dir / name
            if not path.is_file():
                local = f"{name} is missing"
            elif path.stat().st_size != want["bytes"]:
                local = f"{name} has {path.stat().st_size} bytes, {want['bytes']} were written"
            elif _sha256(path) != want["sha256"]:
                local = f"{name} does not match its SHA-256"
    problems = [p for p in _gather(local) if p]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


def resume_candidate(root, on_damaged: str = "fallback", say=print) -> Path | None:
    """The checkpoint a restart should try first (no file is read but markers and META).

    ``latest`` names it; when the marker is corrupt or names a checkpoint whose save did not
    finish, that is said in one line and the newest complete one is used (or, with
    on_damaged=stop, the run stops)."""
    if not root or not Path(root).is_dir():
        return None
    marker = Path(root) / LATEST
    done = complete_iterations(root)
    if not marker.is_file():
        # no marker: a new run (or one killed before its first save finished)
        return iter_dir(root, done[0]) if done else None
    text = marker.read_text().strip()
    try:
        it = int(text)
    except ValueError:
        problem = f"checkpoint marker {marker} is corrupt: {text[:40]!r}"
    else:
        if it in done:
            return iter_dir(root, it)
        problem = f"checkpoint {iter_dir(root, it)} named by {marker} is incomplete (no {META})"
    older = [d for d in done if not text.isdigit() or d < int(text)]
    if on_damaged == "stop" or not older:
        raise ConfigError(problem + ("; no older complete checkpoint to fall back to" if not older else
                                     "; checkpoint.on_damaged=fallback would resume from "
                                     f"{iter_dir(root, older[0])}"))
    say(f"warning: {problem}; falling back to {iter_dir(root, older[0])}")
    return iter_dir(root, older[0])


def pick_intact(first: Path | None, on_damaged: str = "fallback", say=print) -> Path | None:
    """Verify ``first`` against its checksums (collective); if damaged, say so in one line and
    try the next older complete checkpoint, or stop (on_damaged=stop). None if first is None."""
    if first is None:
        return None
    root = Path(first).parent
    older = [iter_dir(root, it) for it in complete_iterations(root) if it < int(read_meta(first)["iteration"])]
    chain = [Path(first)] + older
    for i, ckpt_dir in enumerate(chain):
        problem = verify_checkpoint(ckpt_dir)
        if problem is None:
            return ckpt_dir
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if on_damaged == "stop":
            raise ConfigError(f"checkpoint {ckpt_dir} is damaged: {problem}" + (
                f"; checkpoint.on_damaged=fallback would resume from {nxt}" if nxt else ""))
        if nxt is None:
            raise ConfigError(f"checkpoint {ckpt_dir} is damaged: {problem}; no older intact checkpoint "
                              f"in {root} (move the directory away to start afresh)")
        say(f"warning: checkpoint {ckpt_dir} is damaged: {problem}; falling back to {nxt}")
    return None
