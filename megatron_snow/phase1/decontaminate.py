"""Benchmark decontamination: text rules on prompts and solutions, code rules on normalised code.

Rules, tried in this order; the first that fires is the drop reason (the funnel counts each), and
the drop records benchmark, item, field and the matched text:
  benchmark_substring  a docstring / solution, lower-cased with whitespace runs collapsed, is a
                       substring of the file (re-indented pastes match). Every pattern is anchored
                       on one of its interior word 3-grams; only files holding an anchor are searched.
  benchmark_ngram      the file shares a word 10-gram with one benchmark item: of a prompt (doctest
                       lines left out), or of a solution when the 10-gram holds 3 names the solution
                       defines (``for i in range rows``, ``import matplotlib pyplot as plt`` are idioms).
  benchmark_code       code rules compare token-type streams: identifiers, strings and numbers become
                       I / S / N; keywords, builtins, attribute names and operators stay; comments,
                       layout, docstrings, parentheses, trailing commas and a ``def``'s type hints go.
                       A file holding >= ``code_containment`` of the 10-token k-grams of a benchmark function (prompt
                       header + solution) matches, so renamed, reformatted and embedded copies do.
  benchmark_code_short a function of fewer than ``code_long_grams`` k-grams: all of them, the whole
                       stream in one run of the file. Under ``code_min_grams`` k-grams (15 tokens) a
                       renamed function is ordinary code (``return max(a) - min(a)``): not matched so.
  benchmark_code_verbatim  a short function as written (names kept, layout free): the whole stream;
                       one-liners too when the function's name is specific (``count_charac``).
  benchmark_test       test blocks (HumanEval ``check``, MBPP asserts, BigCodeBench unittest classes)
                       on the stream with numbers and strings kept as values, as for functions.
  benchmark_code_file  the file is a short benchmark function and nothing else (leading imports,
                       comments, docstrings and layout aside): its whole abstract stream from ``def``
                       equals the function's. Renamed one-liners (``def f(x): return sum(x)``) are
                       ordinary code inside a file; a file that is only that is a pasted solution.
  benchmark_code_literal  a short function (9+ tokens) whose literals carry information (a rare regex
                       or message string, numbers other than 0 / 1 / 2: ``return n % 11 == 0``, not
                       ``x % 2 == 0``), whole and contiguous on the literal stream (names abstracted,
                       values kept) anywhere in the file; strings found in more than 3 benchmark items
                       (``'utf-8'``, MBPP+'s ``'invalid inputs'``) count as common.
k-grams found in more than ``code_max_items`` benchmark items are idioms and count for nobody.
Python is read with ``tokenize``; other languages (and text tokenize rejects) with a generic lexer
that gives the same stream on Python code.
"""
from __future__ import annotations

import ast
import builtins
import dataclasses
import gc
import hashlib
import io
import json
import keyword
import logging
import os
import re
import tokenize
import warnings
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xxhash

from megatron_snow.atomic import atomic_write_bytes, atomic_write_text
from megatron_snow.benchmarks import benchmark_path, read_benchmark, resolve_benchmarks_dir

_log = logging.getLogger(__name__)

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_DOCTEST = re.compile(r"(?m)^[ \t]*(?:>>>|\.\.\.)[^\n]*$")
_DOCSTRING = re.compile(r'("""|\'\'\')(.*?)\1', re.DOTALL)
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class DecontamConfig:
    enabled: bool = True
    benchmarks_dir: str | None = None  # directory of <name>.jsonl.gz files; None: megatron_snow.benchmarks default
    benchmarks: list[str] = field(default_factory=list)  # file stems to use; empty: every known file found
    online: bool = False  # fetch benchmarks missing locally with `datasets`
    ngram: int = 10
    ngram_max_items: int = 10  # n-grams found in more benchmark items than this are boilerplate
    min_substring_chars: int = 50  # shorter docstrings/solutions would match ordinary code
    require_benchmarks: bool = True  # error if no benchmark data is found
    code_rules: bool = True  # benchmark_code / benchmark_code_short / benchmark_test on normalised code
    code_ngram: int = 10  # tokens per k-gram of the normalised stream
    # share of a function's / test block's k-grams the file must hold (0.7: a copy with a line inserted, a
    # loop rewritten or a helper pulled out still matches; no more false positives than 0.8 on 1,500 real files)
    code_containment: float = 0.7
    code_long_grams: int = 20  # functions with fewer k-grams need all of them, contiguous
    code_min_grams: int = 6  # functions / test blocks with fewer k-grams (code_ngram + 5 tokens) take no part
    code_max_items: int = 10  # k-grams found in more benchmark items than this are idioms, left out
    # tokenize only files whose skeleton shares keys with a code unit (same verdicts); off: on real code it
    # skips too few files to pay for itself yet (bench/bench_decontam.py: 1.24 vs 1.34 MB/s per core)
    prefilter: bool = False
    code_min_named_grams: int = 3  # short functions as written (names kept): at least code_ngram + 2 tokens
    # built indexes are kept here, keyed by the benchmark files' content + these settings;
    # None: $XDG_CACHE_HOME (or ~/.cache)/megatron_snow/decontam; "": not kept on disk
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.ngram < 1 or self.ngram_max_items < 1 or self.min_substring_chars < 1:
            raise ValueError("ngram, ngram_max_items and min_substring_chars must be >= 1")
        if not 2 <= self.code_ngram <= 64:
            raise ValueError(f"code_ngram must be in [2, 64], got {self.code_ngram}")
        if not 0.5 <= self.code_containment <= 1.0:
            raise ValueError(f"code_containment must be in [0.5, 1], got {self.code_containment}")
        if self.code_min_grams < 1 or self.code_long_grams < self.code_min_grams:
            raise ValueError(f"need 1 <= code_min_grams <= code_long_grams, got {self.code_min_grams}, "
                             f"{self.code_long_grams}")
        if self.code_min_named_grams < 1:
            raise ValueError(f"code_min_named_grams must be >= 1, got {self.code_min_named_grams}")
        if self.code_max_items < 1:
            raise ValueError(f"code_max_items must be >= 1, got {self.code_max_items}")


