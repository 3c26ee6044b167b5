"""Proof that every rank of a multi-rank run did work (not only that N processes started)."""
from __future__ import annotations

import collections
import json
from pathlib import Path


def assert_every_rank_did_units(out: Path, world_size: int, stages: int = 1) -> None:
    """Each step directory under ``out`` (or ``out`` itself) ran as one job of ``world_size`` ranks
    (its ranks.json), and every rank finished units of it: no rank sat idle, none ran alone."""
    dirs = [out] if (out / "ranks.json").is_file() else sorted(p.parent for p in out.glob("*/ranks.json"))
    assert len(dirs) == stages, dirs
    for d in dirs:
        info = json.loads((d / "ranks.json").read_text())
        assert info["world_size"] == world_size, (d.name, info)
        assert [r["rank"] for r in info["ranks"]] == list(range(world_size)), (d.name, info)
        assert all(r["world_size"] == world_size for r in info["ranks"]), (d.name, info)
        assert len({r["pid"] for r in info["ranks"]}) == world_size, (d.name, info)
        assert all(r["units"] for r in info["ranks"]), (d.name, info)


def assert_every_rank_saved(ckpt: Path, world_size: int) -> None:
    """The processes trained as one data-parallel job: the checkpoint was saved at DP=world_size, and each
    rank wrote its own share of it (torch_dist names a file by its writer's global rank: __RANK_N.distcp)."""
    meta = json.loads((ckpt / "snow_meta.json").read_text())
    assert meta["topology"]["dp"] == world_size, meta["topology"]
    written: collections.Counter = collections.Counter()
    for name, f in meta["files"].items():
        if name.endswith(".distcp") and f["bytes"] > 0:
            written[int(name.split("_")[2])] += f["bytes"]
    assert sorted(written) == list(range(world_size)), meta["files"]
