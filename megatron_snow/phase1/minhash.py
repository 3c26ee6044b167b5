"""MinHash signatures over 5-gram token shingles, vectorised with numpy; LSH bands; exact checks.

Near dedup promises: pairs of shingle Jaccard >= threshold are removed, pairs below are kept. LSH
bands are chosen for recall (P(candidate) >= 0.99 at the threshold: 42 x 6 for 0.7 / 256) and
every candidate pair is checked on its exact shingle sets (``sketch`` stores them packed per shard,
``make_verifier`` reads them back), so LSH false positives cost a check, never a wrong drop.

Shingles are hashed once (token hashes cached, 5 consecutive hashes mixed in
numpy); all permutations are then one array op of the universal hash
``((a * h + b) mod (2^61 - 1)) & (2^32 - 1)`` with a, b, h < 2^32, so the
product fits in 64 bits exactly. The stage signs a whole shard at once (``signatures``: one pass per
permutation over the shard's shingles, a minimum per file), with the values of ``signature``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xxhash

from megatron_snow.config import Config, ConfigError, setting

MERSENNE_PRIME = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)
_TOKEN = re.compile(r"[A-Za-z_0-9]+")
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT61 = np.uint64(61)


@dataclass
class NearDedupConfig(Config):
    """Files whose 5-gram shingle sets have Jaccard >= ``threshold`` are duplicates; one per cluster is kept.

    Default: 42 bands x 6 rows of 256 permutations (the fewest candidates that reach
    ``candidate_recall`` = 0.99 at J = threshold), then the exact Jaccard of every candidate
    pair's shingle sets. Expected share of pairs removed, by true Jaccard J:
    J 0.5: 0 (candidate 49%, rejected by the check); 0.6: 0; 0.7: 0.995; 0.75: 0.9995; 0.8+: 1.
    The signature estimate (``verify_exact: false``) errs by ~0.03 either way at 256
    permutations, so it keeps about half the pairs just above the threshold.
    """
    enabled: bool = setting(True, help="drop near-duplicates (one file per cluster is kept)")
    num_perm: int = setting(256, help="MinHash permutations per signature, in [1, 4096]")
    ngram: int = setting(5, help="tokens per shingle, in [1, 64]")
    threshold: float = setting(
        0.7, help="Jaccard similarity at or above which two files are duplicates, in (0, 1]")
    seed: int = setting(42, help="seed of the MinHash permutations")
    bands: int = setting(
        0, help="LSH bands; 0 (with rows 0): chosen by lsh_params() from candidate_recall", range=">= 0")
    rows: int = setting(0, help="rows per LSH band (0 with bands 0: chosen)", range=">= 0")
    verify: bool = setting(True, help="check LSH candidate pairs (else every band collision is a duplicate)")
    verify_exact: bool = setting(True, help="check by exact shingle-set Jaccard (else by the signature estimate)")
    candidate_recall: float = setting(
        0.99, help="P(candidate | J = threshold) the chosen bands/rows reach; 0: FP+FN-area rule", range="[0, 1)")
    false_positive_weight: float = setting(0.5, help="for the FP+FN-area rule (candidate_recall: 0)", range=">= 0")
    false_negative_weight: float = setting(0.5, help="for the FP+FN-area rule (candidate_recall: 0)", range=">= 0")
    block: int = setting(512, help="shingles per numpy block (bounds memory on huge files, keeps it in cache); "
                                    "the stage signs block x 64 shingles of a shard per pass", range=">= 1")

    def validate(self) -> None:
        # num_perm, ngram and threshold keep the messages they have always had (ranges in the help text)
        for name, lo, hi, spec in (("num_perm", 1, 4096, "[1, 4096]"), ("ngram", 1, 64, "[1, 64]")):
            if not lo <= getattr(self, name) <= hi:
                raise ConfigError(f"{self.key(name)} must be in {spec}, got {getattr(self, name)}")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"{self.key('threshold')} must be in (0, 1], got {self.threshold}")
        if (self.bands == 0) != (self.rows == 0):
            raise ConfigError(f"{self.key('bands')} and {self.key('rows')} must both be 0 (choose) or both > 0, "
                              f"got {self.bands} x {self.rows}")
        if self.bands * self.rows > self.num_perm:
            raise ConfigError(f"{self.key('bands')}*rows = {self.bands * self.rows} > "
                              f"{self.key('num_perm')} = {self.num_perm}")


def _integrate(f, a: float, b: float, n: int = 2001) -> float:
    x = np.linspace(a, b, n)
    return float(np.trapezoid(f(x), x))


def optimal_lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.5,
                       fn_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) with bands * rows <= num_perm minimising weighted FP + FN area."""
    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = _integrate(lambda s, r=r, b=b: 1 - (1 - s ** r) ** b, 0.0, threshold)
            fn = _integrate(lambda s, r=r, b=b: (1 - s ** r) ** b, threshold, 1.0)
            err = fp_weight * fp + fn_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def candidate_probability(s, bands: int, rows: int):
    """P(two documents of Jaccard s share at least one LSH band) = 1 - (1 - s^rows)^bands."""
    return 1.0 - (1.0 - np.asarray(s, dtype=float) ** rows) ** bands


