"""The decontamination index: patterns and n-grams of benchmark text; units, k-gram indexes and whole-function
hashes of benchmark code. Built from benchmark items (``Index.build``), or restored from the named strings and
arrays it is stored as (``Index.to_arrays`` / ``Index.from_arrays``, the on-disk cache)."""
from __future__ import annotations

import gc
import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from megatron_snow.phase1.decontam.benchmarks import FIELD_KIND, CodeItem, TextItem, defined_names, load
from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.hashing import (
    WORD, GramIndex, KeyFilter, kgrams, low_information_windows, member, ngram_hashes, normalize, symbol_hashes,
)
from megatron_snow.phase1.decontam.lexing import CodeTokens, code_tokens
from megatron_snow.phase1.decontam.prefilter import LIT_PART, SKEL_PART, Prefilter

_log = logging.getLogger(__name__)
_DOCTEST = re.compile(r"(?m)^[ \t]*(?:>>>|\.\.\.)[^\n]*$")


@dataclass(frozen=True)
class Pattern:
    """A docstring / solution of the substring rule."""

    text: str  # normalised
    benchmark: str
    item: str
    field: str


@dataclass
class CodeUnit:
    """A benchmark function or test block, as one code rule matches it."""

    benchmark: str
    item: str
    field: str
    rule: str  # benchmark_code | benchmark_code_short | benchmark_code_verbatim | benchmark_test | ...
    mode: str  # the stream it is matched on: abstract (functions) | named (short functions) | literal (tests)
    need: int  # informative k-grams the file must hold
    stream: np.ndarray  # symbol hashes (kept for the contiguous check of short functions)
    anchor: int  # offset in ``stream`` of an informative k-gram
    whole: bool = False  # short: every k-gram, the whole stream in one run of the file


TINY_MIN = 6  # one-liner solutions: at least this many tokens and a specific function name



def _specific_name(named: list[str]) -> bool:
    """A one-liner is matched as written only when the function it defines has a name nobody writes by
    chance (8+ characters with an underscore or inner capital: ``count_charac``, ``Find_Max``), so
    ``def maximum(a, b): return max(a, b)`` in ordinary code is never flagged."""
    if len(named) < 2 or named[0] != "def":
        return False
    name = named[1]
    return len(name) >= 8 and ("_" in name.strip("_") or any(c.isupper() for c in name[1:]))


IMPORT_TAIL = frozenset({"I", ".", ",", "as", "import", "*"})
_WHOLE_MIN = 7  # benchmark_code_file: ``def I I : return sum I`` at least; ``def I I : return I`` is nothing
LIT_MIN = 9  # benchmark_code_literal: ``def I I : return I % N11 == N0`` at least
LIT_ANCHOR = 6  # tokens of the anchor window (the one holding the most literals) of a literal-rule function
_LIT_WEIGHT = 1.5  # literal information a short function needs for benchmark_code_literal
_LIT_MAX_ITEMS = 3  # a string literal found in more benchmark items than this is common ('utf-8', ', ')
_REGEXY = re.compile(r"[\\()\[\]{}*+?^$| %]")


def anchor_offset(interior: list[str]) -> int:
    """Where a substring-rule pattern's anchor starts among its interior words: the longest word 3-gram."""
    return max(range(len(interior) - 2), key=lambda i: len("".join(interior[i:i + 3])))


def def_start(symbols: list[str]) -> int | None:
    """Offset of the ``def`` that follows the leading import statements, or None when the code is not
    imports then a function (a script, a class, a decorated function)."""
    i = 0
    while i < len(symbols) and symbols[i] in ("import", "from"):
        i += 1
        while i < len(symbols) and symbols[i] in IMPORT_TAIL:
            i += 1
    return i if i < len(symbols) and symbols[i] == "def" else None


LIT_SALT = 0x5BD1E9955BD1E995


def whole_hash(symbols: list[str]) -> int:
    return int(kgrams(symbol_hashes(symbols), len(symbols))[0])


