"""The matching rules: which rule fires on a file, first in the order of the package docstring, as a ``Match``."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.hashing import WORD, kgrams, kgrams_at, member, normalize, symbol_hashes
from megatron_snow.phase1.decontam.index import IMPORT_TAIL, LIT_ANCHOR, LIT_MIN, LIT_SALT, CodeUnit, Index
from megatron_snow.phase1.decontam.lexing import code_tokens
from megatron_snow.phase1.decontam.streams import Streams, code_streams


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


def text_match(index: Index, cfg: DecontamConfig, text: str, word_hashes: np.ndarray | None = None) -> Match | None:
    """The text rules: benchmark_substring, then benchmark_ngram. ``word_hashes``: those of the text's words
    when known (``streams.Streams.words``)."""
    words = None
    if word_hashes is None:
        words = WORD.findall(text.lower())  # the words of ``normalize(text)``: collapsing blanks keeps them
        word_hashes = symbol_hashes(words)
    h = word_hashes
    if len(h) >= 3 and len(index.anchor_keys):
        tri = kgrams(h, 3)
        maybe = index.anchor_filter.maybe(tri)
        candidates = set()  # patterns whose interior words the file holds in a row, at an anchor
        for at in maybe[member(tri[maybe], index.anchor_keys)].tolist():
            for pi in index.anchors[int(tri[at])]:
                interior, offset = index.interior(pi)
                s = at - offset
                if pi not in candidates and s >= 0 and np.array_equal(h[s:s + len(interior)], interior):
                    candidates.add(pi)
        if candidates:
            norm = normalize(text)
            found = [pi for pi in sorted(candidates) if index.patterns[pi].text in norm]
            if found:  # report the same match whatever the hash order: first pattern in benchmark order
                p = index.patterns[found[0]]
                return Match("benchmark_substring", p.benchmark, p.item, p.field, p.text[:200])
    if len(h) >= cfg.ngram and len(index.ngram_keys):
        ng = kgrams(h, cfg.ngram)
        maybe = index.ngram_filter.maybe(ng)
        shared = maybe[member(ng[maybe], index.ngram_keys)]
        if len(shared):
            i = int(shared[0])  # first shared n-gram in the file
            bench, item, fname = index.owners[int(index.ngram_owner[np.searchsorted(index.ngram_keys, ng[i])])]
            words = WORD.findall(text.lower()) if words is None else words
            return Match("benchmark_ngram", bench, item, fname, " ".join(words[i:i + cfg.ngram])[:200])
    return None


_H_DEF, _H_IMPORT, _H_FROM = (int(h) for h in symbol_hashes(["def", "import", "from"]))
_H_IMPORT_TAIL = frozenset(symbol_hashes(sorted(IMPORT_TAIL)).tolist())


def _def_start(abstract: np.ndarray) -> int | None:
    """``index.def_start`` on the abstract stream's hashes."""
    i, n = 0, len(abstract)
    while i < n and int(abstract[i]) in (_H_IMPORT, _H_FROM):
        i += 1
        while i < n and int(abstract[i]) in _H_IMPORT_TAIL:
            i += 1
    return i if i < n and int(abstract[i]) == _H_DEF else None


def _whole(stream: np.ndarray) -> int:
    return int(kgrams(stream, len(stream))[0])  # whole_hash of the symbols hashed in ``stream``


_NO_STARTS = np.empty(0, np.int64)
Hit = tuple[CodeUnit, int, int]  # the unit, and the first and last token of the file it matched


def _short_hit(index: Index, cfg: DecontamConfig, streams: dict[str, np.ndarray]) -> Hit | None:
    """benchmark_code_file, then benchmark_code_literal (see ``index._Builder._build_short_rules``)."""
    n_toks = len(streams["abstract"])
    if index.whole and n_toks < cfg.code_ngram + cfg.code_long_grams + 64:
        d = _def_start(streams["abstract"])
        if d is not None:
            u = (index.whole.get(_whole(streams["literal"][d:]) ^ LIT_SALT)  # same literals: that item
                 or index.whole.get(_whole(streams["abstract"][d:])))
            if u is not None:
                return u, d, n_toks - 1
    if len(index.lit_keys) and n_toks >= LIT_MIN:
        lit = streams["literal"]
        grams = kgrams(lit, LIT_ANCHOR)
        for p in np.flatnonzero(member(grams, index.lit_keys)).tolist():
            for i in index.lit_of_key[int(grams[p])]:
                c = index.lit_units[i]
                s = p - c.anchor
                if s >= 0 and np.array_equal(lit[s:s + len(c.stream)], c.stream):
                    return c, s, s + len(c.stream) - 1
    return None


def code_hit(index: Index, cfg: DecontamConfig, streams: dict[str, np.ndarray]) -> Hit | None:
    """The code rules on a file's hashed token streams (mode -> symbol hashes): the first unit in benchmark
    order that fires, and the tokens it matched; no positions needed."""
    k = cfg.code_ngram
    named = streams["named"]
    starts = np.flatnonzero(member(named, index.tiny_first)) if index.tiny_keys else _NO_STARTS
    for n, keys in index.tiny_keys:  # a one-liner's n-gram, where the file holds its first token
        at = starts[starts <= len(named) - n]
        hit = at[member(kgrams_at(named, n, at), keys)] if len(at) else at
        if len(hit):
            p = int(hit[0])
            return index.tiny[n][int(kgrams_at(named, n, hit[:1])[0])], p, p + n - 1
    if len(named) < k:
        return _short_hit(index, cfg, streams)
    fired: list[tuple[int, np.ndarray, bool]] = []
    for mode, grams_index in index.code_index.items():
        if len(grams_index.keys) == 0:
            continue
        stream = streams[mode]
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
        return _short_hit(index, cfg, streams)
    uid, pos, whole = min(fired, key=lambda x: x[0])  # the first unit in benchmark order
    u = index.code_units[uid]
    if whole:
        return u, int(pos[0]) - u.anchor, int(pos[0]) - u.anchor + len(u.stream) - 1
    return u, int(pos[0]), int(pos[-1]) + k - 1


def code_match(index: Index, cfg: DecontamConfig, text: str, language: str | None,
               fast: Streams | None | bool = True) -> Match | None:
    """The code rules on the file's token streams. Python is read first without positions (``streams``); the
    lexer with positions runs only where a rule fires there (or where that reader declines), for the match.
    ``fast``: the file's ``streams.code_streams`` when already read (True: read them here)."""
    if not index.code_units:
        return None
    if fast is True:
        fast = code_streams(text, language)
    if fast is not None and code_hit(index, cfg, dict(zip(("abstract", "literal", "named"), fast))) is None:
        return None
    toks = code_tokens(text, language)
    hit = code_hit(index, cfg, {mode: symbol_hashes(getattr(toks, mode)) for mode in ("abstract", "literal", "named")})
    if hit is None:
        return None
    u, i, j = hit
    a, b = toks.offset(toks.start[i]), _line_end(text, toks.offset(toks.end[j]))
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
