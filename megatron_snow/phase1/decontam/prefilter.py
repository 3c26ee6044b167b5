"""The skeleton prefilter (``prefilter: true``): which files pay for normalisation by the code rules.

A file's skeleton: its keywords, builtins, attribute names and operators in order, every other name or
number as ``_``, read with regular expressions after strings, comments, import statements and ``def``
headers (so type hints) are blanked; parentheses, commas and colons left out. Renaming, reformatting,
comments, docstrings and type hints leave it as it was, as they leave the normalised stream. Each code
unit keeps its skeleton's _SKEL-grams (the whole skeleton when shorter) but those of more than
``code_max_items`` items; a test block also the words of its literals. A file is tokenized when it
holds all keys of a unit matched whole, half of those of a unit matched by containment (and half of a
test block's literal words), a name a one-liner rule needs, a word of a literal-rule unit with a short
skeleton, or when it is short (fewer names than a short benchmark function alone could have).
Measured (bench/bench_decontam.py, standard library and site-packages; docs/results/decontam_speed.json): the
same verdicts, but most files still pass (391 of 537) and the skeleton costs more than it saves now that files are
read as hashed streams without positions (``streams``): about half the streams' speed with it: off by default.
"""
from __future__ import annotations

import re

import numpy as np

from megatron_snow.phase1.decontam.hashing import WORD, GramIndex, kgrams, member, symbol_hashes
from megatron_snow.phase1.decontam.lexing import C_LIKE, KEEP_NAMES

_SKEL = 6  # skeleton tokens per key
_SKEL_SHORT_FILE = 160  # names: a file with fewer may be a short benchmark function alone (file rule: < 114 tokens)
_SKEL_BLANK = re.compile(r"(?:[rRbBuUfF]{1,2})?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|\"(?:\\[\s\S]|[^\"\\\n])*\""
                         r"|'(?:\\[\s\S]|[^'\\\n])*')|#[^\n]*")
_SKEL_STRING = re.compile(r"(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|\"(?:\\[\s\S]|[^\"\\\n])*\""
                          r"|'(?:\\[\s\S]|[^'\\\n])*')"
                          r"|\b\d[\w.]*")  # strings and numbers: where a literal-rule unit's word must be
_SKEL_BLANK_C = re.compile(_SKEL_BLANK.pattern + r"|//[^\n]*|/\*[\s\S]*?\*/|`(?:\\[\s\S]|[^`\\])*`")
_SKEL_HEADER = re.compile(r"\bdef[ \t]+\w+[ \t]*\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\)[^:\n]*:")
_SKEL_IMPORT = re.compile(r"(?m)^[ \t]*(?:from[ \t]+[\w.]+[ \t]+)?import[ \t]+(?:\([^)]*\)|[^\n]*)")
_SKEL_TOKEN = re.compile(r"(\.[ \t]*)?\b([^\W\d]\w*)|(\*\*=?|//=?|>>=?|<<=?|:=|[-+*/%&|^@<>=!]=|[-+*/%&|^@<>=~\[\]{}])"
                         r"|\b\d[\w.]*")  # a number: an operand, as a name


def skeleton(text: str, language: str | None = None, imports: bool = False) -> tuple[list[str], list[str]]:
    """(skeleton tokens, the names and words of the file's code) of ``text``; see above. Import statements
    are left out (runs of them are in every file) unless ``imports``."""
    code = (_SKEL_BLANK_C if (language or "").lower() in C_LIKE else _SKEL_BLANK).sub(" ", text)
    code = _SKEL_HEADER.sub("def :", code)
    if not imports:
        code = _SKEL_IMPORT.sub(" ", code)
    found = _SKEL_TOKEN.findall(code)
    keep = KEEP_NAMES
    return [o or (w if d or w in keep else "_") for d, w, o in found], [w for _, w, _ in found if w]


_LIT_KEY_SALT = np.uint64(0x9E6C63D0676A9A99)


def _literal_word_keys(text: str) -> np.ndarray:
    words = WORD.findall(" ".join(_SKEL_STRING.findall(text)))
    return np.unique(symbol_hashes(words)) ^ _LIT_KEY_SALT if words else np.empty(0, np.uint64)


SKEL_PART = 0.5  # share of its skeleton keys a file must hold for a unit matched by containment
LIT_PART = 0.5  # share of its literal words a file must hold for a test block matched by containment


def _informative_keys(unit_keys: list[tuple[np.ndarray, int]], max_items: int) -> list[np.ndarray]:
    """Each unit's distinct skeleton keys but those of more than ``max_items`` items (``if is not None``,
    ``for in range len``); a unit with nothing else keeps all of its own."""
    if not unit_keys:
        return []
    pairs = np.unique(np.concatenate([np.stack([np.unique(k), np.full(len(np.unique(k)), i, np.uint64)], axis=1)
                                      for k, i in unit_keys if len(k)] or [np.empty((0, 2), np.uint64)]), axis=0)
    keys, counts = np.unique(pairs[:, 0], return_counts=True)
    idioms = keys[counts > max_items]
    out = []
    for k, _ in unit_keys:
        k = np.unique(k)
        rare = k[~member(k, idioms)] if len(idioms) and len(k) else k
        out.append(rare if len(rare) else k)
    return out