def _unit_names(toks: CodeTokens) -> set[str]:
    """The longest identifier of a unit matched whole as written: a file holding the unit holds it."""
    names = [n for a, n in zip(toks.abstract, toks.named) if a == "I"]
    return {max(names, key=len)} if names else set()


def _rarest_literal(abstract: list[str], literal: list[str]) -> str | None:
    """The longest word or number (not 0 / 1 / 2) among a short function's literals: a file holding the
    function holds it as a word of its text. None when it has none."""
    words = [w for a, lit in zip(abstract, literal) if a in ("N", "S")
             for w in WORD.findall(lit[1:] if a == "S" else lit) if w not in ("0", "1", "2")]
    best = max(words, key=len) if words else ""
    return best if len(best) >= 3 else None


def _literal_weight(abstract: list[str], literal: list[str], string_items: dict[str, int]) -> float:
    """How much a short function's literals say: a rare string that reads like a regex, format or
    message (a space or punctuation, 4+ characters, in at most ``_LIT_MAX_ITEMS`` benchmark items) 2,
    another number 1, 0 / 1 / 2 and other strings 0.5. ``return n % 11 == 0`` has 1.5, ``return x % 2 == 0``
    (a parity test in any codebase) 1, ``return n // m`` 0."""
    w = 0.0
    for a, lit in zip(abstract, literal):
        if a == "N":
            w += 0.5 if lit in ("0", "1", "2", "0.0", "1.0", "2.0") else 1.0
        elif a == "S":
            body = lit[1:].strip()
            rare = (len(body) >= 4 and _REGEXY.search(body) is not None
                    and string_items.get(lit, 0) <= _LIT_MAX_ITEMS)
            w += 2.0 if rare else 0.5 if body else 0.0
    return w