@lru_cache(maxsize=64)
def recall_lsh_params(threshold: float, num_perm: int, candidate_recall: float) -> tuple[int, int]:
    """(bands, rows), bands * rows <= num_perm, with P(candidate | threshold) >= candidate_recall and the
    smallest expected share of candidates below the threshold (each candidate costs one exact check)."""
    best, best_area = None, float("inf")
    for r in range(1, num_perm + 1):
        b = num_perm // r  # for a fixed r, more bands only raise recall; the area test picks r
        if float(candidate_probability(threshold, b, r)) < candidate_recall:
            continue
        area = _integrate(lambda x, b=b, r=r: candidate_probability(x, b, r), 0.0, threshold)
        if area < best_area:
            best, best_area = (b, r), area
    if best is None:
        raise ValueError(f"no bands x rows within {num_perm} permutations reaches candidate recall "
                         f"{candidate_recall} at Jaccard {threshold}; raise num_perm")
    return best


def lsh_params(cfg: NearDedupConfig) -> tuple[int, int]:
    """The (bands, rows) a config asks for: explicit, or chosen (candidate recall, else FP+FN area)."""
    if cfg.bands and cfg.rows:
        return cfg.bands, cfg.rows
    if cfg.candidate_recall > 0:
        return recall_lsh_params(cfg.threshold, cfg.num_perm, cfg.candidate_recall)
    return optimal_lsh_params(cfg.threshold, cfg.num_perm, cfg.false_positive_weight, cfg.false_negative_weight)


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


# _TOKEN over UTF-8 bytes without a regex: every byte outside [A-Za-z_0-9] (non-ASCII ones included, so a
# non-ASCII character never joins a token, as in the str pattern) becomes a space, then split.
_TOKEN_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NOT_TOKEN_TO_SPACE = bytes(c if c in _TOKEN_BYTES else 0x20 for c in range(256))


def token_bytes(text: str) -> list[bytes]:
    """``tokens(text)`` UTF-8 encoded (~1.6x faster than the regex: translate and split run in C)."""
    return text.encode("utf-8", "surrogatepass").translate(_NOT_TOKEN_TO_SPACE).split()


class _TokenHashes(dict):
    """token (UTF-8) -> xxh64, filled on a miss: a hit stays a C dict lookup, with no per-file set of tokens."""

    def __missing__(self, token: bytes) -> int:
        h = self[token] = xxhash.xxh64_intdigest(token)
        return h


