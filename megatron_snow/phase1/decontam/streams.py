"""Hashed token streams of Python code without positions, in a few vector operations per file.

The code rules only need positions to report the matched text of a file that matches (a few in a hundred):
every file is read here first, and the lexer with positions (``lexing.code_tokens``) runs only on files where
a rule fires. ``python_streams`` gives exactly the hashes of ``fast_python_tokens``' three streams
(``hashing.symbol_hashes`` of each): one ``findall`` of the fast lexer's regular expression, each distinct token
looked up once per process (its kind, bracket, and the hashes of its symbols), then the context rules as array
operations: docstrings (string statements), dropped parentheses and trailing commas, names after a ``.``,
and the fast lexer's checks (brackets, indentation, a number run into a name); type hints in ``def`` headers
by ``CodeTokens._annotation``'s state machine over the headers' tokens. Where it could differ from the fast
lexer (a ``,`` before a ``,``, or where the fast lexer gives up) it returns None: the caller lexes as before.
"""
from __future__ import annotations

import re
import token
from itertools import repeat
from typing import NamedTuple

import numpy as np
import xxhash

from megatron_snow.phase1.decontam import lexing
from megatron_snow.phase1.decontam.hashing import WORD, symbol_hashes
from megatron_snow.phase1.decontam.lexing import C_LIKE, KEEP_NAMES, _column, _indent_ok, _literal_value

# The fast lexer's expression with one group: leading blanks skipped inside the match (cheaper than failing
# every branch at every blank), and a number run into a name or ``.`` (where the fast lexer gives up) a
# token of its own, the number taken as the number branch takes it (an atomic group). ``_TOKENS`` gives the
# same tokens faster: first a name not followed by a quote (so not a string prefix: strings, numbers and
# other branches cannot start there), then an operator (not a ``.`` before a digit, which starts a number;
# the longest operator, by first character), then the fast lexer's branches in its order.
_BRANCHES = [r"\n[ \t\f]*", r"#[^\r\n]*", r"\\\n", lexing._STRING, rf"(?>{lexing._NUMBER})[\w.]", lexing._NUMBER,
             r"\w+", lexing._OPERATORS, r"[^ \t]"]
_OPS = frozenset(token.EXACT_TOKEN_TYPES)


def _operators_by_first_character() -> str:
    out = []
    for c in sorted({op[0] for op in _OPS}):
        rests = sorted((op[1:] for op in _OPS if op[0] == c), key=len, reverse=True)  # "" (c alone) last
        alone = "(?![0-9])" if c == "." else ""  # ``.5`` is a number
        out.append(re.escape(c) + "(?:" + "|".join(re.escape(r) if r else alone for r in rests) + ")")
    return "|".join(out)


_FIRST = [r"[^\W\d]\w*+(?![\'\"])", _operators_by_first_character()]


_TOKENS = re.compile(r"[ \t]*(" + "|".join(f"(?:{b})" for b in _FIRST + _BRANCHES) + ")")
_KIND = re.compile("|".join(f"({b})" for b in _BRANCHES))  # a token's branch: the one that matched it
# kinds (the fast lexer's match groups): 1 line end, 2 comment, 3 continuation, 4 string, 5 number, 6 name,
# 7 operator; 8 anything the fast lexer gives up on (a number run into a name, any other character)
_NL, _COMMENT, _CONT, _STR, _NUM, _NAME, _OP, _BAD = 1, 2, 3, 4, 5, 6, 7, 8
# roles in the context rules
_OPEN, _CLOSE_PAREN, _CLOSER, _EQ, _COMMA, _SEMI, _DEF, _OPEN_BR, _COLON, _ARROW = range(1, 11)
_ROLE = {"(": _OPEN, ")": _CLOSE_PAREN, "]": _CLOSER, "}": _CLOSER, "=": _EQ, ",": _COMMA, ";": _SEMI,
         "[": _OPEN_BR, "{": _OPEN_BR, ":": _COLON, "->": _ARROW}
