"""Annotator scores stored beside the corpus: one score shard per corpus shard, keyed by document id.

``CORPUS/scores/part-NNNNN.jsonl.gz`` (by default) holds, for each document of
``CORPUS/part-NNNNN.jsonl.gz`` in the same order, ``{"id", "language",
"bytes", "score", "window_scores", "dropped"}``; a ``manifest.json`` is
written once every shard is scored. Reading scores needs neither torch nor
transformers (selection runs without them).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

from megatron_snow import records
from megatron_snow.funnel import Funnel

SCORES_SUBDIR = "scores"
FUNNEL_FILE = "funnel.json"


def default_scores_dir(corpus: str | Path) -> Path:
    return Path(corpus) / SCORES_SUBDIR


def read_score_shard(path: str | Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_scores(scores_dir: str | Path) -> Iterator[dict]:
    """Every score record of a scores directory, shard by shard."""
    for s in records.list_shards(scores_dir):
        yield from read_score_shard(s)


def scores_funnel(scores_dir: str | Path) -> Funnel:
    funnel = Funnel("annotate")
    for row in read_scores(scores_dir):
        n = row.get("count", 1)  # a damaged shard's lost tail stands for several documents
        funnel.seen(row["language"], row["bytes"], n)
        if row["dropped"]:
            funnel.dropped(row["language"], row["bytes"], row["dropped"], n)
        else:
            funnel.kept(row["language"], row["bytes"])
    return funnel
