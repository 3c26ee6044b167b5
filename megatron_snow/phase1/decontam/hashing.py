"""Hashing of word and token streams: words of normalised text, symbols, n-grams / k-grams of them."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import xxhash

WS = re.compile(r"\s+")
WORD = re.compile(r"\w+")
MIX = np.uint64(0x9E3779B97F4A7C15)

# N-grams made only of these say nothing about a benchmark item (month lists, digit runs, alphabets).
_COMMON = frozenset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday "
    "sunday mon tue wed thu fri sat sun zero one two three four five six seven eight nine ten eleven "
    "twelve true false none null".split())


def low_information(words: list[str]) -> bool:
    """Half or more of the words trivial (digits, 1-2 letters, month/number words): such n-grams
    come from generic literals (``np array 1 2 3 4 5 6 7 8``), not from a benchmark item."""
    return 2 * sum(w.isdigit() or len(w) <= 2 or w in _COMMON for w in words) >= len(words)


def low_information_windows(words: list[str], n: int) -> np.ndarray:
    """``low_information`` of every n-word window of ``words`` at once (one flag per word, a running sum)."""
    trivial = np.fromiter((w.isdigit() or len(w) <= 2 or w in _COMMON for w in words), dtype=np.int64,
                          count=len(words))
    run = np.concatenate(([0], np.cumsum(trivial)))
    return 2 * (run[n:] - run[:-n]) >= n


def normalize(text: str) -> str:
    return WS.sub(" ", text.lower()).strip()


def ngram_hashes(words: list[str], n: int) -> np.ndarray:
    """Rolling hashes of every run of ``n`` words (xxh64 of each word, remembered across files)."""
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    return kgrams(symbol_hashes(words), n)


def member(x: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """np.isin for a sorted key array, by binary search (np.isin re-sorts the keys on every call)."""
    idx = np.minimum(np.searchsorted(sorted_keys, x), len(sorted_keys) - 1)
    return sorted_keys[idx] == x


class _SymbolCache(dict):
    """Symbol -> its xxh64, hashed on first lookup: one pass over a list, no set of it built first."""

    def __missing__(self, sym: str) -> int:
        h = self[sym] = xxhash.xxh64_intdigest(sym.encode("utf-8", "surrogatepass"))
        return h


_SYM_CACHE = _SymbolCache()


def symbol_hashes(symbols: list[str]) -> np.ndarray:
    cache = _SYM_CACHE
    if len(cache) > 1 << 20:
        cache.clear()
    return np.fromiter(map(cache.__getitem__, symbols), dtype=np.uint64, count=len(symbols))


class _Powers:
    """MIX**t and MIX**-t (mod 2**64: MIX is odd, so invertible) for t < len, grown on demand up to ``CAP``."""

    CAP = 1 << 22  # 32 MiB each at most; longer streams take the loop
    INV = np.uint64(pow(int(MIX), -1, 1 << 64))

    def __init__(self):
        self.up = self.down = np.ones(1, np.uint64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if n > len(self.up):
            size = max(n, 2 * len(self.up), 1 << 12)
            with np.errstate(over="ignore"):
                self.up, self.down = (np.concatenate((np.ones(1, np.uint64), np.cumprod(np.full(size - 1, x))))
                                      for x in (MIX, self.INV))  # x**t for t = 0 .. size - 1
        return self.up, self.down


_POWERS = _Powers()


def kgrams(h: np.ndarray, k: int) -> np.ndarray:
    """The hash of every run of ``k`` symbols: ``sum(h[i + j] * MIX**(k - 1 - j))`` mod 2**64 (Horner's rule).
    For large ``k`` the same sums from one prefix sum of ``h[t] * MIX**-t`` (a handful of array operations
    instead of 2k; exact in wrapping 64-bit arithmetic)."""
    n = len(h)
    if n < k:
        return np.empty(0, dtype=np.uint64)
    m = n - k + 1
    with np.errstate(over="ignore"):
        if k >= 5 and n <= _Powers.CAP and h.dtype == np.uint64:
            up, down = _POWERS.get(n)
            q = np.empty(n + 1, np.uint64)
            q[0] = 0
            np.cumsum(h * down[:n], out=q[1:])
            return (q[k:] - q[:m]) * up[k - 1:k - 1 + m]
        g = h[:m].copy()
        for j in range(1, k):
            g = g * MIX + h[j:j + m]
    return g


def kgrams_at(h: np.ndarray, k: int, at: np.ndarray) -> np.ndarray:
    """``kgrams(h, k)[at]`` (every ``at`` <= len(h) - k), computed at those offsets only."""
    with np.errstate(over="ignore"):
        g = h[at]
        for j in range(1, k):
            g = g * MIX + h[at + j]
    return g


@dataclass(frozen=True)
class GramIndex:
    """k-gram hash -> the units holding it, as CSR arrays: ``units[offsets[i]:offsets[i + 1]]`` hold ``keys[i]``."""

    keys: np.ndarray  # uint64, sorted, distinct
    offsets: np.ndarray  # int64, len(keys) + 1
    units: np.ndarray  # int64

    @classmethod
    def from_pairs(cls, pairs: np.ndarray) -> GramIndex:
        """From (key, unit) rows, duplicates allowed."""
        arr = np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
        if len(arr):
            keys, starts = np.unique(arr[:, 0], return_index=True)
        else:
            keys, starts = np.empty(0, np.uint64), np.empty(0, np.int64)
        return cls.from_arrays(keys, np.append(starts, len(arr)), arr[:, 1])

    @classmethod
    def from_arrays(cls, keys: np.ndarray, offsets: np.ndarray, units: np.ndarray) -> GramIndex:
        return cls(keys.astype(np.uint64), offsets.astype(np.int64), units.astype(np.int64))

    def hits(self, grams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(unit id, index into ``grams``) for every (file k-gram, unit) pair found."""
        if len(self.keys) == 0 or len(grams) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        idx = np.minimum(np.searchsorted(self.keys, grams), len(self.keys) - 1)
        hit = np.flatnonzero(self.keys[idx] == grams)
        if len(hit) == 0:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        j = idx[hit]
        lens = self.offsets[j + 1] - self.offsets[j]
        first = np.repeat(self.offsets[j] - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        return self.units[first + np.arange(int(lens.sum()))], np.repeat(hit, lens)


class KeyFilter:
    """One bit per value of a hash's top ``BITS`` bits, set for the keys of a set: a hash whose bit is clear
    is surely not a key. A few vector operations instead of a sort and a binary search over every k-gram of a
    file, most of which are in no benchmark; the survivors are looked up exactly."""

    BITS = 23  # 1 MiB per set; ~3% of the bits set for the largest index (~280,000 keys)

    def __init__(self, keys: np.ndarray):
        self._bytes = np.zeros(1 << (self.BITS - 3), dtype=np.uint8)
        top = (np.asarray(keys, dtype=np.uint64) >> np.uint64(64 - self.BITS)).astype(np.int64)
        np.bitwise_or.at(self._bytes, top >> 3, (1 << (top & 7)).astype(np.uint8))

    def maybe(self, hashes: np.ndarray) -> np.ndarray:
        """Indices into ``hashes`` of those that may be keys (every key among them)."""
        top = (hashes >> np.uint64(64 - self.BITS)).astype(np.int64)
        return np.flatnonzero((self._bytes[top >> 3] >> (top & 7).astype(np.uint8)) & 1)