_BRACKET = {"(": 1, "[": 1, "{": 1, ")": -1, "]": -1, "}": -1}


_xxh64 = xxhash.xxh64_intdigest


def _h(sym: str) -> int:
    return _xxh64(sym.encode("utf-8", "surrogatepass"))  # as hashing.symbol_hashes


_H_I, _H_S, _H_N, _H_DOT = _h("I"), _h("S"), _h("N"), _h(".")


class _Ids(dict):
    """Token -> id; a token not yet seen gets the next id on lookup and is listed in ``new`` (one pass over a
    file's tokens, no set of them built first)."""

    def __init__(self):
        super().__init__()
        self.new: list[str] = []

    def __missing__(self, tok: str) -> int:
        i = self[tok] = len(self)
        self.new.append(tok)
        return i


class _Vocab:
    """Each distinct token seen in this process, with what the context rules need of it, in arrays by id."""

    LIMIT = 1 << 20  # tokens, and characters of them: emptied past either (bounded; measured ~360 MiB full)
    CHARS = 1 << 25

    def __init__(self, kind_of):
        self.kind_of = kind_of  # token -> kind
        self._reset()

    def _reset(self) -> None:
        self.ids = _Ids()
        self.chars = 0
        cap = 1 << 12
        self.kind = np.zeros(cap, np.int8)
        self.role = np.zeros(cap, np.int8)
        self.br = np.zeros(cap, np.int64)  # +1 an opening bracket, -1 a closing one
        self.col = np.zeros(cap, np.int64)  # a line end's indentation column
        self.keep = np.zeros(cap, bool)  # a name kept as itself (keyword, builtin)
        self.h_abs = np.zeros(cap, np.uint64)  # symbol hashes: abstract (a name not after ``.``), literal, named
        self.h_lit = np.zeros(cap, np.uint64)
        self.h_named = np.zeros(cap, np.uint64)
        self.h_tok = np.zeros(cap, np.uint64)  # a name after ``.``: the name itself
        self.flag = np.zeros(cap, bool)  # generic lexer: a triple-quoted string, a comment starting with ``#``
        self.w_start = np.zeros(cap, np.int64)  # the token's words (of its lower-cased text) in ``words``
        self.w_count = np.zeros(cap, np.int64)
        self.words = np.zeros(cap, np.uint64)  # word hashes (``hashing.symbol_hashes``)
        self.n_words = 0

    def lookup(self, toks: list[str]) -> np.ndarray:
        ids = self.ids
        if len(ids) > self.LIMIT or self.chars > self.CHARS:
            self._reset()
            ids = self.ids
        start, ids.new = len(ids), []
        out = np.fromiter(map(ids.__getitem__, toks), dtype=np.int64, count=len(toks))
        if ids.new:
            self._add(ids.new, start)
        return out

    _FIELDS = ("kind", "role", "br", "col", "keep", "h_abs", "h_lit", "h_named", "h_tok", "flag", "w_start", "w_count")

    def _add(self, toks: list[str], i: int) -> None:
        """The tokens ``toks``, ids ``i`` on: only what the context rules read of each kind (a name's own hash:
        after a ``.``), kind by kind."""
        n = len(toks)
        self.chars += sum(map(len, toks))
        if i + n > len(self.kind):
            for name in self._FIELDS:
                old = getattr(self, name)
                grown = np.zeros(max(2 * len(old), i + n), old.dtype)
                grown[:i] = old[:i]
                setattr(self, name, grown)
        kind = np.fromiter(map(self.kind_of, toks), np.int8, n)
        self.kind[i:i + n] = kind

        def of(k: int) -> tuple[np.ndarray, list[str]]:
            at = np.flatnonzero(kind == k)
            return i + at, list(map(toks.__getitem__, at.tolist()))

        def hashes(syms: list[str]) -> np.ndarray:  # token by token in C (map): no Python frame per token
            return np.fromiter(map(_xxh64, map(str.encode, syms, repeat("utf-8"), repeat("surrogatepass"))),
                               np.uint64, len(syms))

        at, ts = of(_NAME)
        ht = hashes(ts)
        keep = np.fromiter(map(KEEP_NAMES.__contains__, ts), bool, len(ts))
        self.keep[at], self.h_tok[at], self.h_named[at] = keep, ht, ht
        self.h_abs[at] = self.h_lit[at] = np.where(keep, ht, np.uint64(_H_I))
        self.role[at[[j for j, t in enumerate(ts) if t == "def"]]] = _DEF
        for k, sym in ((_STR, "S"), (_NUM, "N")):
            at, ts = of(k)
            self.h_abs[at] = _h(sym)
            self.h_lit[at] = self.h_named[at] = hashes(list(map(_literal_value, ts, repeat(sym))))
            if k == _STR:
                self.flag[at] = np.fromiter(map(str.endswith, ts, repeat(('"""', "'''"))), bool, len(ts))
        at, ts = of(_OP)
        self.h_abs[at] = self.h_lit[at] = self.h_named[at] = self.h_tok[at] = hashes(ts)
        self.role[at] = np.fromiter(map(_ROLE.get, ts, repeat(0)), np.int8, len(ts))
        self.br[at] = np.fromiter(map(_BRACKET.get, ts, repeat(0)), np.int64, len(ts))
        at, ts = of(_NL)
        self.col[at] = np.fromiter((lexing._column(t[1:]) for t in ts), np.int64, len(ts))
        at, ts = of(_COMMENT)
        self.flag[at] = np.fromiter(map(str.startswith, ts, repeat("#")), bool, len(ts))
        counts, flat = _token_words(toks)
        at = self.n_words
        if at + len(flat) > len(self.words):
            grown = np.zeros(max(2 * len(self.words), at + len(flat)), np.uint64)
            grown[:at] = self.words[:at]
            self.words = grown
        self.words[at:at + len(flat)] = flat
        self.w_start[i:i + n] = at + np.cumsum(counts) - counts
        self.w_count[i:i + n] = counts
        self.n_words += len(flat)

    def words_of(self, ids: np.ndarray) -> np.ndarray:
        """The word hashes of the tokens ``ids`` in order: the words of the text when the tokens cover it."""
        counts = self.w_count[ids]
        total = int(counts.sum())
        out_start = np.cumsum(counts) - counts
        return self.words[np.arange(total) + np.repeat(self.w_start[ids] - out_start, counts)]