class _Builder:
    """Builds the index's parts from benchmark items (the fields ``Index`` takes, by name)."""

    def __init__(self, cfg: DecontamConfig, items: list[TextItem] | None, code_units: list[CodeItem] | None):
        self.cfg = cfg
        if items is None:
            items, loaded_units = load(cfg)
            code_units = loaded_units if code_units is None else code_units
        self.patterns: list[Pattern] = []
        self._pattern_anchor: list[int] = []
        self.skipped_short = 0
        seen = set()
        ngram_items: dict[int, dict] = defaultdict(dict)  # ordered: first owner in benchmark order
        defined = defined_names(code_units or [])
        n = cfg.ngram
        for bench, item, fname, text in items:
            norm = normalize(text)
            words = WORD.findall(norm)
            kind = FIELD_KIND.get((bench, fname))
            own = defined.get((bench, item), set()) if kind in ("code", "json_list") else None
            # doctest lines of a docstring are code examples (imports, plotting idioms), not its text
            ng_words = WORD.findall(normalize(_DOCTEST.sub("", text))) if kind == "docstring" else words
            hashes = ngram_hashes(ng_words, n)
            if len(hashes):
                hl = hashes.tolist()
                for i in np.flatnonzero(~low_information_windows(ng_words, n)).tolist():
                    if own is not None and len(own.intersection(ng_words[i:i + n])) < 3:
                        continue  # code n-grams of library names, keywords and loop indices are idioms
                    ngram_items[hl[i]][(bench, item, fname)] = None
            if len(norm) < cfg.min_substring_chars or len(words) < 5 or (norm, bench, item) in seen:
                self.skipped_short += len(norm) < cfg.min_substring_chars
                continue
            seen.add((norm, bench, item))
            interior = words[1:-1]
            best = anchor_offset(interior)
            anchor = int(ngram_hashes(interior[best:best + 3], 3)[0])
            self._pattern_anchor.append(anchor)
            self.patterns.append(Pattern(norm, bench, item, fname))
        # n-gram -> its first owner; kept as sorted keys + an index into ``_owners`` (searchsorted at check)
        owner_ids: dict[tuple[str, str, str], int] = {}
        keys, owner_of = [], []
        for h, owners in ngram_items.items():
            # count items per benchmark family: HumanEval/0 in humaneval and humaneval+ is one item
            if len({o[1] for o in owners}) <= cfg.ngram_max_items:
                keys.append(h)
                owner_of.append(owner_ids.setdefault(next(iter(owners)), len(owner_ids)))
        keys_arr = np.array(keys, dtype=np.uint64)
        order = np.argsort(keys_arr, kind="stable")
        self.ngram_keys = keys_arr[order]
        self._ngram_owner = np.array(owner_of, dtype=np.int64)[order]
        self._owners: list[tuple[str, str, str]] = list(owner_ids)
        self.benchmarks = sorted({b for b, *_ in items} | {u[0] for u in code_units or []})
        self._build_code_index(code_units or [] if cfg.code_rules else [])

    def _build_code_index(self, units: list[tuple[str, str, str, str, str]]) -> None:
        """One unit per distinct normalised stream (first owner in benchmark order): functions on the
        abstract stream, short functions also on the named stream, test blocks on the literal stream.
        k-grams found in more than ``code_max_items`` items are idioms and count for nobody."""
        k, cfg = self.cfg.code_ngram, self.cfg
        self.code_too_short: dict[str, int] = defaultdict(int)  # rule -> units too short to match
        self._tiny: dict[int, dict[int, CodeUnit]] = {}  # one-liners with a specific name: length -> hash -> unit
        cand: list[tuple[CodeUnit, np.ndarray]] = []
        skel_keys: list[tuple[np.ndarray, int, float, int]] = []  # (keys, item, share needed, code unit)
        import_words: list[str] = []
        seen: set[tuple[str, bytes]] = set()
        item_ids: dict[str, int] = {}

        def add(bench, item, fname, rule, mode, symbols, code) -> None:
            stream = symbol_hashes(symbols)
            if (mode, stream.tobytes()) in seen:
                return
            seen.add((mode, stream.tobytes()))
            if len(stream) < k:
                self.code_too_short[rule] += 1
                return
            cand.append((CodeUnit(bench, item, fname, rule, mode, 0, stream, 0), kgrams(stream, k)))
            unit_code[id(cand[-1][0])] = code
            item_ids.setdefault(item, len(item_ids))

        short: list[tuple[str, str, str, CodeTokens, int]] = []  # functions for the file / literal rules
        string_items: dict[str, set[tuple[str, str]]] = defaultdict(set)  # string literal -> items holding it
        unit_code: dict[int, str] = {}  # id(CodeUnit) -> its code, for the prefilter's keys
        short_code: list[str] = []
        self._tiny_names: set[str] = set()
        for bench, item, fname, kind, code in units:
            toks = code_tokens(code, "python")
            for a, lit in zip(toks.abstract, toks.literal):
                if a == "S":  # MBPP/7 and MBPP+/Mbpp/7 are one item
                    string_items[lit].add((bench.rstrip("+"), item.split("/")[-1]))
            if kind == "tests":
                add(bench, item, fname, "benchmark_test", "literal", toks.literal, code)
                if TINY_MIN <= len(toks) < k + cfg.code_min_grams - 1:  # a few asserts: whole, as written
                    h = int(kgrams(symbol_hashes(toks.named), len(toks))[0])
                    self._tiny.setdefault(len(toks), {}).setdefault(h, CodeUnit(
                        bench, item, fname, "benchmark_test", "named", 0, symbol_hashes(toks.named), 0, True))
                    self._tiny_names.update(_unit_names(toks))
            else:
                d = def_start(toks.abstract)
                if d is not None and _WHOLE_MIN <= len(toks) - d < k + cfg.code_long_grams:
                    short.append((bench, item, fname, toks, d))
                    short_code.append(code)
                add(bench, item, fname, "benchmark_code", "abstract", toks.abstract, code)
                if len(toks) < k + cfg.code_long_grams:  # short: also as written (names kept)
                    add(bench, item, fname, "benchmark_code_verbatim", "named", toks.named, code)
                if TINY_MIN <= len(toks) < k + cfg.code_min_named_grams - 1 and _specific_name(toks.named):
                    h = int(kgrams(symbol_hashes(toks.named), len(toks))[0])  # a one-liner, whole
                    self._tiny.setdefault(len(toks), {}).setdefault(h, CodeUnit(
                        bench, item, fname, "benchmark_code_verbatim", "named", 0, symbol_hashes(toks.named), 0, True))
                    self._tiny_names.update(_unit_names(toks))
        self._build_short_rules(short, {lit: len(items) for lit, items in string_items.items()})
        salt = {"abstract": np.uint64(0), "literal": np.uint64(0x5BD1E9955BD1E995),
                "named": np.uint64(0x27D4EB2F165667C5)}
        pairs = [np.stack([np.unique(g ^ salt[u.mode]), np.full(len(np.unique(g)), item_ids[u.item], np.uint64)],
                          axis=1) for u, g in cand]
        if pairs:  # idioms: (mode-salted) k-grams held by more than code_max_items distinct items
            allp = np.unique(np.concatenate(pairs), axis=0)
            keys, counts = np.unique(allp[:, 0], return_counts=True)
            idioms = keys[counts > cfg.code_max_items]
        else:
            idioms = np.empty(0, np.uint64)
        index_pairs: dict[str, list[np.ndarray]] = {"abstract": [], "literal": [], "named": []}
        self.code_units: list[CodeUnit] = []
        for u, grams in cand:
            informative = ~member(grams ^ salt[u.mode], idioms) if len(idioms) else np.ones(len(grams), bool)
            g = np.unique(grams[informative])
            min_grams = cfg.code_min_grams if u.mode != "named" else cfg.code_min_named_grams
            if len(g) < min_grams:
                self.code_too_short[u.rule] += 1
                continue
            if u.mode != "named" and len(g) >= cfg.code_long_grams:
                u.need = int(np.ceil(cfg.code_containment * len(g)))
            else:  # short: every k-gram, the whole stream in one run
                u.need, u.whole = len(g), True
                if u.rule == "benchmark_code":
                    u.rule = "benchmark_code_short"
            u.anchor = int(np.flatnonzero(informative)[0])
            index_pairs[u.mode].append(np.stack([g, np.full(len(g), len(self.code_units), np.uint64)], axis=1))
            self.code_units.append(u)
            if cfg.prefilter:  # k-gram units: the file holds (most of) the whole code, imports too
                keys, n = Prefilter.unit_keys(unit_code[id(u)])
                share = 1.0 if u.whole else SKEL_PART
                lit = Prefilter.literal_keys(unit_code[id(u)]) if u.mode == "literal" else None
                if lit is not None and len(lit) >= 3:  # test blocks: their values too, not only ``assert == [ ]``
                    skel_keys.append((lit, item_ids[u.item], 1.0 if u.whole else LIT_PART, len(self.code_units)))
                word = Prefilter.import_word(unit_code[id(u)]) if n == 0 else None
                if word is not None:
                    import_words.append(word)
                else:
                    skel_keys.append((keys, item_ids[u.item], share, len(self.code_units)))
        self._code_index = {mode: GramIndex.from_pairs(np.concatenate(p) if p else np.empty((0, 2), np.uint64))
                            for mode, p in index_pairs.items()}
        self._prefilter = None
        if cfg.prefilter:
            literals = []
            for i, word in zip(self._lit_short, self._lit_required):
                # literal-rule units match from ``def``: the skeleton from there when it says enough, else
                # the unit's longest literal word (every file is tokenized when it has neither)
                code = short_code[i]
                keys, n = Prefilter.unit_keys(code[code.find("def "):])
                if n >= 3 or word is None:
                    skel_keys.append((keys, item_ids.setdefault(short[i][1], len(item_ids)), 1.0, -1 - i))
                    if n < 3:
                        _log.debug("decontaminate: prefilter key of %d tokens for %s", n, short[i][1])
                else:
                    literals.append(word)
            self._prefilter = Prefilter.build(skel_keys, cfg.code_max_items, sorted(self._tiny_names),
                                              sorted(literals), sorted(import_words))

    def _build_short_rules(self, short: list[tuple[str, str, str, CodeTokens, int]],
                           string_items: dict[str, int]) -> None:
        """benchmark_code_file: the abstract stream of a short function from its ``def`` (leading imports
        left out), hashed whole, for files that are that function and nothing else. benchmark_code_literal:
        short functions with literal information (``_literal_weight``) on the literal stream from ``def``,
        anchored on the window holding the most literals."""
        self._whole: dict[int, CodeUnit] = {}
        self._lit_units: list[CodeUnit] = []
        self._lit_required: list[str | None] = []  # a word or number each literal-rule unit needs (prefilter)
        self._lit_short: list[int] = []  # its index in ``short``
        seen: set[bytes] = set()
        for i, (bench, item, fname, toks, d) in enumerate(short):
            abstract, literal = toks.abstract[d:], toks.literal[d:]
            unit = CodeUnit(bench, item, fname, "benchmark_code_file", "abstract", 0, symbol_hashes(abstract), 0, True)
            self._whole.setdefault(whole_hash(abstract), unit)
            self._whole.setdefault(whole_hash(literal) ^ LIT_SALT, unit)  # the item with these literals first
            if len(literal) < LIT_MIN or _literal_weight(abstract, literal, string_items) < _LIT_WEIGHT:
                continue
            lstream = symbol_hashes(literal)
            if lstream.tobytes() in seen:
                continue
            seen.add(lstream.tobytes())
            is_lit = np.array([a in ("N", "S") for a in abstract], dtype=np.int64)
            run = np.concatenate(([0], np.cumsum(is_lit)))
            at = int(np.argmax(run[LIT_ANCHOR:] - run[:-LIT_ANCHOR]))  # first window with the most literals
            self._lit_units.append(CodeUnit(bench, item, fname, "benchmark_code_literal", "literal", 0, lstream, at,
                                            True))
            self._lit_required.append(_rarest_literal(abstract, literal))
            self._lit_short.append(i)



