"""Duplicate clusters across MPI ranks: bucket entries exchanged with alltoall, then union-find.

Every document has a global key ``shard << 32 | row`` (its place in the input
dataset) and one or more 64-bit bucket hashes (one content hash for exact
dedup, one per LSH band for near dedup). Each rank sends every entry to the
rank that owns its bucket (hash modulo ranks); owners link documents sharing a
bucket; only those edges, never documents, are shared with all ranks; every
rank then runs the same union-find and keeps the smallest key of each cluster
(the first file in dataset order). The result does not depend on rank count.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from megatron_snow.dist import Comm

ROW_BITS = 32


def global_keys(shard: int, n: int) -> np.ndarray:
    return (np.uint64(shard) << np.uint64(ROW_BITS)) | np.arange(n, dtype=np.uint64)


def split_key(key: int) -> tuple[int, int]:
    return int(key) >> ROW_BITS, int(key) & ((1 << ROW_BITS) - 1)


def bucket_edges(entries: np.ndarray) -> np.ndarray:
    """entries (n, 2) = (bucket hash, key) -> edges (m, 2), smaller key first.

    Each member of a bucket is linked to the bucket's smallest key (a star) and
    to the next smaller member (a chain): O(members) edges, and when edges are
    verified a member similar to any neighbour still finds its cluster.
    """
    if len(entries) == 0:
        return np.empty((0, 2), dtype=np.uint64)
    order = np.lexsort((entries[:, 1], entries[:, 0]))
    h, k = entries[order, 0], entries[order, 1]
    start = np.ones(len(h), dtype=bool)
    start[1:] = h[1:] != h[:-1]
    first = np.maximum.accumulate(np.where(start, np.arange(len(h)), 0))
    other = ~start
    prev = np.flatnonzero(other) - 1
    edges = np.concatenate([np.stack([k[first[other]], k[other]], axis=1), np.stack([k[prev], k[other]], axis=1)])
    edges = edges[edges[:, 0] != edges[:, 1]]
    return np.unique(edges, axis=0) if len(edges) else edges.reshape(0, 2)


def exchange_edges(comm: Comm, hashes: list[np.ndarray], keys: list[np.ndarray],
                   verify: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """All edges of the corpus on every rank, from this rank's (hashes (n, m), keys (n,)) per shard."""
    size = comm.size
    send: list[list[np.ndarray]] = [[] for _ in range(size)]
    for h, k in zip(hashes, keys):
        if len(k) == 0:
            continue
        hh = h.reshape(len(k), -1)
        flat_h = hh.ravel()
        flat_k = np.repeat(k, hh.shape[1])
        dest = (flat_h % np.uint64(size)).astype(np.int64)
        for r in range(size):
            sel = dest == r
            if sel.any():
                send[r].append(np.stack([flat_h[sel], flat_k[sel]], axis=1))
    out = [np.concatenate(s) if s else np.empty((0, 2), dtype=np.uint64) for s in send]
    received = comm.alltoall(out)
    mine = np.concatenate(received) if received else np.empty((0, 2), dtype=np.uint64)
    edges = bucket_edges(mine.astype(np.uint64))
    all_edges = comm.allgather(edges)
    cat = np.concatenate(all_edges) if all_edges else edges
    cat = np.unique(cat, axis=0) if len(cat) else cat.reshape(0, 2).astype(np.uint64)
    if verify is not None and len(cat):
        # each rank checks a strided share of the (identical) edge list; the verdicts are shared
        mine = np.arange(comm.rank, len(cat), comm.size)
        verdicts = comm.allgather((mine, verify(cat[mine])))
        keep = np.zeros(len(cat), dtype=bool)
        for idx, ok in verdicts:
            keep[idx] = ok
        cat = cat[keep]
    return cat


def union_find_roots(edges: np.ndarray) -> dict[int, int]:
    """node -> root (smallest key of its cluster), for every node on an edge."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for a, b in edges.tolist():
        ra, rb = find(a), find(b)
        if ra != rb:
            lo, hi = (ra, rb) if ra < rb else (rb, ra)
            parent[hi] = lo
            parent.setdefault(lo, lo)
    return {x: find(x) for x in list(parent)}


def duplicates(comm: Comm, hashes: list[np.ndarray], keys: list[np.ndarray],
               verify: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[int, int]:
    """key of every document to drop -> key of the document kept for its cluster.

    ``verify(edges) -> bool mask`` can reject candidate pairs (e.g. LSH false positives).
    """
    roots = union_find_roots(exchange_edges(comm, hashes, keys, verify))
    return {k: r for k, r in roots.items() if k != r}


def near_duplicates(texts: list[str], cfg, comm: Comm | None = None) -> dict[int, int]:
    """In memory, one shard: index of every text to drop -> index of the text kept for its cluster.

    The same steps as the near-dedup stage (``minhash.sketch`` keys and payload, band buckets,
    ``minhash.make_verifier`` on each candidate pair, union-find); for tests and benchmarks.
    """
    from megatron_snow.phase1.minhash import make_verifier, sketch

    keys, payload = sketch(texts, cfg)
    valid = (keys != 0).all(axis=1)
    gkeys = global_keys(0, len(texts))[valid]
    verify = make_verifier(cfg, lambda shard: payload) if cfg.verify else None
    drop = duplicates(comm or Comm(None), [keys[valid]], [gkeys], verify)
    return {split_key(k)[1]: split_key(r)[1] for k, r in drop.items()}