# file stem -> (benchmark, id field or None, [(field, kind)]); kind: docstring | text | code | json_list
# (text rules; code and json_list also code rules, after the item's docstring-kind prompt) | tests |
# tests_list (test code: code rules only)
BENCHMARK_FIELDS: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    "humaneval": ("humaneval", "task_id", [("prompt", "docstring"), ("canonical_solution", "code"), ("test", "tests")]),
    "humanevalplus": ("humaneval+", "task_id", [("prompt", "docstring"), ("canonical_solution", "code"),
                                                ("test", "tests")]),
    "mbpp": ("mbpp", "task_id", [("text", "text"), ("code", "code"), ("test_list", "tests_list")]),
    "mbppplus": ("mbpp+", "task_id", [("prompt", "docstring"), ("canonical_solution", "code"),
                                      ("assertion", "tests")]),
    "bigcodebench": ("bigcodebench", "task_id", [("complete_prompt", "docstring"), ("canonical_solution", "code"),
                                                 ("test", "tests")]),
    "evoeval_difficult": ("evoeval_difficult", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "evoeval_creative": ("evoeval_creative", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "evoeval_subtle": ("evoeval_subtle", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "evoeval_combine": ("evoeval_combine", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "evoeval_tool_use": ("evoeval_tool_use", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "evoeval_verbose": ("evoeval_verbose", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "evoeval_concise": ("evoeval_concise", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "gsm8k_test": ("gsm8k", None, [("question", "text"), ("answer", "text")]),
    "apps_test": ("apps", "problem_id", [("question", "text"), ("solutions", "json_list")]),
    "ds1000": ("ds1000", "task_id", [("prompt", "text"), ("reference_code", "code")]),
}

# Hub ids for `online: true` (stem -> (dataset id, config, split)).
HUB_IDS = {
    "humaneval": ("openai_humaneval", None, "test"),
    "mbpp": ("mbpp", "full", "test"),
    "bigcodebench": ("bigcode/bigcodebench", None, "v0.1.0_hf"),
    "gsm8k_test": ("gsm8k", "main", "test"),
    "apps_test": ("codeparrot/apps", "all", "test"),
    "ds1000": ("xlangai/DS-1000", None, "test"),
}


# N-grams made only of these say nothing about a benchmark item (month lists, digit runs, alphabets).
_COMMON = frozenset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec monday tuesday wednesday thursday friday saturday "
    "sunday mon tue wed thu fri sat sun zero one two three four five six seven eight nine ten eleven "
    "twelve true false none null".split())


def _low_information(words: list[str]) -> bool:
    """Half or more of the words trivial (digits, 1-2 letters, month/number words): such n-grams
    come from generic literals (``np array 1 2 3 4 5 6 7 8``), not from a benchmark item."""
    return 2 * sum(w.isdigit() or len(w) <= 2 or w in _COMMON for w in words) >= len(words)


def _low_information_windows(words: list[str], n: int) -> np.ndarray:
    """``_low_information`` of every n-word window of ``words`` at once (one flag per word, a running sum)."""
    trivial = np.fromiter((w.isdigit() or len(w) <= 2 or w in _COMMON for w in words), dtype=np.int64,
                          count=len(words))
    run = np.concatenate(([0], np.cumsum(trivial)))
    return 2 * (run[n:] - run[:-n]) >= n


def normalize(text: str) -> str:
    return _WS.sub(" ", text.lower()).strip()


def _ngram_hashes(words: list[str], n: int) -> np.ndarray:
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    th = _symbol_hashes(words)  # xxh64 of each word, remembered across files
    m = len(words) - n + 1
    with np.errstate(over="ignore"):
        h = th[:m].copy()
        for k in range(1, n):
            h = h * _MIX + th[k:k + m]
    return h


def _member(x: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """np.isin for a sorted key array, by binary search (np.isin re-sorts the keys on every call)."""
    idx = np.minimum(np.searchsorted(sorted_keys, x), len(sorted_keys) - 1)
    return sorted_keys[idx] == x


@dataclass
class Pattern:
    text: str  # normalised
    benchmark: str
    item: str
    field: str


def _texts(value, kind: str) -> list[str]:
    if value is None:
        return []
    if kind == "docstring":
        return [m.group(2) for m in _DOCSTRING.finditer(str(value))] or [str(value)]
    if kind == "json_list":
        try:
            items = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            return [str(value)]
        return [str(x) for x in items] if isinstance(items, list) else [str(items)]
    return [str(value)]


TEXT_KINDS = ("docstring", "text", "code", "json_list")
_MAX_TEST_CHARS = 3000


def load_benchmark_items(cfg: DecontamConfig) -> list[tuple[str, str, str, str]]:
    """(benchmark, item id, field, text) for the text rules, for every configured benchmark found."""
    return _load(cfg)[0]


def load_code_units(cfg: DecontamConfig) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, item id, field, kind, code) for the code rules: kind "function" (the item's prompt,
    when it is a docstring-kind field, then the solution) or "tests" (its test code)."""
    return _load(cfg)[1]


def _load(cfg: DecontamConfig):
    rows: list[tuple[str, str, str, str]] = []
    units: list[tuple[str, str, str, str, str]] = []
    stems = cfg.benchmarks or list(BENCHMARK_FIELDS)
    unknown = [s for s in stems if s not in BENCHMARK_FIELDS]
    if unknown:
        raise ValueError(f"decontaminate.benchmarks: unknown {unknown} (known: {sorted(BENCHMARK_FIELDS)})")
    found = []
    for stem in stems:
        bench, id_field, fields = BENCHMARK_FIELDS[stem]
        records = None
        path = benchmark_path(cfg.benchmarks_dir, stem)
        if path is not None:
            records = read_benchmark(path)
        if records is None and cfg.online and stem in HUB_IDS:
            import datasets

            hub_id, conf, split = HUB_IDS[stem]
            records = list(datasets.load_dataset(hub_id, conf, split=split))
        if records is None:
            if cfg.benchmarks:  # asked for by name: must exist
                raise FileNotFoundError(f"decontaminate: benchmark '{stem}' not found in {resolve_benchmarks_dir(cfg.benchmarks_dir)}"
                                        + ("" if cfg.online else " (online: false)"))
            continue
        found.append(stem)
        for i, r in enumerate(records):
            item = str(r.get(id_field)) if id_field and r.get(id_field) is not None else f"{bench}/{i}"
            prompt = "".join(str(r.get(f) or "") for f, k in fields if k == "docstring")
            for fname, kind in fields:
                value = r.get(fname)
                if kind in TEXT_KINDS:
                    for t in _texts(value, kind):
                        if t.strip():
                            rows.append((bench, item, fname, t))
                if kind in ("code", "json_list"):
                    for t in _texts(value, kind):
                        if t.strip():  # EvoEval's prompts lack the final newline: the docstring ends a line
                            sep = "\n" if prompt and not prompt.endswith("\n") else ""
                            units.append((bench, item, fname, "function", prompt + sep + t))
                elif kind in ("tests", "tests_list") and value:
                    t = "\n".join(map(str, value)) if kind == "tests_list" else str(value)
                    if len(t) > _MAX_TEST_CHARS:  # the head of a long test block identifies it
                        t = t[:t.rfind("\n", 0, _MAX_TEST_CHARS) + 1 or _MAX_TEST_CHARS]
                    units.append((bench, item, fname, "tests", t))
    if not found and cfg.require_benchmarks:
        raise FileNotFoundError(f"decontaminate: no benchmark files found in {str(resolve_benchmarks_dir(cfg.benchmarks_dir))!r}"
                                " (set decontaminate.benchmarks_dir, or online: true)")
    return rows, units


# -- code normalisation ---------------------------------------------------------------------------
# A token-type stream: identifiers -> "I", strings -> "S", numbers -> "N" (in literal mode, for test
# code: their values), keywords / builtins / attribute names / operators kept; comments, layout,
# docstrings, ";", parentheses (formatters add and drop them) and trailing commas dropped. Both lexers give the same stream on Python code.

_KEEP_NAMES = frozenset(keyword.kwlist) | frozenset(n for n in dir(builtins) if not n.startswith("_"))
_CLOSERS = frozenset(")]}")
_OPENERS = frozenset("([{")
_PARENS = frozenset("()")
_LEX_STR = (r"(?P<str>(?:[rRbBuUfF]{1,2})?(?:\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''"
            r"|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`(?:\\.|[^`\\])*`))")
_LEX_REST = (r"|(?P<num>0[xXoObB][0-9a-fA-F_]+[lLuU]*|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d+)?[jJlLuUfF]*)"
             r"|(?P<name>[^\W\d][\w$]*|\$[\w$]*)"
             r"|(?P<op>\*\*=?|//=?|>>=?|<<=?|->|:=|\.\.\.|[-+*/%&|^@<>=!]=|[^\s\w])")
_LEX_PY = re.compile(_LEX_STR + r"|(?P<comment>#[^\n]*)" + _LEX_REST)  # '//' is floor division
_LEX_C = re.compile(_LEX_STR + r"|(?P<comment>#[^\n]*|//[^\n]*|/\*[\s\S]*?\*/)" + _LEX_REST)
_C_LIKE = frozenset({"c", "c++", "cpp", "c#", "csharp", "java", "javascript", "typescript", "go", "rust", "php",
                     "swift", "kotlin", "scala", "cuda", "objective-c", "dart"})


class CodeTokens:
    """Parallel lists: abstract symbol, literal symbol (values of strings/numbers), start, end position
    (a character offset, or a (row, col) pair that ``offset`` turns into one)."""

    __slots__ = ("abstract", "literal", "named", "start", "end", "offset", "_header", "_depth", "_skip")

    def __init__(self, offset=None):
        self.abstract: list[str] = []
        self.literal: list[str] = []
        self.named: list[str] = []  # names kept too: the stream of a verbatim or reformatted copy
        self.start: list = []
        self.end: list = []
        self.offset = offset or (lambda pos: pos)
        self._header = False  # inside a ``def`` header (to its final ``:``): annotations are dropped
        self._depth = 0  # bracket depth inside the header
        self._skip = 0  # inside an annotation (see ``_annotation``)

    def add(self, sym: str, lit: str, a: int, b: int, name: str = "") -> None:
        if self._header and self._annotation(sym):
            return
        if sym in _CLOSERS and self.abstract and self.abstract[-1] == ",":  # trailing comma: layout
            self.abstract.pop(), self.literal.pop(), self.named.pop(), self.start.pop(), self.end.pop()
        elif sym == "=" and self.abstract and self.abstract[-1] == ",":  # ``a, b, = b, a``
            self.abstract.pop(), self.literal.pop(), self.named.pop(), self.start.pop(), self.end.pop()
        if sym in _PARENS:  # formatters add and drop redundant parentheses: they carry no signal
            return
        if sym == "def":
            self._header, self._depth, self._skip = True, 0, 0
        self.abstract.append(sym)
        self.literal.append(lit)
        self.named.append(lit if sym != "I" else name)
        self.start.append(a)
        self.end.append(b)

    def _annotation(self, sym: str) -> bool:
        """Type hints say nothing about what a function does, and copies add or drop them: in a ``def``
        header, a parameter's ``: T`` and the ``-> T`` are left out. True: drop ``sym``.
        ``_skip``: 0 none, 1 a parameter's annotation (to ``,`` ``=`` or ``)`` at depth 1),
        2 the return's (to ``:``)."""
        if sym in _OPENERS:
            self._depth += 1
            return self._skip > 0
        if sym in _CLOSERS:
            self._depth -= 1
            if self._skip == 1 and self._depth == 0:  # ``(x: T)``: the parameter list ends
                self._skip = 0
            return self._skip > 0
        if self._skip == 1:
            if self._depth == 1 and sym in (",", "="):
                self._skip = 0
                return False
            return True
        if self._skip == 2:
            if self._depth == 0 and sym == ":":
                self._header, self._skip = False, 0
                return False
            return True
        if self._depth == 1 and sym == ":":
            self._skip = 1
            return True
        if self._depth == 0 and sym == "->":
            self._skip = 2
            return True
        if self._depth == 0 and sym == ":":
            self._header = False
        return False

    def name(self, text: str, a: int, b: int) -> None:
        sym = text if text in _KEEP_NAMES or (self.abstract and self.abstract[-1] == ".") else "I"
        self.add(sym, sym, a, b, text)

    def __len__(self) -> int:
        return len(self.abstract)


_STR_BODY = re.compile(r"^[rRbBuUfF]{0,2}(\"\"\"|'''|\"|'|`)(.*)\1$", re.DOTALL)


def _literal_value(text: str, kind: str) -> str:
    """A literal as the literal stream sees it: a string's body whatever its quotes, a number's digits.
    A non-raw Python string with escapes is read for its value: ``r"\\b\\w"`` and ``'\\\\b\\\\w'`` are one string."""
    if kind == "N":
        return text.lower().replace("_", "")
    m = _STR_BODY.match(text)
    if m is None:
        return "S" + text
    body = m.group(2)
    if "\\" in body and "r" not in text[:m.start(1)].lower() and m.group(1) != "`":
        try:
            with warnings.catch_warnings():  # "\\d": an invalid escape warns, and stays as written
                warnings.simplefilter("ignore")
                value = ast.literal_eval(text)
            body = value if isinstance(value, str) else body
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return "S" + body


def python_tokens(text: str) -> CodeTokens | None:
    """The stream from Python's ``tokenize``; None when the text is not Python it can read."""
    def off(rc: tuple[int, int]) -> int:  # only for the reported match
        line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        r, c = rc
        return line_starts[r - 1] + c if r - 1 < len(line_starts) else len(text)

    try:
        raw = [t for t in tokenize.generate_tokens(io.StringIO(text).readline)
               if t.type not in (tokenize.NL, tokenize.COMMENT)]
    except (tokenize.TokenError, SyntaxError, ValueError):
        return None
    out = CodeTokens(off)
    at_stmt_start = True
    i = 0
    while i < len(raw):
        t = raw[i]
        if t.type in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            at_stmt_start = True
            i += 1
            continue
        if t.type == tokenize.ERRORTOKEN:
            if t.string.strip():  # a stray character ($, ?, an unclosed quote): not Python
                return None
            i += 1
            continue
        if t.type == tokenize.STRING and at_stmt_start:  # a string statement (docstring): drop
            j = i
            while j < len(raw) and raw[j].type == tokenize.STRING:
                j += 1
            if j == len(raw) or raw[j].type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                i = j
                continue
        at_stmt_start = False
        a, b = t.start, t.end
        if t.type == tokenize.NAME:
            out.name(t.string, a, b)
        elif t.type == tokenize.NUMBER:
            out.add("N", _literal_value(t.string, "N"), a, b)
        elif t.type == tokenize.STRING:
            out.add("S", _literal_value(t.string, "S"), a, b)
        elif t.type == tokenize.OP and t.string != ";":
            out.add(t.string, t.string, a, b)
        i += 1
    return out


def generic_tokens(text: str, c_comments: bool = False) -> CodeTokens:
    """The stream from one regular expression, for any language: ``#`` comments, and ``//``, ``/* */``
    when ``c_comments``. On Python code it gives what ``python_tokens`` gives (docstrings: triple-quoted
    strings alone on their line, or any string alone on the line after a ``:``)."""
    out = CodeTokens()
    for m in (_LEX_C if c_comments else _LEX_PY).finditer(text):
        kind, tok, a, b = m.lastgroup, m.group(), m.start(), m.end()
        if kind == "comment":
            continue
        if kind == "str":
            line_start = text.rfind("\n", 0, a) + 1
            nl = text.find("\n", b)
            rest = text[b:nl if nl >= 0 else len(text)].strip()
            alone = not text[line_start:a].strip() and (not rest or rest.startswith("#"))
            if alone and (tok.endswith(('"""', "'''")) or not out.abstract or out.abstract[-1] == ":"):
                continue
            out.add("S", _literal_value(tok, "S"), a, b)
        elif kind == "num":
            out.add("N", _literal_value(tok, "N"), a, b)
        elif kind == "name":
            out.name(tok, a, b)
        elif tok != ";":
            out.add(tok, tok, a, b)
    return out


def code_tokens(text: str, language: str | None = None) -> CodeTokens:
    """Python's tokenize for Python (or unknown-language) text it can read, else the generic lexer."""
    lang = (language or "").lower()
    if lang in ("", "python", "jupyter"):  # notebooks reach phase 1 as their Python script
        toks = python_tokens(text)
        if toks is not None:
            return toks
    return generic_tokens(text, c_comments=lang in _C_LIKE)


_SYM_CACHE: dict[str, int] = {}


def _symbol_hashes(symbols: list[str]) -> np.ndarray:
    cache = _SYM_CACHE
    if len(cache) > 1 << 20:
        cache.clear()
    for sym in set(symbols).difference(cache):
        cache[sym] = xxhash.xxh64_intdigest(sym.encode("utf-8", "surrogatepass"))
    return np.fromiter(map(cache.__getitem__, symbols), dtype=np.uint64, count=len(symbols))


def _kgrams(h: np.ndarray, k: int) -> np.ndarray:
    if len(h) < k:
        return np.empty(0, dtype=np.uint64)
    m = len(h) - k + 1
    with np.errstate(over="ignore"):
        g = h[:m].copy()
        for j in range(1, k):
            g = g * _MIX + h[j:j + m]
    return g


@dataclass
class CodeUnit:
    benchmark: str
    item: str
    field: str
    rule: str  # benchmark_code | benchmark_code_short | benchmark_code_verbatim | benchmark_test
    mode: str  # the stream it is matched on: abstract (functions) | named (short functions) | literal (tests)
    need: int  # informative k-grams the file must hold
    stream: np.ndarray  # symbol hashes (kept for the contiguous check of short functions)
    anchor: int  # offset in ``stream`` of an informative k-gram
    whole: bool = False  # short: every k-gram, the whole stream in one run of the file


class _GramIndex:
    """k-gram hash -> the units holding it (CSR arrays), for one stream mode."""

    def __init__(self, pairs: np.ndarray):
        arr = np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
        if len(arr):
            self.keys, starts = np.unique(arr[:, 0], return_index=True)
        else:
            self.keys, starts = np.empty(0, np.uint64), np.empty(0, np.int64)
        self.offsets = np.append(starts, len(arr)).astype(np.int64)
        self.units = arr[:, 1].astype(np.int64)

    @classmethod
    def from_arrays(cls, keys: np.ndarray, offsets: np.ndarray, units: np.ndarray) -> "_GramIndex":
        self = cls.__new__(cls)
        self.keys, self.offsets, self.units = keys.astype(np.uint64), offsets.astype(np.int64), units.astype(np.int64)
        return self

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


_INDEX_CACHE: dict[str, dict] = {}
_TINY_MIN = 6  # one-liner solutions: at least this many tokens and a specific function name


def _line_end(text: str, i: int) -> int:
    j = text.find("\n", i)
    return len(text) if j < 0 else j


def _specific_name(named: list[str]) -> bool:
    """A one-liner is matched as written only when the function it defines has a name nobody writes by
    chance (8+ characters with an underscore or inner capital: ``count_charac``, ``Find_Max``), so
    ``def maximum(a, b): return max(a, b)`` in ordinary code is never flagged."""
    if len(named) < 2 or named[0] != "def":
        return False
    name = named[1]
    return len(name) >= 8 and ("_" in name.strip("_") or any(c.isupper() for c in name[1:]))


_IMPORT_TAIL = frozenset({"I", ".", ",", "as", "import", "*"})
_WHOLE_MIN = 7  # benchmark_code_file: ``def I I : return sum I`` at least; ``def I I : return I`` is nothing
_LIT_MIN = 9  # benchmark_code_literal: ``def I I : return I % N11 == N0`` at least
_LIT_ANCHOR = 6  # tokens of the anchor window (the one holding the most literals) of a literal-rule function
_LIT_WEIGHT = 1.5  # literal information a short function needs for benchmark_code_literal
_LIT_MAX_ITEMS = 3  # a string literal found in more benchmark items than this is common ('utf-8', ', ')
_REGEXY = re.compile(r"[\\()\[\]{}*+?^$| %]")


def _def_start(symbols: list[str]) -> int | None:
    """Offset of the ``def`` that follows the leading import statements, or None when the code is not
    imports then a function (a script, a class, a decorated function)."""
    i = 0
    while i < len(symbols) and symbols[i] in ("import", "from"):
        i += 1
        while i < len(symbols) and symbols[i] in _IMPORT_TAIL:
            i += 1
    return i if i < len(symbols) and symbols[i] == "def" else None


_LIT_SALT = 0x5BD1E9955BD1E995


def _whole_hash(symbols: list[str]) -> int:
    return int(_kgrams(_symbol_hashes(symbols), len(symbols))[0])


def _unit_names(toks: CodeTokens) -> set[str]:
    """The longest identifier of a unit matched whole as written: a file holding the unit holds it."""
    names = [n for a, n in zip(toks.abstract, toks.named) if a == "I"]
    return {max(names, key=len)} if names else set()


def _rarest_literal(abstract: list[str], literal: list[str]) -> str | None:
    """The longest word or number (not 0 / 1 / 2) among a short function's literals: a file holding the
    function holds it as a word of its text. None when it has none."""
    words = [w for a, lit in zip(abstract, literal) if a in ("N", "S")
             for w in _WORD.findall(lit[1:] if a == "S" else lit) if w not in ("0", "1", "2")]
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
_FIELD_KIND = {(bench, f): kind for bench, _, fields in BENCHMARK_FIELDS.values() for f, kind in fields}


def _names_in(code: str) -> set[str] | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name.lower())
        elif isinstance(n, ast.arg):
            names.add(n.arg.lower())
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id.lower())
    return names


def _defined_names(units: list[tuple[str, str, str, str, str]]) -> dict[tuple[str, str], set[str]]:
    """(benchmark, item) -> lower-cased names (of 3+ characters) its own code defines: functions,
    classes, parameters, assigned variables. A word 10-gram of a solution counts only when it holds
    three of them; library names (``plt``, ``default_backend``) and ``for i in range`` do not."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    parsed: dict[str, set[str] | None] = {}  # the same code in several benchmarks: parsed once
    for bench, item, _, kind, code in units:
        if kind != "function":
            continue
        if code not in parsed:
            parsed[code] = _names_in(code)
        if parsed[code] is None:
            continue
        out[(bench, item)].update(parsed[code])
    return {k: {x for x in v if len(x) >= 3 and x not in _KEEP_NAMES and x != "self"} for k, v in out.items()}


INDEX_VERSION = 2  # bump when the index's content or on-disk layout changes
_SOURCE_SHA = None


def _source_sha() -> str:
    """This module's source: a rule changed without a version bump still invalidates cached indexes."""
    global _SOURCE_SHA
    if _SOURCE_SHA is None:
        with open(__file__, "rb") as f:
            _SOURCE_SHA = hashlib.sha256(f.read()).hexdigest()
    return _SOURCE_SHA


def _file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def index_key(cfg: DecontamConfig) -> str | None:
    """sha256 of what the index is built from: the content of every benchmark file read, the settings
    (not the folder or the cache location) and the index format (version + this module's source).
    None when some benchmark would come from the Hub (``online``): such an index is not cached."""
    stems = cfg.benchmarks or list(BENCHMARK_FIELDS)
    files = []
    for stem in stems:
        p = benchmark_path(cfg.benchmarks_dir, stem) if stem in BENCHMARK_FIELDS else None
        if p is None:
            if cfg.online:
                return None
            continue
        files.append((stem, p.name, _file_sha256(p)))
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("benchmarks_dir", "cache_dir")}
    blob = json.dumps({"version": INDEX_VERSION, "source": _source_sha(), "settings": settings, "files": files},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def cache_dir(cfg: DecontamConfig) -> Path | None:
    """Where built indexes are kept: ``cache_dir``; None: $XDG_CACHE_HOME (or ~/.cache)/megatron_snow/decontam;
    "": no on-disk cache."""
    if cfg.cache_dir == "":
        return None
    if cfg.cache_dir is not None:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "megatron_snow" / "decontam"


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz with fixed timestamps: equal arrays give equal bytes, so ranks writing the same index at
    once write the same file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            one = io.BytesIO()
            np.lib.format.write_array(one, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME), one.getvalue())
    return buf.getvalue()


def _meta_text(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def _write_cache(directory: Path, key: str, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    """``KEY.npz`` (arrays) then ``KEY.json`` (strings and counts, the npz's sha256, its own sha256):
    the json is written last, so a complete json names a complete npz. Both written atomically."""
    data = _npz_bytes(arrays)
    text = _meta_text(meta)
    head = {"version": INDEX_VERSION, "key": key, "npz_sha256": hashlib.sha256(data).hexdigest(),
            "meta_sha256": hashlib.sha256(text.encode()).hexdigest()}
    atomic_write_bytes(directory / f"{key}.npz", data)
    atomic_write_text(directory / f"{key}.json", json.dumps(head, sort_keys=True) + "\n" + text + "\n")
    _prune(directory, keep=CACHE_KEEP)


CACHE_KEEP = 8  # entries (~25 MB each for every shipped benchmark) kept; least recently used go first


def _prune(directory: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used entries (a load touches its json)."""
    entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime_ns if p.exists() else 0, reverse=True)
    for old in entries[keep:]:
        old.unlink(missing_ok=True)  # json first: a half-removed entry is never taken for whole
        old.with_suffix(".npz").unlink(missing_ok=True)


def _read_cache(directory: Path, key: str) -> tuple[dict, dict[str, np.ndarray]] | None:
    """(meta, arrays) of a complete, intact cached index; None when missing. A damaged one (checksum,
    key or parse mismatch) is reported and ignored: the caller rebuilds it. Never unpickles."""
    jpath, npath = directory / f"{key}.json", directory / f"{key}.npz"
    if not jpath.is_file():
        return None
    try:
        head_line, text = jpath.read_text(encoding="utf-8").split("\n", 1)
        head = json.loads(head_line)
        text = text.rstrip("\n")
        if head.get("version") != INDEX_VERSION or head.get("key") != key:
            raise ValueError("key or version mismatch")
        if hashlib.sha256(text.encode()).hexdigest() != head["meta_sha256"]:
            raise ValueError("metadata checksum mismatch")
        data = npath.read_bytes()
        if hashlib.sha256(data).hexdigest() != head["npz_sha256"]:
            raise ValueError("array checksum mismatch")
        meta = json.loads(text)
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        try:
            os.utime(jpath)  # recently used: kept by _prune
        except OSError:
            pass
        return meta, arrays
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        _log.warning("decontaminate: cached index %s is damaged (%s); rebuilding it", jpath, e)
        return None


# -- the prefilter: which files pay for normalisation (``prefilter: true``) ---------------------------
# A file's skeleton: its keywords, builtins, attribute names and operators in order, every other name or
# number as ``_``, read with regular expressions after strings, comments, import statements and ``def``
# headers (so type hints) are blanked; parentheses, commas and colons left out. Renaming, reformatting,
# comments, docstrings and type hints leave it as it was, as they leave the normalised stream. Each code
# unit keeps its skeleton's _SKEL-grams (the whole skeleton when shorter) but those of more than
# ``code_max_items`` items; a test block also the words of its literals. A file is tokenized when it
# holds all keys of a unit matched whole, half of those of a unit matched by containment (and half of a
# test block's literal words), a name a one-liner rule needs, a word of a literal-rule unit with a short
# skeleton, or when it is short (fewer names than a short benchmark function alone could have).
# Measured (bench/bench_decontam.py --mb 8, standard library and site-packages): the same verdicts, but
# 384 of 551 files still pass and the skeleton costs more than the skipped tokenizing saves (1.24 MB/s per
# core with it, 1.34 without): off by default.

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
    code = (_SKEL_BLANK_C if (language or "").lower() in _C_LIKE else _SKEL_BLANK).sub(" ", text)
    code = _SKEL_HEADER.sub("def :", code)
    if not imports:
        code = _SKEL_IMPORT.sub(" ", code)
    found = _SKEL_TOKEN.findall(code)
    keep = _KEEP_NAMES
    return [o or (w if d or w in keep else "_") for d, w, o in found], [w for _, w, _ in found if w]


_LIT_KEY_SALT = np.uint64(0x9E6C63D0676A9A99)


def _literal_word_keys(text: str) -> np.ndarray:
    words = _WORD.findall(" ".join(_SKEL_STRING.findall(text)))
    return np.unique(_symbol_hashes(words)) ^ _LIT_KEY_SALT if words else np.empty(0, np.uint64)


_SKEL_PART = 0.5  # share of its skeleton keys a file must hold for a unit matched by containment
_LIT_PART = 0.5  # share of its literal words a file must hold for a test block matched by containment


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
        rare = k[~_member(k, idioms)] if len(idioms) and len(k) else k
        out.append(rare if len(rare) else k)
    return out


class Prefilter:
    """Which files the code rules need to tokenize (see above): a file passes when it holds, for some code
    unit, all of its skeleton keys (a unit matched whole) or ``_SKEL_PART`` of them (by containment), or
    a name / literal / word a short rule needs, or when it is short."""

    def __init__(self, index: _GramIndex, need: np.ndarray, group: np.ndarray, lengths: list[int], names: list[str],
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
        index = _GramIndex(np.concatenate(pairs) if pairs else np.empty((0, 2), np.uint64))
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
        return (_kgrams(_symbol_hashes(skel), n) ^ np.uint64(n) if n else np.empty(0, np.uint64)), n

    def passes(self, text: str, language: str | None) -> bool:
        """False only when no code rule can fire on ``text``."""
        if self.always:
            return True
        skel, words = skeleton(text, language)
        if len(words) < _SKEL_SHORT_FILE:
            return True
        if self.names and not self.names.isdisjoint(words):
            return True
        if self.literals and not self.literals.isdisjoint(_WORD.findall(" ".join(_SKEL_STRING.findall(text)))):
            return True
        if self.words and not self.words.isdisjoint(_WORD.findall(text)):
            return True
        h = _symbol_hashes(skel)
        grams = [_kgrams(h, n) ^ np.uint64(n) for n in self.lengths if len(h) >= n] + [_literal_word_keys(text)]
        units, _ = self.index.hits(np.unique(np.concatenate(grams)))
        if not len(units):
            return False
        held = np.bincount(units, minlength=len(self.need)) >= self.need
        return bool((np.bincount(self.group, weights=held, minlength=len(self._group_size)) == self._group_size).any())


_STATE = ("patterns", "anchors", "skipped_short", "anchor_keys", "_pattern_anchor", "ngram_keys", "_ngram_owner",
          "_owners", "benchmarks", "code_too_short", "_tiny", "_whole", "_lit_units",
          "_lit_keys", "_lit_of_key", "code_units", "_need", "_long", "_code_index", "_prefilter")


class Decontaminator:
    """Index of the benchmarks' text and code; ``check(text)`` says whether (and why) a file is contaminated.

    Built from the benchmark files unless ``items`` / ``code_units`` are given; a built index is kept in
    this process and on disk (``cache_dir``), keyed by ``index_key``, and loaded from there next time."""

    def __init__(self, cfg: DecontamConfig, items: list[tuple[str, str, str, str]] | None = None,
                 code_units: list[tuple[str, str, str, str, str]] | None = None):
        self.cfg = cfg
        self.loaded_from: str = "built"  # built | memory | disk (for tests and logs)
        key = index_key(cfg) if items is None and code_units is None else None
        if key is None:
            self._build(items, code_units)
            return
        if key in _INDEX_CACHE:  # the same benchmark content, the same settings, in this process
            self.__dict__.update(_INDEX_CACHE[key])
            self.loaded_from = "memory"
            return
        directory = cache_dir(cfg)
        cached = _read_cache(directory, key) if directory is not None else None
        if cached is not None:
            self._restore(*cached)
            self.loaded_from = "disk"
        else:
            self._build(None, None)
            if directory is not None:
                try:
                    _write_cache(directory, key, *self._export())
                except OSError as e:  # a read-only home is no reason to fail
                    _log.warning("decontaminate: cannot cache the index in %s (%s)", directory, e)
        if len(_INDEX_CACHE) >= 4:
            _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
        _INDEX_CACHE[key] = {k: self.__dict__[k] for k in _STATE}

    def _build(self, items, code_units) -> None:
        # The build allocates ~10^6 small objects and frees few: the cyclic GC would rescan them again
        # and again (~15% of the time) for no garbage. Paused while it runs, as it was after.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            self._build_index(items, code_units)
        finally:
            if was_enabled:
                gc.enable()

    def _build_index(self, items, code_units) -> None:
        cfg = self.cfg
        if items is None:
            items, loaded_units = _load(cfg)
            code_units = loaded_units if code_units is None else code_units
        self.patterns: list[Pattern] = []
        self.anchors: dict[int, list[int]] = defaultdict(list)
        self._pattern_anchor: list[int] = []
        self.skipped_short = 0
        seen = set()
        ngram_items: dict[int, dict] = defaultdict(dict)  # ordered: first owner in benchmark order
        defined = _defined_names(code_units or [])
        n = cfg.ngram
        for bench, item, fname, text in items:
            norm = normalize(text)
            words = _WORD.findall(norm)
            kind = _FIELD_KIND.get((bench, fname))
            own = defined.get((bench, item), set()) if kind in ("code", "json_list") else None
            # doctest lines of a docstring are code examples (imports, plotting idioms), not its text
            ng_words = _WORD.findall(normalize(_DOCTEST.sub("", text))) if kind == "docstring" else words
            hashes = _ngram_hashes(ng_words, n)
            if len(hashes):
                hl = hashes.tolist()
                for i in np.flatnonzero(~_low_information_windows(ng_words, n)).tolist():
                    if own is not None and len(own.intersection(ng_words[i:i + n])) < 3:
                        continue  # code n-grams of library names, keywords and loop indices are idioms
                    ngram_items[hl[i]][(bench, item, fname)] = None
            if len(norm) < cfg.min_substring_chars or len(words) < 5 or (norm, bench, item) in seen:
                self.skipped_short += len(norm) < cfg.min_substring_chars
                continue
            seen.add((norm, bench, item))
            interior = words[1:-1]
            best = max(range(len(interior) - 2), key=lambda i: len("".join(interior[i:i + 3])))
            anchor = int(_ngram_hashes(interior[best:best + 3], 3)[0])
            self.anchors[anchor].append(len(self.patterns))
            self._pattern_anchor.append(anchor)
            self.patterns.append(Pattern(norm, bench, item, fname))
        self.anchor_keys = np.array(sorted(self.anchors), dtype=np.uint64)
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

    # -- the on-disk form: strings in JSON, numbers in arrays ---------------------------------------

    def _export(self) -> tuple[dict, dict[str, np.ndarray]]:
        tiny = [(n, h, u) for n, units in sorted(self._tiny.items()) for h, u in units.items()]
        whole = sorted(self._whole.items())
        units = list(self.code_units) + [u for _, _, u in tiny] + [u for _, u in whole] + self._lit_units
        streams = [u.stream for u in units]
        meta = {
            "patterns": [[p.text, p.benchmark, p.item, p.field] for p in self.patterns],
            "skipped_short": self.skipped_short,
            "owners": [list(o) for o in self._owners],
            "benchmarks": self.benchmarks,
            "code_too_short": dict(self.code_too_short),
            "units": [[u.benchmark, u.item, u.field, u.rule, u.mode] for u in units],
            "n_code_units": len(self.code_units),
            "n_lit_units": len(self._lit_units),
        }
        arrays = {
            "pattern_anchor": np.array(self._pattern_anchor, dtype=np.uint64),
            "ngram_keys": self.ngram_keys, "ngram_owner": self._ngram_owner,
            "unit_need": np.array([u.need for u in units], dtype=np.int64),
            "unit_anchor": np.array([u.anchor for u in units], dtype=np.int64),
            "unit_whole": np.array([u.whole for u in units], dtype=bool),
            "unit_offsets": np.concatenate([[0], np.cumsum([len(s) for s in streams], dtype=np.int64)]).astype(np.int64),
            "unit_streams": np.concatenate(streams).astype(np.uint64) if streams else np.empty(0, np.uint64),
            "tiny_len": np.array([n for n, _, _ in tiny], dtype=np.int64),
            "tiny_hash": np.array([h for _, h, _ in tiny], dtype=np.uint64),
            "whole_hash": np.array([h for h, _ in whole], dtype=np.uint64),
        }
        for mode, index in self._code_index.items():
            arrays[f"index_{mode}_keys"], arrays[f"index_{mode}_offsets"] = index.keys, index.offsets
            arrays[f"index_{mode}_units"] = index.units
        pf = self._prefilter
        meta["prefilter"] = None if pf is None else {"names": sorted(pf.names), "literals": sorted(pf.literals),
                                                     "words": sorted(pf.words),
                                                     "lengths": ([0] if pf.always else []) + pf.lengths}
        if pf is not None:
            arrays["prefilter_keys"], arrays["prefilter_offsets"] = pf.index.keys, pf.index.offsets
            arrays["prefilter_units"], arrays["prefilter_need"] = pf.index.units, pf.need
            arrays["prefilter_group"] = pf.group
        return meta, arrays

    def _restore(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.patterns = [Pattern(*p) for p in meta["patterns"]]
        self._pattern_anchor = arrays["pattern_anchor"].tolist()
        self.anchors = defaultdict(list)
        for i, h in enumerate(self._pattern_anchor):
            self.anchors[h].append(i)
        self.anchor_keys = np.array(sorted(self.anchors), dtype=np.uint64)
        self.skipped_short = int(meta["skipped_short"])
        self.ngram_keys, self._ngram_owner = arrays["ngram_keys"], arrays["ngram_owner"]
        self._owners = [tuple(o) for o in meta["owners"]]
        self.benchmarks = list(meta["benchmarks"])
        self.code_too_short = defaultdict(int, meta["code_too_short"])
        off, streams = arrays["unit_offsets"].tolist(), arrays["unit_streams"]
        need, anchor, whole = arrays["unit_need"].tolist(), arrays["unit_anchor"].tolist(), arrays["unit_whole"].tolist()
        units = [CodeUnit(b, item, f, rule, mode, need[i], streams[off[i]:off[i + 1]], anchor[i], whole[i])
                 for i, (b, item, f, rule, mode) in enumerate(meta["units"])]
        n_code = int(meta["n_code_units"])
        self.code_units = units[:n_code]
        self._tiny = {}
        n_tiny, n_whole, n_lit = len(arrays["tiny_len"]), len(arrays["whole_hash"]), int(meta["n_lit_units"])
        for n, h, u in zip(arrays["tiny_len"].tolist(), arrays["tiny_hash"].tolist(), units[n_code:n_code + n_tiny]):
            self._tiny.setdefault(n, {})[h] = u
        self._whole = dict(zip(arrays["whole_hash"].tolist(), units[n_code + n_tiny:n_code + n_tiny + n_whole]))
        self._lit_units = units[n_code + n_tiny + n_whole:]
        assert len(self._lit_units) == n_lit
        self._index_lit_units()
        self._need = np.array([u.need for u in self.code_units], dtype=np.int64)
        self._long = np.array([not u.whole for u in self.code_units], dtype=bool)
        self._code_index = {mode: _GramIndex.from_arrays(arrays[f"index_{mode}_keys"], arrays[f"index_{mode}_offsets"],
                                                         arrays[f"index_{mode}_units"])
                            for mode in ("abstract", "literal", "named")}
        pf = meta["prefilter"]
        self._prefilter = None if pf is None else Prefilter(
            _GramIndex.from_arrays(arrays["prefilter_keys"], arrays["prefilter_offsets"], arrays["prefilter_units"]),
            arrays["prefilter_need"], arrays["prefilter_group"], pf["lengths"], pf["names"], pf["literals"],
            pf["words"])

    # -- code rules ---------------------------------------------------------------------------------

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
            stream = _symbol_hashes(symbols)
            if (mode, stream.tobytes()) in seen:
                return
            seen.add((mode, stream.tobytes()))
            if len(stream) < k:
                self.code_too_short[rule] += 1
                return
            cand.append((CodeUnit(bench, item, fname, rule, mode, 0, stream, 0), _kgrams(stream, k)))
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
                if _TINY_MIN <= len(toks) < k + cfg.code_min_grams - 1:  # a few asserts: whole, as written
                    h = int(_kgrams(_symbol_hashes(toks.named), len(toks))[0])
                    self._tiny.setdefault(len(toks), {}).setdefault(h, CodeUnit(
                        bench, item, fname, "benchmark_test", "named", 0, _symbol_hashes(toks.named), 0, True))
                    self._tiny_names.update(_unit_names(toks))
            else:
                d = _def_start(toks.abstract)
                if d is not None and _WHOLE_MIN <= len(toks) - d < k + cfg.code_long_grams:
                    short.append((bench, item, fname, toks, d))
                    short_code.append(code)
                add(bench, item, fname, "benchmark_code", "abstract", toks.abstract, code)
                if len(toks) < k + cfg.code_long_grams:  # short: also as written (names kept)
                    add(bench, item, fname, "benchmark_code_verbatim", "named", toks.named, code)
                if _TINY_MIN <= len(toks) < k + cfg.code_min_named_grams - 1 and _specific_name(toks.named):
                    h = int(_kgrams(_symbol_hashes(toks.named), len(toks))[0])  # a one-liner, whole
                    self._tiny.setdefault(len(toks), {}).setdefault(h, CodeUnit(
                        bench, item, fname, "benchmark_code_verbatim", "named", 0, _symbol_hashes(toks.named), 0, True))
                    self._tiny_names.update(_unit_names(toks))
        self._build_short_rules(short, {lit: len(items) for lit, items in string_items.items()})
        salt = {"abstract": np.uint64(0), "literal": np.uint64(0x5BD1E9955BD1E995), "named": np.uint64(0x27D4EB2F165667C5)}
        pairs = [np.stack([np.unique(g ^ salt[u.mode]), np.full(len(np.unique(g)), item_ids[u.item], np.uint64)], axis=1)
                 for u, g in cand]
        if pairs:  # idioms: (mode-salted) k-grams held by more than code_max_items distinct items
            allp = np.unique(np.concatenate(pairs), axis=0)
            keys, counts = np.unique(allp[:, 0], return_counts=True)
            idioms = keys[counts > cfg.code_max_items]
        else:
            idioms = np.empty(0, np.uint64)
        index_pairs: dict[str, list[np.ndarray]] = {"abstract": [], "literal": [], "named": []}
        self.code_units: list[CodeUnit] = []
        for u, grams in cand:
            informative = ~_member(grams ^ salt[u.mode], idioms) if len(idioms) else np.ones(len(grams), bool)
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
                share = 1.0 if u.whole else _SKEL_PART
                lit = Prefilter.literal_keys(unit_code[id(u)]) if u.mode == "literal" else None
                if lit is not None and len(lit) >= 3:  # test blocks: their values too, not only ``assert == [ ]``
                    skel_keys.append((lit, item_ids[u.item], 1.0 if u.whole else _LIT_PART, len(self.code_units)))
                word = Prefilter.import_word(unit_code[id(u)]) if n == 0 else None
                if word is not None:
                    import_words.append(word)
                else:
                    skel_keys.append((keys, item_ids[u.item], share, len(self.code_units)))
        self._need = np.array([u.need for u in self.code_units], dtype=np.int64)
        self._long = np.array([not u.whole for u in self.code_units], dtype=bool)
        self._code_index = {mode: _GramIndex(np.concatenate(p) if p else np.empty((0, 2), np.uint64))
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
            unit = CodeUnit(bench, item, fname, "benchmark_code_file", "abstract", 0, _symbol_hashes(abstract), 0, True)
            self._whole.setdefault(_whole_hash(abstract), unit)
            self._whole.setdefault(_whole_hash(literal) ^ _LIT_SALT, unit)  # the item with these literals first
            if len(literal) < _LIT_MIN or _literal_weight(abstract, literal, string_items) < _LIT_WEIGHT:
                continue
            lstream = _symbol_hashes(literal)
            if lstream.tobytes() in seen:
                continue
            seen.add(lstream.tobytes())
            is_lit = np.array([a in ("N", "S") for a in abstract], dtype=np.int64)
            run = np.concatenate(([0], np.cumsum(is_lit)))
            at = int(np.argmax(run[_LIT_ANCHOR:] - run[:-_LIT_ANCHOR]))  # first window with the most literals
            self._lit_units.append(CodeUnit(bench, item, fname, "benchmark_code_literal", "literal", 0, lstream, at, True))
            self._lit_required.append(_rarest_literal(abstract, literal))
            self._lit_short.append(i)
        self._index_lit_units()

    def _index_lit_units(self) -> None:
        of_key: dict[int, list[int]] = defaultdict(list)
        for i, u in enumerate(self._lit_units):
            of_key[int(_kgrams(u.stream[u.anchor:u.anchor + _LIT_ANCHOR], _LIT_ANCHOR)[0])].append(i)
        self._lit_keys = np.array(sorted(of_key), dtype=np.uint64)
        self._lit_of_key = dict(of_key)

    def _short_hit(self, text: str, toks: CodeTokens) -> dict | None:
        """benchmark_code_file, then benchmark_code_literal (see ``_build_short_rules``)."""
        u = span = None
        if self._whole and len(toks) < self.cfg.code_ngram + self.cfg.code_long_grams + 64:
            d = _def_start(toks.abstract)
            if d is not None:
                u = (self._whole.get(_whole_hash(toks.literal[d:]) ^ _LIT_SALT)  # same literals: that item
                     or self._whole.get(_whole_hash(toks.abstract[d:])))
                span = (d, len(toks) - 1)
        if u is None and len(self._lit_keys) and len(toks) >= _LIT_MIN:
            lit = _symbol_hashes(toks.literal)
            grams = _kgrams(lit, _LIT_ANCHOR)
            for p in np.flatnonzero(_member(grams, self._lit_keys)).tolist():
                for i in self._lit_of_key[int(grams[p])]:
                    c = self._lit_units[i]
                    s = p - c.anchor
                    if s >= 0 and np.array_equal(lit[s:s + len(c.stream)], c.stream):
                        u, span = c, (s, s + len(c.stream) - 1)
                        break
                if u is not None:
                    break
        if u is None:
            return None
        a, b = toks.offset(toks.start[span[0]]), _line_end(text, toks.offset(toks.end[span[1]]))
        return {"reason": u.rule, "benchmark": u.benchmark, "item": u.item, "field": u.field, "match": text[a:b][:200]}

    def _code_hit(self, text: str, language: str | None) -> dict | None:
        if not self.code_units:
            return None
        k = self.cfg.code_ngram
        toks = code_tokens(text, language)
        fired: list[tuple[int, np.ndarray]] = []
        if self._tiny:
            named = _symbol_hashes(toks.named)
            for n, units in sorted(self._tiny.items()):
                for p, h in enumerate(_kgrams(named, n).tolist()):
                    if h in units:
                        u = units[h]
                        a, b = toks.offset(toks.start[p]), _line_end(text, toks.offset(toks.end[p + n - 1]))
                        return {"reason": u.rule, "benchmark": u.benchmark, "item": u.item, "field": u.field,
                                "match": text[a:b][:200]}
        if len(toks) < k:
            return self._short_hit(text, toks)
        for mode, index in self._code_index.items():
            if len(index.keys) == 0:
                continue
            stream = _symbol_hashes(getattr(toks, mode))
            grams = _kgrams(stream, k)
            uniq, first_pos = np.unique(grams, return_index=True)
            units, at = index.hits(uniq)
            if len(units) == 0:
                continue
            counts = np.bincount(units, minlength=len(self.code_units))
            for uid in np.flatnonzero(counts >= self._need).tolist():
                u = self.code_units[uid]
                pos = np.sort(first_pos[at[units == uid]])
                if not self._long[uid] and not self._contiguous(u, stream, grams, pos):
                    continue
                fired.append((uid, pos, not self._long[uid]))
        if not fired:
            return self._short_hit(text, toks)
        uid, pos, whole = min(fired, key=lambda x: x[0])  # the first unit in benchmark order
        u = self.code_units[uid]
        if whole:
            a, b = toks.start[int(pos[0]) - u.anchor], toks.end[int(pos[0]) - u.anchor + len(u.stream) - 1]
        else:
            a, b = toks.start[int(pos[0])], toks.end[int(pos[-1]) + k - 1]
        a, b = toks.offset(a), _line_end(text, toks.offset(b))
        return {"reason": u.rule, "benchmark": u.benchmark, "item": u.item, "field": u.field,
                "match": text[a:b][:200]}

    def _contiguous(self, u: CodeUnit, stream: np.ndarray, grams: np.ndarray, pos: np.ndarray) -> bool:
        """The whole normalised function, token for token, somewhere in the file (sets pos[0] there)."""
        n = len(u.stream)
        anchor = _kgrams(u.stream[u.anchor:u.anchor + self.cfg.code_ngram], self.cfg.code_ngram)[0]
        for p in np.flatnonzero(grams == anchor).tolist():
            s = p - u.anchor
            if 0 <= s and s + n <= len(stream) and np.array_equal(stream[s:s + n], u.stream):
                pos[0] = p
                return True
        return False

    def check(self, text: str, language: str | None = None) -> dict | None:
        """None if clean, else {reason (the rule), benchmark, item, field, match} of the first rule that fires."""
        norm = normalize(text)
        words = _WORD.findall(norm)
        if len(words) >= 3 and len(self.anchor_keys):
            tri = _ngram_hashes(words, 3)
            hits = np.unique(tri[_member(tri, self.anchor_keys)])
            found = [pi for h in hits.tolist() for pi in self.anchors[h] if self.patterns[pi].text in norm]
            if found:  # report the same match whatever the hash order: first pattern in benchmark order
                p = self.patterns[min(found)]
                return {"reason": "benchmark_substring", "benchmark": p.benchmark, "item": p.item,
                        "field": p.field, "match": p.text[:200]}
        if len(words) >= self.cfg.ngram and len(self.ngram_keys):
            ng = _ngram_hashes(words, self.cfg.ngram)
            mask = _member(ng, self.ngram_keys)
            if mask.any():
                i = int(np.flatnonzero(mask)[0])  # first shared n-gram in the file
                bench, item, fname = self._owners[int(self._ngram_owner[np.searchsorted(self.ngram_keys, ng[i])])]
                return {"reason": "benchmark_ngram", "benchmark": bench, "item": item, "field": fname,
                        "match": " ".join(words[i:i + self.cfg.ngram])[:200]}
        if self._prefilter is not None and not self._prefilter.passes(text, language):
            return None
        return self._code_hit(text, language)