_WORD_OR_SEP = re.compile(r"\w+|\x00")
_H_SEP = np.uint64(_h("\x00"))


def _token_words(toks: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(words per token, their hashes in order) of ``WORD.findall(t.lower())`` for every token: one pass over
    the tokens joined by NUL (no word character, nor cased nor case-ignorable: each token lower-cases and splits
    as alone), the NULs found among the hashes; token by token where a token holds a NUL."""
    n = len(toks)
    joined = "\x00".join(toks)
    if joined.count("\x00") == n - 1:
        flat = symbol_hashes(_WORD_OR_SEP.findall(joined.lower()))
        sep = flat == _H_SEP
        if int(sep.sum()) == n - 1:  # else a word hashed as NUL does: read token by token
            word = ~sep
            return np.bincount(np.cumsum(sep)[word], minlength=n).astype(np.int64), flat[word]
    words = [WORD.findall(t.lower()) for t in toks]
    return np.fromiter(map(len, words), np.int64, n), symbol_hashes([w for ws in words for w in ws])


_BRANCH_KIND = {1: _NL, 2: _COMMENT, 3: _CONT, 4: _STR, 5: _BAD, 6: _NUM, 7: _NAME, 8: _OP, 9: _BAD}
_WORD = re.compile(r"\w+")


def _kind(t: str) -> int:
    """The branch of the fast lexer's expression that gives token ``t``: by its first and last characters where
    they decide (no other branch gives such a token), else by matching it (``_KIND``)."""
    c = t[0]
    if c == "\n":
        return _NL
    if c == "#":
        return _COMMENT
    if len(t) > 1 and t[-1] in "'\"" and c != "\\":  # only a string ends in a quote (a lone quote: one character)
        return _STR
    if t in _OPS:
        return _OP
    if c not in "0123456789." and _WORD.fullmatch(t):  # a name: a number starts with a digit or a dot
        return _NAME
    m = _KIND.fullmatch(t)
    return _BRANCH_KIND[m.lastindex] if m is not None else _BAD


_VOCAB = _Vocab(_kind)


class Streams(NamedTuple):
    """A file's symbol hashes: the three streams the code rules compare, and its words (for the text rules;
    None: read them from the text)."""

    abstract: np.ndarray
    literal: np.ndarray
    named: np.ndarray
    words: np.ndarray | None


def code_streams(text: str, language: str | None) -> Streams | None:
    """``python_streams`` for Python (and unknown) text, ``generic_streams`` for other languages."""
    lang = (language or "").lower()
    return python_streams(text) if lang in ("", "python", "jupyter") else generic_streams(text, lang in C_LIKE)
ENABLED = True  # off: every file is lexed with positions (bench/bench_decontam.py compares the two)
_EMPTY = np.empty(0, np.uint64)


def python_streams(text: str) -> Streams | None:
    """(abstract, literal, named, words) symbol hashes of ``fast_python_tokens(text)``; None where that is None or
    where this could differ from it (the caller then lexes the file with ``code_tokens``)."""
    if not (ENABLED and lexing._FAST_LEXER):
        return None
    toks = _TOKENS.findall(text)
    if not toks:
        return Streams(_EMPTY, _EMPTY, _EMPTY, _EMPTY)
    v = _VOCAB
    ids = v.lookup(toks)
    kind = v.kind[ids]
    if kind.max() >= _BAD or kind[-1] == _CONT:  # the fast lexer gives up (a continuation then nothing)
        return None
    depth = np.cumsum(v.br[ids])
    if depth.min() < 0 or depth[-1]:
        return None
    nl0 = (kind == _NL) & (depth == 0)  # statement ends
    # indentation: each line after a statement end, unless blank or a comment (as the fast lexer checks it)
    indents = [0]
    first = lexing._FIRST_INDENT.match(text).end()
    if first < len(text) and text[first] not in "#\n":
        _indent_ok(indents, _column(text[:first]))  # from [0] it cannot fail
    checked = np.flatnonzero(nl0[:-1] & (kind[1:] != _NL) & (kind[1:] != _COMMENT))
    if len(checked):
        cols = v.col[ids[checked]]
        changed = cols[np.concatenate(([True], cols[1:] != cols[:-1]))]
        for col in changed.tolist():  # an unchanged column changes nothing
            if not _indent_ok(indents, col):
                return None
    # docstrings: the strings of a statement that holds only strings are dropped
    real = np.flatnonzero((kind >= _STR) | nl0)
    rk = kind[real]
    is_nl = rk == _NL
    seg = np.cumsum(is_nl)
    others = np.bincount(seg, weights=(rk != _STR) & ~is_nl, minlength=int(seg[-1]) + 1)
    s = real[~is_nl & ((rk != _STR) | (others[seg] > 0))]
    return _with_words(_context(v, ids[s]), v, ids, text)


def _with_words(streams: tuple | None, v: _Vocab, ids: np.ndarray, text: str, apart: bool = True) -> Streams | None:
    """The streams and the hashes of the text's words (``WORD.findall(text.lower())``), here the words of its
    tokens in order: the tokens cover every character but blanks, no word runs across two tokens (``apart``: the
    fast lexer gives up on a number run into a name, the generic lexer's caller checks), and lower-casing is the
    same token by token but for a final sigma (a text with a capital sigma: words None, read from the text)."""
    if streams is None:
        return None
    return Streams(*streams, None if not apart or "\u03a3" in text else v.words_of(ids))


def _context(v: _Vocab, sid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The streams of the code tokens ``sid`` (docstrings left out), by ``CodeTokens.add``'s rules: ``;`` and type
    hints dropped, a comma before a closing bracket or ``=``, parentheses; a name after a ``.`` is itself."""
    role = v.role[sid]
    sid = sid[role != _SEMI]
    role = role[role != _SEMI]
    defs = np.flatnonzero(role == _DEF)
    if len(defs):  # type hints in ``def`` headers
        drop = _annotations(role.tolist(), defs.tolist())
        if drop is None:
            return None
        if drop:
            mask = np.ones(len(sid), bool)
            mask[drop] = False
            sid, role = sid[mask], role[mask]
    # a comma before a closing bracket or ``=`` (opening parentheses between) is dropped, parentheses are
    not_open = np.flatnonzero(role != _OPEN)
    r = role[not_open]
    commas = np.flatnonzero(r[:-1] == _COMMA)
    nxt = r[commas + 1]
    if (nxt == _COMMA).any():  # ``, ,``: the fast lexer's pops depend on each other
        return None
    keep = (role != _OPEN) & (role != _CLOSE_PAREN)
    keep[not_open[commas[(nxt == _CLOSE_PAREN) | (nxt == _CLOSER) | (nxt == _EQ)]]] = False
    k = sid[keep]
    abstract, literal = v.h_abs[k], v.h_lit[k]
    if len(k) > 1:  # a name after a ``.`` is itself
        at = np.flatnonzero((abstract[:-1] == np.uint64(_H_DOT)) & (v.kind[k[1:]] == _NAME) & ~v.keep[k[1:]]) + 1
        abstract[at] = literal[at] = v.h_tok[k[at]]
    return abstract, literal, v.h_named[k]


def _annotations(role: list[int], defs: list[int]) -> list[int] | None:
    """Offsets of the tokens ``CodeTokens._annotation`` drops in the ``def`` headers (the same state machine,
    over each header only); None where a header holds another ``def``."""
    drop: list[int] = []
    n, end = len(role), -1
    for d in defs:
        if d <= end:
            return None
        depth = skip = 0
        j = d + 1
        while j < n:
            r = role[j]
            if r == _DEF:
                return None
            if r == _OPEN or r == _OPEN_BR:
                depth += 1
                if skip:
                    drop.append(j)
            elif r == _CLOSE_PAREN or r == _CLOSER:
                depth -= 1
                if skip == 1 and depth == 0:
                    skip = 0
                elif skip:
                    drop.append(j)
            elif skip == 1:
                if depth == 1 and (r == _COMMA or r == _EQ):
                    skip = 0
                else:
                    drop.append(j)
            elif skip == 2:
                if depth == 0 and r == _COLON:
                    break
                drop.append(j)
            elif depth == 1 and r == _COLON:
                skip = 1
                drop.append(j)
            elif depth == 0 and r == _ARROW:
                skip = 2
                drop.append(j)
            elif depth == 0 and r == _COLON:
                break
            j += 1
        end = j
    return drop


# -- the generic lexer's streams ------------------------------------------------------------------------------
# ``lexing.generic_tokens`` (other languages; Python ``tokenize`` rejects) without positions: its expression with
# one group, line ends as tokens of their own (for its docstring rule: a string alone on its line).

def _generic_parts(pattern: re.Pattern) -> list[str]:
    """The branches of a ``lexing._LEX_*`` expression, in order (str, comment, num, name, op)."""
    body = re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern)
    names = ["str", "comment", "num", "name", "op"]
    starts = [pattern.pattern.index(f"(?P<{n}>") for n in names] + [len(pattern.pattern)]
    plain = [re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern[a:b]).rstrip("|") for a, b in zip(starts, starts[1:])]
    assert "|".join(plain) == body.rstrip("|")
    return plain