class ShingleHasher:
    """Token -> 64-bit hash (xxh64 of its UTF-8) with a bounded cache (identifiers repeat across files)."""

    def __init__(self, cache_size: int = 1 << 20):
        self.cache: dict[bytes, int] = _TokenHashes()
        self.cache_size = cache_size

    def token_hashes(self, toks: list[bytes] | list[str]) -> np.ndarray:
        if len(self.cache) > self.cache_size:
            self.cache.clear()
        if toks and isinstance(toks[0], str):
            toks = [t.encode() for t in toks]
        return np.fromiter(map(self.cache.__getitem__, toks), dtype=np.uint64, count=len(toks))

    def shingles(self, text: str, ngram: int) -> np.ndarray:
        """Unique 32-bit hashes of the ``ngram``-token shingles (one shingle if fewer tokens)."""
        th = self.token_hashes(token_bytes(text))
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


SIGNATURE_BATCH = 4096  # files whose signatures ``sketch`` holds at once (8 MiB at 256 permutations)


def signatures(sets: list[np.ndarray], num_perm: int = 256, seed: int = 42, block: int = 512) -> np.ndarray:
    """(n, num_perm) MinHash signatures of many shingle sets, each row equal to ``signature(sets[i])``.

    The sets are concatenated and cut into chunks of ``block * 64`` shingles; each permutation is then one
    pass over a chunk (the same universal hash, ``x mod p`` and mask as ``signature``) and
    ``np.minimum.reduceat`` over the documents' offsets gives that column for every document in the
    chunk; a document spanning chunks is the minimum of its parts. Long 1-D passes instead of one
    (block, num_perm) matrix per file: half the CPU on a shard of source files.
    """
    a, b = permutations(num_perm, seed)
    n = len(sets)
    sig = np.full((n, num_perm), MAX_HASH, dtype=np.uint64)
    lens = np.fromiter(map(len, sets), dtype=np.int64, count=n)
    docs = np.flatnonzero(lens)  # an empty set has no segment (reduceat would read its neighbour)
    if len(docs) == 0:
        return sig
    flat = np.concatenate([sets[i] for i in docs]).astype(np.uint64, copy=False)
    ends = np.cumsum(lens[docs])
    starts = ends - lens[docs]
    chunk = max(1, block * 64)
    v = np.empty(min(chunk, len(flat)), dtype=np.uint64)
    t = np.empty_like(v)
    for lo in range(0, len(flat), chunk):
        hi = min(lo + chunk, len(flat))
        d0, d1 = int(np.searchsorted(ends, lo, side="right")), int(np.searchsorted(starts, hi, side="left"))
        offsets = np.maximum(starts[d0:d1], lo) - lo
        h, x, y = flat[lo:hi], v[: hi - lo], t[: hi - lo]
        part = np.empty((d1 - d0, num_perm), dtype=np.uint64)
        for j in range(num_perm):
            np.multiply(h, a[j], out=x)  # a, h < 2^32: exact
            x += b[j]
            np.right_shift(x, _SHIFT61, out=y)
            x += y  # (x & p) + (x >> 61), of which only the low 32 bits are kept: x & p changes none of them
            x &= MAX_HASH
            part[:, j] = np.minimum.reduceat(x, offsets)
        rows = docs[d0:d1]
        sig[rows] = np.minimum(sig[rows], part)
    return sig


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """One 64-bit hash per band of ``rows`` signature values (band index mixed in); ``sig`` may be
    one signature or a (n, num_perm) stack of them (then (n, bands) hashes)."""
    m = sig[..., : bands * rows].reshape(*sig.shape[:-1], bands, rows)
    with np.errstate(over="ignore"):
        h = np.arange(1, bands + 1, dtype=np.uint64) * _MIX
        for k in range(rows):
            h = (h ^ m[..., k]) * np.uint64(0x100000001B3)
            h ^= h >> np.uint64(31)
    return h


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(1, len(a | b))