class Prefilter:
    """Which files the code rules need to tokenize (see above): a file passes when it holds, for some code
    unit, all of its skeleton keys (a unit matched whole) or ``SKEL_PART`` of them (by containment), or
    a name / literal / word a short rule needs, or when it is short."""

    def __init__(self, index: GramIndex, need: np.ndarray, group: np.ndarray, lengths: list[int], names: list[str],
                 literals: list[str], words: list[str]):
        self.index = index  # key -> prefilter units
        self.need = np.asarray(need, dtype=np.int64)  # keys each prefilter unit needs
        self.group = np.asarray(group, dtype=np.int64)  # the code unit each is for: all of a group must hold
        self._group_size = np.bincount(self.group) if len(self.group) else np.zeros(0, np.int64)
        self.lengths = sorted(set(int(n) for n in lengths))  # key lengths: _SKEL, and shorter whole skeletons
        self.always = 0 in self.lengths  # a unit with no skeleton at all: nothing can be skipped
        self.lengths = [n for n in self.lengths if n]
        self.names = frozenset(names)  # the longest identifier of each one-liner and short test unit
        self.literals = frozenset(literals)  # a word or number of each literal-rule unit with a short skeleton
        self.words = frozenset(words)  # a kept word of each unit that is only imports

    @classmethod
    def build(cls, unit_keys: list[tuple[np.ndarray, int, float, int]], max_items: int, names, literals,
              words) -> "Prefilter":
        """``unit_keys``: (keys, item id, the share of them a file must hold, the code unit they are for)."""
        kept = _informative_keys([(k, i) for k, i, _, _ in unit_keys], max_items)
        need = [max(1, int(np.ceil(share * len(k)))) for k, (_, _, share, _) in zip(kept, unit_keys)]
        group = np.unique([g for *_, g in unit_keys], return_inverse=True)[1] if unit_keys else []
        pairs = [np.stack([k, np.full(len(k), u, np.uint64)], axis=1) for u, k in enumerate(kept) if len(k)]
        index = GramIndex.from_pairs(np.concatenate(pairs) if pairs else np.empty((0, 2), np.uint64))
        lengths = {0 if not len(k) else 1 for k in kept} - {1}
        return cls(index, need, group, sorted(lengths | {n for n in range(1, _SKEL + 1)}), names, literals, words)

    @staticmethod
    def import_word(code: str) -> str | None:
        """The longest attribute name or keyword of code that is only imports (``pyplot``): a file holding
        the code holds that word."""
        words = [w for w in skeleton(code, imports=True)[0] if w.isidentifier() and w not in ("import", "from", "as")]
        return max(words, key=len) if words else None

    @staticmethod
    def literal_keys(code: str) -> np.ndarray:
        """Keys of the words and numbers of the code's strings and numbers (as ``_SKEL_STRING`` reads them)."""
        return _literal_word_keys(code)

    @staticmethod
    def unit_keys(code: str) -> tuple[np.ndarray, int]:
        """(keys, their length) of the code's skeleton."""
        skel = skeleton(code)[0]
        n = min(_SKEL, len(skel))
        return (kgrams(symbol_hashes(skel), n) ^ np.uint64(n) if n else np.empty(0, np.uint64)), n

    def passes(self, text: str, language: str | None) -> bool:
        """False only when no code rule can fire on ``text``."""
        if self.always:
            return True
        skel, words = skeleton(text, language)
        if len(words) < _SKEL_SHORT_FILE:
            return True
        if self.names and not self.names.isdisjoint(words):
            return True
        if self.literals and not self.literals.isdisjoint(WORD.findall(" ".join(_SKEL_STRING.findall(text)))):
            return True
        if self.words and not self.words.isdisjoint(WORD.findall(text)):
            return True
        h = symbol_hashes(skel)
        grams = [kgrams(h, n) ^ np.uint64(n) for n in self.lengths if len(h) >= n] + [_literal_word_keys(text)]
        units, _ = self.index.hits(np.unique(np.concatenate(grams)))
        if not len(units):
            return False
        held = np.bincount(units, minlength=len(self.need)) >= self.need
        return bool((np.bincount(self.group, weights=held, minlength=len(self._group_size)) == self._group_size).any())

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(strings, arrays) of this prefilter, by name, for the on-disk index."""
        meta = {"names": sorted(self.names), "literals": sorted(self.literals), "words": sorted(self.words),
                "lengths": ([0] if self.always else []) + self.lengths}
        arrays = {"keys": self.index.keys, "offsets": self.index.offsets, "units": self.index.units,
                  "need": self.need, "group": self.group}
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Prefilter:
        index = GramIndex.from_arrays(arrays["keys"], arrays["offsets"], arrays["units"])
        return cls(index, arrays["need"], arrays["group"], meta["lengths"], meta["names"], meta["literals"],
                   meta["words"])