def _generic_lexer(pattern: re.Pattern) -> tuple[re.Pattern, _Vocab]:
    parts = _generic_parts(pattern)
    tokens = re.compile(r"[^\S\n]*(\n|" + "|".join(parts) + ")")
    kinds = re.compile("|".join(f"({p})" for p in parts))
    by_branch = {1: _STR, 2: _COMMENT, 3: _NUM, 4: _NAME, 5: _OP}

    def kind_of(t: str) -> int:
        return _NL if t == "\n" else by_branch[kinds.fullmatch(t).lastindex]

    return tokens, _Vocab(kind_of)


_GENERIC = {False: _generic_lexer(lexing._LEX_PY), True: _generic_lexer(lexing._LEX_C)}


def generic_streams(text: str, c_comments: bool = False) -> Streams | None:
    """(abstract, literal, named, words) symbol hashes of ``generic_tokens(text, c_comments)``; None where this could
    differ from it (see ``_alone_strings``; ``, ,``; a ``def`` inside a ``def`` header)."""
    if not ENABLED:
        return None
    tokens, v = _GENERIC[c_comments]
    toks = tokens.findall(text)
    if not toks:
        return Streams(_EMPTY, _EMPTY, _EMPTY, _EMPTY)
    ids = v.lookup(toks)
    kind = v.kind[ids]
    strings = np.flatnonzero(kind == _STR)
    if len(strings):  # alone on its line: a line end (or nothing) before, a line end, ``#`` or nothing after
        before = np.concatenate(([_NL], kind))[strings] == _NL
        after_id = np.concatenate((ids, [-1]))[strings + 1]
        after = (after_id < 0) | (v.kind[after_id] == _NL) | ((v.kind[after_id] == _COMMENT) & v.flag[after_id])
        alone = strings[before & after]
        if len(alone):
            triple = v.flag[ids[alone]]
            kind = kind.copy()
            kind[alone[triple]] = _COMMENT  # triple-quoted and alone: a docstring, dropped
            if not triple.all():
                code = np.flatnonzero(kind >= _STR)
                dropped = _alone_strings(v.role[ids[code]].tolist(), np.searchsorted(code, alone[~triple]).tolist())
                if dropped is None:
                    return None
                kind[code[dropped]] = _COMMENT
    run = (kind[:-1] == _NUM) & ((kind[1:] == _NAME) | (kind[1:] == _NUM))  # maybe one word (``10ms``, ``0x1.8p3``)
    return _with_words(_context(v, ids[kind >= _STR]), v, ids, text, not run.any())


def _alone_strings(role: list[int], alone: list[int]) -> list[int] | None:
    """Which of the strings alone on their line (offsets ``alone`` among the code tokens, whose roles are
    ``role``) the generic lexer drops: those after nothing or after a ``:``, the last token it kept (parentheses,
    ``;``, dropped strings and a comma it popped are not kept). None where a ``def`` header could be involved
    (its type hints are dropped too) or where pops depend on each other (``, ,``)."""
    if _DEF in role:
        return None
    dropped: set[int] = set()
    for i in alone:
        j = i - 1
        while j >= 0:
            r = role[j]
            if r in (_OPEN, _CLOSE_PAREN, _SEMI) or j in dropped:
                j -= 1
                continue
            if r == _COMMA:  # popped when the next token it sees (before this string) closes a bracket
                nxt = next((k for k in range(j + 1, i) if role[k] not in (_OPEN, _SEMI) and k not in dropped), i)
                if nxt < i and role[nxt] == _COMMA:
                    return None
                if nxt < i and role[nxt] in (_CLOSE_PAREN, _CLOSER, _EQ):
                    j -= 1
                    continue
            break
        if j < 0 or role[j] == _COLON:
            dropped.add(i)
    return sorted(dropped)