@dataclass
class Index:
    """Everything ``check`` reads. The fields are what is stored; the ones after them are derived."""

    patterns: list[Pattern]  # substring rule, in benchmark order
    pattern_anchor: list[int]  # each pattern's anchor word 3-gram
    skipped_short: int  # texts too short for the substring rule
    ngram_keys: np.ndarray  # sorted word n-gram hashes of the n-gram rule
    ngram_owner: np.ndarray  # index into ``owners`` of each
    owners: list[tuple[str, str, str]]  # (benchmark, item, field)
    benchmarks: list[str]
    code_too_short: dict[str, int]  # rule -> units too short to match
    code_units: list[CodeUnit]  # k-gram rules, in benchmark order
    tiny: dict[int, dict[int, CodeUnit]]  # one-liners matched whole as written: length -> hash -> unit
    whole: dict[int, CodeUnit]  # benchmark_code_file: whole-stream hash -> unit
    lit_units: list[CodeUnit]  # benchmark_code_literal
    code_index: dict[str, GramIndex]  # stream mode -> k-gram -> code units
    prefilter: Prefilter | None
    anchors: dict[int, list[int]] = field(init=False)  # anchor 3-gram -> patterns
    anchor_keys: np.ndarray = field(init=False)
    need: np.ndarray = field(init=False)  # k-grams each code unit needs
    long: np.ndarray = field(init=False)  # code units matched by containment (not whole)
    lit_keys: np.ndarray = field(init=False)  # anchor 6-grams of the literal-rule units
    lit_of_key: dict[int, list[int]] = field(init=False)
    tiny_keys: list[tuple[int, np.ndarray]] = field(init=False)  # (length, sorted hashes) of ``tiny``, shortest first
    tiny_first: np.ndarray = field(init=False)  # sorted first symbols of the ``tiny`` units (where one can start)
    anchor_filter: KeyFilter = field(init=False)  # quick "surely absent" tests before the exact lookups
    ngram_filter: KeyFilter = field(init=False)
    code_filters: dict[str, KeyFilter] = field(init=False)
    _interiors: dict[int, tuple[np.ndarray, int]] = field(init=False, compare=False, repr=False)  # see ``interior``

    def __post_init__(self) -> None:
        anchors: dict[int, list[int]] = defaultdict(list)
        for i, h in enumerate(self.pattern_anchor):
            anchors[h].append(i)
        self.anchors = dict(anchors)
        self.anchor_keys = np.array(sorted(anchors), dtype=np.uint64)
        self.need = np.array([u.need for u in self.code_units], dtype=np.int64)
        self.long = np.array([not u.whole for u in self.code_units], dtype=bool)
        of_key: dict[int, list[int]] = defaultdict(list)
        for i, u in enumerate(self.lit_units):
            of_key[int(kgrams(u.stream[u.anchor:u.anchor + LIT_ANCHOR], LIT_ANCHOR)[0])].append(i)
        self.lit_keys = np.array(sorted(of_key), dtype=np.uint64)
        self.lit_of_key = dict(of_key)
        self.tiny_keys = [(n, np.array(sorted(units), dtype=np.uint64)) for n, units in sorted(self.tiny.items())]
        self.tiny_first = np.unique(np.array([u.stream[0] for units in self.tiny.values() for u in units.values()],
                                             dtype=np.uint64))
        self.anchor_filter, self.ngram_filter = KeyFilter(self.anchor_keys), KeyFilter(self.ngram_keys)
        self.code_filters = {mode: KeyFilter(g.keys) for mode, g in self.code_index.items()}
        self._interiors = {}

    def interior(self, pattern: int) -> tuple[np.ndarray, int]:
        """(hashes of a pattern's interior words, where its anchor starts among them). A file holding the pattern
        holds these words in a row (the first and last word may be parts of the file's words)."""
        if pattern not in self._interiors:
            interior = WORD.findall(self.patterns[pattern].text)[1:-1]
            self._interiors[pattern] = symbol_hashes(interior), anchor_offset(interior)
        return self._interiors[pattern]

    @classmethod
    def build(cls, cfg: DecontamConfig, items: list[TextItem] | None = None,
              code_units: list[CodeItem] | None = None) -> Index:
        """From ``items`` / ``code_units``, or from the configured benchmark files when ``items`` is None."""
        # The build allocates ~10^6 small objects and frees few: the cyclic GC would rescan them again
        # and again (~15% of the time) for no garbage. Paused while it runs, as it was after.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            b = _Builder(cfg, items, code_units)
        finally:
            if was_enabled:
                gc.enable()
        return cls(patterns=b.patterns, pattern_anchor=b._pattern_anchor, skipped_short=b.skipped_short,
                   ngram_keys=b.ngram_keys, ngram_owner=b._ngram_owner, owners=b._owners, benchmarks=b.benchmarks,
                   code_too_short=dict(b.code_too_short), code_units=b.code_units, tiny=b._tiny, whole=b._whole,
                   lit_units=b._lit_units, code_index=b._code_index, prefilter=b._prefilter)

    # -- the stored form: strings in JSON, numbers in arrays, each by name -----------------------------

    def to_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(meta, arrays): the strings and counts (JSON-able) and the numeric arrays of this index."""
        tiny = [(n, h, u) for n, units in sorted(self.tiny.items()) for h, u in units.items()]
        whole = sorted(self.whole.items())
        units = list(self.code_units) + [u for _, _, u in tiny] + [u for _, u in whole] + self.lit_units
        streams = [u.stream for u in units]
        meta = {
            "patterns": [[p.text, p.benchmark, p.item, p.field] for p in self.patterns],
            "skipped_short": self.skipped_short,
            "owners": [list(o) for o in self.owners],
            "benchmarks": self.benchmarks,
            "code_too_short": dict(self.code_too_short),
            "units": [[u.benchmark, u.item, u.field, u.rule, u.mode] for u in units],
            "n_code_units": len(self.code_units),
            "n_lit_units": len(self.lit_units),
        }
        arrays = {
            "pattern_anchor": np.array(self.pattern_anchor, dtype=np.uint64),
            "ngram_keys": self.ngram_keys, "ngram_owner": self.ngram_owner,
            "unit_need": np.array([u.need for u in units], dtype=np.int64),
            "unit_anchor": np.array([u.anchor for u in units], dtype=np.int64),
            "unit_whole": np.array([u.whole for u in units], dtype=bool),
            "unit_offsets": np.concatenate([[0], np.cumsum([len(s) for s in streams], dtype=np.int64)]
                                           ).astype(np.int64),
            "unit_streams": np.concatenate(streams).astype(np.uint64) if streams else np.empty(0, np.uint64),
            "tiny_len": np.array([n for n, _, _ in tiny], dtype=np.int64),
            "tiny_hash": np.array([h for _, h, _ in tiny], dtype=np.uint64),
            "whole_hash": np.array([h for h, _ in whole], dtype=np.uint64),
        }
        for mode, index in self.code_index.items():
            arrays[f"index_{mode}_keys"], arrays[f"index_{mode}_offsets"] = index.keys, index.offsets
            arrays[f"index_{mode}_units"] = index.units
        meta["prefilter"] = None
        if self.prefilter is not None:
            meta["prefilter"], pf_arrays = self.prefilter.to_arrays()
            arrays.update({f"prefilter_{name}": a for name, a in pf_arrays.items()})
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Index:
        """The index ``to_arrays`` gave (meta, arrays) of."""
        off, streams = arrays["unit_offsets"].tolist(), arrays["unit_streams"]
        need, anchor = arrays["unit_need"].tolist(), arrays["unit_anchor"].tolist()
        whole = arrays["unit_whole"].tolist()
        units = [CodeUnit(b, item, f, rule, mode, need[i], streams[off[i]:off[i + 1]], anchor[i], whole[i])
                 for i, (b, item, f, rule, mode) in enumerate(meta["units"])]
        n_code, n_tiny, n_whole = int(meta["n_code_units"]), len(arrays["tiny_len"]), len(arrays["whole_hash"])
        tiny: dict[int, dict[int, CodeUnit]] = {}
        for n, h, u in zip(arrays["tiny_len"].tolist(), arrays["tiny_hash"].tolist(), units[n_code:n_code + n_tiny]):
            tiny.setdefault(n, {})[h] = u
        lit_units = units[n_code + n_tiny + n_whole:]
        if len(lit_units) != int(meta["n_lit_units"]):
            raise ValueError(f"{len(lit_units)} literal-rule units stored, {meta['n_lit_units']} announced")
        pf = meta["prefilter"]
        return cls(
            patterns=[Pattern(*p) for p in meta["patterns"]],
            pattern_anchor=arrays["pattern_anchor"].tolist(),
            skipped_short=int(meta["skipped_short"]),
            ngram_keys=arrays["ngram_keys"], ngram_owner=arrays["ngram_owner"],
            owners=[tuple(o) for o in meta["owners"]],
            benchmarks=list(meta["benchmarks"]),
            code_too_short=dict(meta["code_too_short"]),
            code_units=units[:n_code],
            tiny=tiny,
            whole=dict(zip(arrays["whole_hash"].tolist(), units[n_code + n_tiny:n_code + n_tiny + n_whole])),
            lit_units=lit_units,
            code_index={mode: GramIndex.from_arrays(arrays[f"index_{mode}_keys"], arrays[f"index_{mode}_offsets"],
                                                    arrays[f"index_{mode}_units"])
                        for mode in ("abstract", "literal", "named")},
            prefilter=None if pf is None else Prefilter.from_arrays(
                pf, {name[len("prefilter_"):]: a for name, a in arrays.items() if name.startswith("prefilter_")}),
        )
