"""The matching rules: which rule fires on a file, first in the order of the package docstring, as a ``Match``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

import numpy as np

from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.hashing import WORD, kgrams, member, ngram_hashes, normalize, symbol_hashes
from megatron_snow.phase1.decontam.index import LIT_ANCHOR, LIT_MIN, LIT_SALT, CodeUnit, Index, def_start, whole_hash
from megatron_snow.phase1.decontam.lexing import CodeTokens, code_tokens


@dataclass(frozen=True)
class Match:
    """Why a file is contaminated: the rule that fired, the benchmark item and field, the matched text.

    Frozen: callers read it (``m.reason``, or ``m["reason"]`` as a read-only mapping) and build their own
    records from ``details()``."""

    reason: str  # the rule: benchmark_substring, benchmark_ngram, benchmark_code, ...
    benchmark: str
    item: str
    field: str
    match: str  # the matched text, at most 200 characters

    def __getitem__(self, key: str) -> str:
        if key not in _MATCH_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def details(self) -> dict[str, str]:
        """Everything but the rule (a new dict): what a drop record carries beside its reason."""
        return {"benchmark": self.benchmark, "item": self.item, "field": self.field, "match": self.match}

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


_MATCH_KEYS = frozenset(f.name for f in fields(Match))


def _line_end(text: str, i: int) -> int:
    j = text.find("\n", i)
    return len(text) if j < 0 else j


def text_match(index: Index, cfg: DecontamConfig, text: str) -> Match | None:
    """The text rules: benchmark_substring, then benchmark_ngram."""
    norm = normalize(text)
    words = WORD.findall(norm)
    if len(words) >= 3 and len(index.anchor_keys):
        tri = ngram_hashes(words, 3)
        tri = tri[index.anchor_filter.maybe(tri)]
        hits = np.unique(tri[member(tri, index.anchor_keys)])
        found = [pi for h in hits.tolist() for pi in index.anchors[h] if index.patterns[pi].text in norm]
        if found:  # report the same match whatever the hash order: first pattern in benchmark order
            p = index.patterns[min(found)]
            return Match("benchmark_substring", p.benchmark, p.item, p.field, p.text[:200])
    if len(words) >= cfg.ngram and len(index.ngram_keys):
        ng = ngram_hashes(words, cfg.ngram)
        maybe = index.ngram_filter.maybe(ng)
        shared = maybe[member(ng[maybe], index.ngram_keys)]
        if len(shared):
            i = int(shared[0])  # first shared n-gram in the file
            bench, item, fname = index.owners[int(index.ngram_owner[np.searchsorted(index.ngram_keys, ng[i])])]
            return Match("benchmark_ngram", bench, item, fname, " ".join(words[i:i + cfg.ngram])[:200])
    return None


def short_match(index: Index, cfg: DecontamConfig, text: str, toks: CodeTokens,
                stream_of: Callable[[str], np.ndarray] | None = None) -> Match | None:
    """benchmark_code_file, then benchmark_code_literal (see ``index._Builder._build_short_rules``)."""
    u = span = None
    if index.whole and len(toks) < cfg.code_ngram + cfg.code_long_grams + 64:
        d = def_start(toks.abstract)
        if d is not None:
            u = (index.whole.get(whole_hash(toks.literal[d:]) ^ LIT_SALT)  # same literals: that item
                 or index.whole.get(whole_hash(toks.abstract[d:])))
            span = (d, len(toks) - 1)
    if u is None and len(index.lit_keys) and len(toks) >= LIT_MIN:
        lit = stream_of("literal") if stream_of is not None else symbol_hashes(toks.literal)
        grams = kgrams(lit, LIT_ANCHOR)
        for p in np.flatnonzero(member(grams, index.lit_keys)).tolist():
            for i in index.lit_of_key[int(grams[p])]:
                c = index.lit_units[i]
                s = p - c.anchor
                if s >= 0 and np.array_equal(lit[s:s + len(c.stream)], c.stream):
                    u, span = c, (s, s + len(c.stream) - 1)
                    break
            if u is not None:
                break
    if u is None:
        return None
    a, b = toks.offset(toks.start[span[0]]), _line_end(text, toks.offset(toks.end[span[1]]))
    return Match(u.rule, u.benchmark, u.item, u.field, text[a:b][:200])


def code_match(index: Index, cfg: DecontamConfig, text: str, language: str | None) -> Match | None:
    """The code rules, on the file's token streams (the first unit in benchmark order that fires)."""
    if not index.code_units:
        return None
    k = cfg.code_ngram
    toks = code_tokens(text, language)
    fired: list[tuple[int, np.ndarray]] = []
    hashes: dict[str, np.ndarray] = {}  # each stream hashed once

    def stream_of(mode: str) -> np.ndarray:
        if mode not in hashes:
            hashes[mode] = symbol_hashes(getattr(toks, mode))
        return hashes[mode]

    if index.tiny:
        named = stream_of("named")
        for n, units in sorted(index.tiny.items()):
            for p, h in enumerate(kgrams(named, n).tolist()):
                if h in units:
                    u = units[h]
                    a, b = toks.offset(toks.start[p]), _line_end(text, toks.offset(toks.end[p + n - 1]))
                    return Match(u.rule, u.benchmark, u.item, u.field, text[a:b][:200])
    if len(toks) < k:
        return short_match(index, cfg, text, toks, stream_of)
    for mode, grams_index in index.code_index.items():
        if len(grams_index.keys) == 0:
            continue
        stream = stream_of(mode)
        grams = kgrams(stream, k)
        maybe = index.code_filters[mode].maybe(grams)
        uniq, first = np.unique(grams[maybe], return_index=True)
        first_pos = maybe[first]  # where each k-gram first occurs in the file
        units, at = grams_index.hits(uniq)
        if len(units) == 0:
            continue
        counts = np.bincount(units, minlength=len(index.code_units))
        for uid in np.flatnonzero(counts >= index.need).tolist():
            u = index.code_units[uid]
            pos = np.sort(first_pos[at[units == uid]])
            if not index.long[uid] and not _contiguous(u, k, stream, grams, pos):
                continue
            fired.append((uid, pos, not index.long[uid]))
    if not fired:
        return short_match(index, cfg, text, toks, stream_of)
    uid, pos, whole = min(fired, key=lambda x: x[0])  # the first unit in benchmark order
    u = index.code_units[uid]
    if whole:
        a, b = toks.start[int(pos[0]) - u.anchor], toks.end[int(pos[0]) - u.anchor + len(u.stream) - 1]
    else:
        a, b = toks.start[int(pos[0])], toks.end[int(pos[-1]) + k - 1]
    a, b = toks.offset(a), _line_end(text, toks.offset(b))
    return Match(u.rule, u.benchmark, u.item, u.field, text[a:b][:200])


def _contiguous(u: CodeUnit, k: int, stream: np.ndarray, grams: np.ndarray, pos: np.ndarray) -> bool:
    """The whole normalised function, token for token, somewhere in the file (sets pos[0] there)."""
    n = len(u.stream)
    anchor = kgrams(u.stream[u.anchor:u.anchor + k], k)[0]
    for p in np.flatnonzero(grams == anchor).tolist():
        s = p - u.anchor
        if 0 <= s and s + n <= len(stream) and np.array_equal(stream[s:s + n], u.stream):
            pos[0] = p
            return True
    return False