def exact_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard of two sorted arrays of unique shingle hashes (as ShingleHasher.shingles returns them)."""
    if len(a) == 0 and len(b) == 0:
        return 1.0
    if len(a) > len(b):
        a, b = b, a
    idx = np.searchsorted(b, a)
    inter = int(np.count_nonzero(b[np.minimum(idx, len(b) - 1)] == a)) if len(b) else 0
    return inter / (len(a) + len(b) - inter)


# -- what the dedup stage stores per shard and how it checks candidate pairs ----------------------------
# Exact check: the shard's shingle sets packed in one uint32 array [n, offsets (n + 1), shingles...], so
# a row is a slice of a memory-mapped file. Signature check: the (n, num_perm) uint32 signatures.

def pack_shingles(sets: list[np.ndarray]) -> np.ndarray:
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] + len(sets) + 2 >= 1 << 32:
        raise ValueError(f"shard too large to pack ({int(offsets[-1])} shingles); use smaller shards")
    body = np.concatenate(sets).astype(np.uint32) if len(sets) and offsets[-1] else np.empty(0, np.uint32)
    return np.concatenate([np.array([len(sets)], np.uint32), offsets.astype(np.uint32), body])


def packed_row(packed: np.ndarray, row: int) -> np.ndarray:
    n = int(packed[0])
    lo, hi = int(packed[1 + row]), int(packed[2 + row])
    return packed[n + 2 + lo:n + 2 + hi]


def sketch(texts, cfg: NearDedupConfig, hasher: ShingleHasher | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(band keys (n, bands), verification payload) for a list of texts; a row of zeros takes no part
    (a text without tokens). The payload is what ``make_verifier`` reads back for this shard."""
    b, r = lsh_params(cfg)
    hasher = hasher or ShingleHasher()
    sets = [hasher.shingles(text, cfg.ngram) for text in texts]
    exact = cfg.verify and cfg.verify_exact
    keys = np.zeros((len(sets), b), dtype=np.uint64)
    sigs = None if exact else np.zeros((len(sets), cfg.num_perm), dtype=np.uint32)
    for lo in range(0, len(sets), SIGNATURE_BATCH):  # bounded: a shard may hold a million small files
        batch = sets[lo:lo + SIGNATURE_BATCH]
        sig = signatures(batch, cfg.num_perm, cfg.seed, cfg.block)
        full = np.fromiter(map(len, batch), dtype=np.int64, count=len(batch)) > 0  # else: no key, no signature
        bh = band_hashes(sig[full], b, r)
        bh[bh == 0] = 1
        keys[lo:lo + len(batch)][full] = bh
        if sigs is not None:
            sigs[lo:lo + len(batch)][full] = sig[full]
    return keys, (pack_shingles(sets) if exact else sigs)


def near_keys_fn(cfg: NearDedupConfig):
    """For the dedup stage: (records -> (band keys, payload), bands, rows)."""
    b, r = lsh_params(cfg)
    hasher = ShingleHasher()
    return (lambda recs: sketch([rec.content for rec in recs], cfg, hasher)), b, r


def make_verifier(cfg: NearDedupConfig, payload_of):
    """edges (m, 2) of global keys (shard << 32 | row) -> bool mask of the pairs that are duplicates.

    ``payload_of(shard)`` returns that shard's payload from ``sketch`` (e.g. np.load(..., mmap_mode="r")).
    """
    cache: dict[int, np.ndarray] = {}

    def row(key: int) -> np.ndarray:
        s, i = key >> 32, key & 0xFFFFFFFF
        if s not in cache:
            cache[s] = payload_of(s)
        p = cache[s]
        return packed_row(p, i) if cfg.verify_exact else p[i]

    def verify(edges: np.ndarray) -> np.ndarray:
        if cfg.verify_exact:
            return np.array([exact_jaccard(row(a), row(b)) >= cfg.threshold for a, b in edges.tolist()], dtype=bool)
        return np.array([float(np.mean(row(a) == row(b))) >= cfg.threshold for a, b in edges.tolist()], dtype=bool)

    return verify
