"""MinHash signatures over 5-gram token shingles, vectorised with numpy; LSH band parameters.

Shingles are hashed once (token hashes cached, 5 consecutive hashes mixed in
numpy); all permutations are then one array op of the universal hash
``((a * h + b) mod (2^61 - 1)) & (2^32 - 1)`` with a, b, h < 2^32, so the
product fits in 64 bits exactly.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xxhash

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
_TOKEN = re.compile(r"[A-Za-z_0-9]+")
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT61 = np.uint64(61)


@dataclass
class NearDedupConfig:
    enabled: bool = True
    num_perm: int = 256
    ngram: int = 5
    threshold: float = 0.7
    seed: int = 42
    bands: int = 0  # 0: choose (bands, rows) minimising false positive + false negative area
    rows: int = 0
    verify: bool = True  # drop LSH candidate pairs whose signature-estimated Jaccard is below threshold
    false_positive_weight: float = 0.5
    false_negative_weight: float = 0.5
    block: int = 512  # shingles per numpy block (bounds memory on huge files, keeps it in cache)


def _integrate(f, a: float, b: float, n: int = 2001) -> float:
    x = np.linspace(a, b, n)
    return float(np.trapezoid(f(x), x))


def optimal_lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5,
                       fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising weighted FP + FN area."""
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integrate(lambda s: 1 - (1 - s ** r) ** b, 0.0, threshold)
            fn = _integrate(lambda s: (1 - s ** r) ** b, threshold, 1.0)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.RandomState(seed)
    a = rng.randint(1, 1 << 32, size=num_perm, dtype=np.uint64)
    b = rng.randint(0, 1 << 32, size=num_perm, dtype=np.uint64)
    return a, b


def _sorted_unique(x: np.ndarray) -> np.ndarray:
    """np.unique by sorting (numpy 2's hash-based np.unique is ~10x slower on these small arrays)."""
    x = np.sort(x)
    keep = np.empty(len(x), dtype=bool)
    keep[:1] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


class ShingleHasher:
    """Token -> 64-bit hash with a bounded cache (identifiers repeat across files)."""

    def __init__(self, cache_size: int = 1 << 20):
        self.cache: dict[str, int] = {}
        self.cache_size = cache_size

    def token_hashes(self, toks: list[str]) -> np.ndarray:
        cache = self.cache
        if len(cache) > self.cache_size:
            cache.clear()
        for t in set(toks).difference(cache):
            cache[t] = xxhash.xxh64_intdigest(t.encode())
        return np.fromiter(map(cache.__getitem__, toks), dtype=np.uint64, count=len(toks))

    def shingles(self, text: str, ngram: int) -> np.ndarray:
        """Unique 32-bit hashes of the ``ngram``-token shingles (one shingle if fewer tokens)."""
        th = self.token_hashes(tokens(text))
        if len(th) == 0:
            return np.empty(0, dtype=np.uint64)
        n = len(th) - ngram + 1
        if n <= 0:
            th, n, ngram = th, 1, len(th)
        with np.errstate(over="ignore"):
            h = th[:n].copy()
            for k in range(1, ngram):
                h = h * _MIX + th[k:k + n]
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
        return _sorted_unique(h & MAX_HASH)


@lru_cache(maxsize=2)
def _scratch(block: int, num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """Work buffers reused across calls: fresh multi-MB arrays per file cost page faults, not arithmetic."""
    return np.empty((block, num_perm), dtype=np.uint64), np.empty((block, num_perm), dtype=np.uint64)


def signature(shingle_hashes: np.ndarray, num_perm: int = 256, seed: int = 42, block: int = 512) -> np.ndarray:
    """MinHash signature (num_perm values < 2^32, as uint64); all-MAX for an empty shingle set.

    In-place ops on reused blocks keep the temporaries in cache (not thread-safe: one signer per process). ``x mod p``
    for p = 2^61 - 1 is computed as ``(x & p) + (x >> 61)`` (congruent to x;
    left unreduced in 8 of 2^61 cases, which changes nothing for a hash).
    """
    a, b = permutations(num_perm, seed)
    sig = np.full(num_perm, MAX_HASH, dtype=np.uint64)
    n_all = len(shingle_hashes)
    if n_all == 0:
        return sig
    buf, tmp = _scratch(block, num_perm)
    for start in range(0, n_all, block):
        h = shingle_hashes[start:start + block]
        x, t = buf[: len(h)], tmp[: len(h)]
        np.multiply(h[:, None], a, out=x)  # a, h < 2^32: exact
        x += b
        np.right_shift(x, _SHIFT61, out=t)
        x &= MERSENNE_PRIME
        x += t
        x &= MAX_HASH
        np.minimum(sig, x.min(axis=0), out=sig)
    return sig


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per band of ``rows`` signature values (band index mixed in)."""
    m = sig[: bands * rows].reshape(bands, rows)
    with np.errstate(over="ignore"):
        h = np.arange(1, bands + 1, dtype=np.uint64) * _MIX
        for k in range(rows):
            h = (h ^ m[:, k]) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(31)
    return h


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))
