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

import numpy as np
import xxhash

from megatron_snow.phase1.decontam import lexing
from megatron_snow.phase1.decontam.lexing import KEEP_NAMES, _column, _indent_ok, _literal_value

# The fast lexer's expression with one group: leading blanks skipped inside the match (cheaper than failing
# every branch at every blank), and a number run into a name or ``.`` (where the fast lexer gives up) a
# token of its own, the number taken as the number branch takes it (an atomic group). ``_TOKENS`` gives the
# same tokens faster: a name not followed by a quote (so not a string prefix) first, and the operators as the
# multi-character ones then one character class (the longest operator either way).
_BRANCHES = [r"\n[ \t\f]*", r"#[^\r\n]*", r"\\\n", lexing._STRING, rf"(?>{lexing._NUMBER})[\w.]", lexing._NUMBER,
             r"\w+", lexing._OPERATORS, r"[^ \t]"]
_OPS = sorted(token.EXACT_TOKEN_TYPES, key=len, reverse=True)
_OPS_FAST = ("|".join(re.escape(op) for op in _OPS if len(op) > 1)
             + "|[" + "".join(re.escape(op) for op in _OPS if len(op) == 1) + "]")
_TOKENS = re.compile(r"[ \t]*(" + "|".join(f"(?:{b})" for b in [r"[^\W\d]\w*+(?![\'\"])"] + _BRANCHES[:7]
                                            + [_OPS_FAST] + _BRANCHES[8:]) + ")")
_KIND = re.compile("|".join(f"({b})" for b in _BRANCHES))  # a token's branch: the one that matched it
# kinds (the fast lexer's match groups): 1 line end, 2 comment, 3 continuation, 4 string, 5 number, 6 name,
# 7 operator; 8 anything the fast lexer gives up on (a number run into a name, any other character)
_NL, _COMMENT, _CONT, _STR, _NUM, _NAME, _OP, _BAD = 1, 2, 3, 4, 5, 6, 7, 8
# roles in the context rules
_OPEN, _CLOSE_PAREN, _CLOSER, _EQ, _COMMA, _SEMI, _DEF, _OPEN_BR, _COLON, _ARROW = range(1, 11)
_ROLE = {"(": _OPEN, ")": _CLOSE_PAREN, "]": _CLOSER, "}": _CLOSER, "=": _EQ, ",": _COMMA, ";": _SEMI,
         "[": _OPEN_BR, "{": _OPEN_BR, ":": _COLON, "->": _ARROW}


def _h(sym: str) -> int:
    return xxhash.xxh64_intdigest(sym.encode("utf-8", "surrogatepass"))  # as hashing.symbol_hashes


_H_I, _H_S, _H_N, _H_DOT = _h("I"), _h("S"), _h("N"), _h(".")


class _Vocab:
    """Each distinct token seen in this process, with what the context rules need of it, in arrays by id."""

    LIMIT = 1 << 20

    def __init__(self):
        self.ids: dict[str, int] = {}
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

    def lookup(self, toks: list[str]) -> np.ndarray:
        ids = self.ids
        if len(ids) > self.LIMIT:
            self.__init__()
            ids = self.ids
        new = set(toks).difference(ids)
        if new:
            self._add(new)
        return np.fromiter(map(ids.__getitem__, toks), dtype=np.int64, count=len(toks))

    _FIELDS = ("kind", "role", "br", "col", "keep", "h_abs", "h_lit", "h_named", "h_tok")

    def _add(self, new: set[str]) -> None:
        rows = []
        for t in new:
            kind = _kind(t)
            ht = _h(t)
            if kind == _NAME:
                keep = t in KEEP_NAMES
                h = ht if keep else _H_I
                rows.append((kind, _DEF if t == "def" else 0, 0, 0, keep, h, h, ht, ht))
            elif kind == _STR or kind == _NUM:
                h_lit = _h(_literal_value(t, "S" if kind == _STR else "N"))
                rows.append((kind, 0, 0, 0, False, _H_S if kind == _STR else _H_N, h_lit, h_lit, ht))
            elif kind == _OP:
                br = 1 if t in ("(", "[", "{") else -1 if t in (")", "]", "}") else 0
                rows.append((kind, _ROLE.get(t, 0), br, 0, False, ht, ht, ht, ht))
            else:
                rows.append((kind, 0, 0, lexing._column(t[1:]) if kind == _NL else 0, False, ht, ht, ht, ht))
        i, n = len(self.ids), len(rows)
        if i + n > len(self.kind):
            for name in self._FIELDS:
                old = getattr(self, name)
                grown = np.zeros(max(2 * len(old), i + n), old.dtype)
                grown[:i] = old[:i]
                setattr(self, name, grown)
        for name, col in zip(self._FIELDS, zip(*rows)):
            getattr(self, name)[i:i + n] = col
        self.ids.update(zip(new, range(i, i + n)))


_BRANCH_KIND = {1: _NL, 2: _COMMENT, 3: _CONT, 4: _STR, 5: _BAD, 6: _NUM, 7: _NAME, 8: _OP, 9: _BAD}
_OP_SET = frozenset(_OPS)
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
    if t in _OP_SET:
        return _OP
    if c not in "0123456789." and _WORD.fullmatch(t):  # a name: a number starts with a digit or a dot
        return _NAME
    m = _KIND.fullmatch(t)
    return _BRANCH_KIND[m.lastindex] if m is not None else _BAD
_VOCAB = _Vocab()
ENABLED = True  # off: every file is lexed with positions (bench/bench_decontam.py compares the two)
_EMPTY = np.empty(0, np.uint64)


def python_streams(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(abstract, literal, named) symbol hashes of ``fast_python_tokens(text)``; None where that is None or
    where this could differ from it (the caller then lexes the file with ``code_tokens``)."""
    if not (ENABLED and lexing._FAST_LEXER):
        return None
    toks = _TOKENS.findall(text)
    if not toks:
        return _EMPTY, _EMPTY, _EMPTY
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
    sid = ids[s]
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
