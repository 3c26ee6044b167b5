"""Lexing code to token streams: the abstract stream (names I, strings S, numbers N), the literal stream
(values kept) and the named stream (names kept), as the code rules compare them."""
from __future__ import annotations

import ast
import builtins
import functools
import io
import keyword
import re
import sys
import token
import tokenize
import warnings

# -- code normalisation ---------------------------------------------------------------------------
# A token-type stream: identifiers -> "I", strings -> "S", numbers -> "N" (in literal mode, for test
# code: their values), keywords / builtins / attribute names / operators kept; comments, layout,
# docstrings, ";", parentheses (formatters add and drop them) and trailing commas dropped.
# Every lexer gives the same stream on Python code.

KEEP_NAMES = frozenset(keyword.kwlist) | frozenset(n for n in dir(builtins) if not n.startswith("_"))
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
C_LIKE = frozenset({"c", "c++", "cpp", "c#", "csharp", "java", "javascript", "typescript", "go", "rust", "php",
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
        sym = text if text in KEEP_NAMES or (self.abstract and self.abstract[-1] == ".") else "I"
        self.add(sym, sym, a, b, text)

    def __len__(self) -> int:
        return len(self.abstract)


_STR_BODY = re.compile(r"^[rRbBuUfF]{0,2}(\"\"\"|'''|\"|'|`)(.*)\1$", re.DOTALL)


@functools.lru_cache(maxsize=1 << 16)  # a pure function of the token; the same literals recur
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
    """The stream of Python's ``tokenize`` (``tokenize_tokens``); None when the text is not Python it can read.
    Read by the fast lexer (``fast_python_tokens``) where that decides, by ``tokenize`` elsewhere."""
    if _FAST_LEXER:
        toks = fast_python_tokens(text)
        if toks is not None:
            return toks
    return tokenize_tokens(text)


def tokenize_tokens(text: str) -> CodeTokens | None:
    """The stream from Python's ``tokenize`` (the reference of the fast lexer); None when the text is not
    Python it can read."""
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
    return generic_tokens(text, c_comments=lang in C_LIKE)



# -- the fast lexer ---------------------------------------------------------------------------------
# One compiled regular expression over the whole text, giving the tokens ``tokenize`` gives on Python 3.11
# (its grammar: string prefixes and quotes, number forms, the exact operator set, ``\w+`` names), and the
# statement boundaries and indentation checks the stream needs (docstrings are string statements; an
# inconsistent dedent makes ``tokenize`` fail). Wherever the two could differ (a character outside the
# grammar, '\r', an unterminated string or bracket, a number run into a name, a continuation at the end)
# it gives up and the text goes to ``tokenize``: the stream is ``tokenize``'s in every case. Python 3.12
# tokenizes f-strings into parts; there the fast lexer is off.

_FAST_LEXER = sys.version_info[:2] == (3, 11)
_DIGITS = r"[0-9](?:_?[0-9])*"
_EXPONENT = r"[eE][-+]?" + _DIGITS
_FLOAT = rf"(?:(?:{_DIGITS}\.(?:{_DIGITS})?|\.{_DIGITS})(?:{_EXPONENT})?|{_DIGITS}{_EXPONENT})"
_NUMBER = (rf"(?:{_DIGITS}[jJ]|{_FLOAT}[jJ]|{_FLOAT}"
           r"|0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?0)*|[1-9](?:_?[0-9])*)")
_PREFIX = r"(?:[bB][rR]?|[rR][bBfF]?|[uU]|[fF][rR]?)?"
_Q1, _Q2 = "'", '"'
_STRING = (_PREFIX + "(?:" + _Q1 * 3 + r"(?:[^'\\]|\\[\s\S]|'(?!''))*" + _Q1 * 3
           + "|" + _Q2 * 3 + r'(?:[^"\\]|\\[\s\S]|"(?!""))*' + _Q2 * 3
           + r"""|'(?:[^'\\\n]|\\[\s\S])*'|"(?:[^"\\\n]|\\[\s\S])*")""")
_OPERATORS = "|".join(re.escape(op) for op in sorted(token.EXACT_TOKEN_TYPES, key=len, reverse=True))
_FAST = re.compile(
    r"(\n[ \t\f]*)"  # 1: a line end, and the next line's indentation
    r"|(#[^\r\n]*)"  # 2: a comment
    r"|(\\\n)"  # 3: a continuation
    rf"|({_STRING})"  # 4
    rf"|({_NUMBER})"  # 5
    r"|(\w+)"  # 6: a name
    rf"|({_OPERATORS})"  # 7
    r"|([^ \t])")  # 8: anything else: ``tokenize`` decides
_AFTER_NUMBER = re.compile(r"[\w.]")
_BLANK_TO_END = re.compile(r"[ \t\f]*\Z")
_FIRST_INDENT = re.compile(r"[ \t\f]*")


def _column(indent: str) -> int:
    """The indentation column as ``tokenize`` counts it (tabs to multiples of 8, a form feed resets)."""
    if "\t" not in indent and "\f" not in indent:
        return len(indent)
    col = 0
    for c in indent:
        col = col + 1 if c == " " else (col // 8 + 1) * 8 if c == "\t" else 0
    return col


def _indent_ok(indents: list[int], col: int) -> bool:
    """Push or pop ``col`` on the indentation stack; False where ``tokenize`` raises IndentationError."""
    if col > indents[-1]:
        indents.append(col)
    while col < indents[-1]:
        if col not in indents:
            return False
        indents.pop()
    return True


def fast_python_tokens(text: str) -> CodeTokens | None:
    """The stream ``tokenize_tokens`` gives, from one regular expression (positions are character offsets);
    None where it does not decide (see above)."""
    out = CodeTokens()
    abstract, literal, named, start, end = out.abstract, out.literal, out.named, out.start, out.end
    keep, closers, parens = KEEP_NAMES, _CLOSERS, _PARENS
    indents = [0]
    first = _FIRST_INDENT.match(text).end()
    if first < len(text) and text[first] not in "#\n" and not _indent_ok(indents, _column(text[:first])):
        return None
    depth = 0
    at_stmt_start = True
    pending: list[tuple[str, int, int]] = []  # strings that open a statement: a docstring if it ends there
    for m in _FAST.finditer(text):
        kind = m.lastindex
        if kind < 4:
            if kind == 1:  # a line end
                if depth == 0:
                    pending.clear()  # a string statement: dropped
                    at_stmt_start = True
                    b = m.end()
                    if b < len(text) and text[b] not in "#\n" and not _indent_ok(indents, _column(m.group(1)[1:])):
                        return None
            elif kind == 3 and _BLANK_TO_END.match(text, m.end()):  # a continuation, then nothing
                return None
            continue
        a, b = m.span()  # each group is the whole match
        tok = text[a:b]
        if kind == 4 and (at_stmt_start or pending):
            at_stmt_start = False
            pending.append((tok, a, b))
            continue
        if pending:  # strings, then more of the statement: kept
            for s_tok, s_a, s_b in pending:
                out.add("S", _literal_value(s_tok, "S"), s_a, s_b)
            pending.clear()
        at_stmt_start = False
        if kind == 6:
            sym = tok if tok in keep or (abstract and abstract[-1] == ".") else "I"
            lit, name = sym, tok
        elif kind == 4:
            sym, lit, name = "S", _literal_value(tok, "S"), ""
        elif kind == 7:
            if tok in "([{":
                depth += 1
            elif tok in ")]}":
                depth -= 1
                if depth < 0:
                    return None
            if tok == ";":
                continue
            sym = lit = tok
            name = ""
        elif kind == 5:
            if _AFTER_NUMBER.match(text, b):
                return None
            sym, lit, name = "N", _literal_value(tok, "N"), ""
        else:
            return None
        if out._header or sym == "def":
            out.add(sym, lit, a, b, name)
            continue
        if abstract and abstract[-1] == "," and (sym in closers or sym == "="):  # as CodeTokens.add does
            abstract.pop(), literal.pop(), named.pop(), start.pop(), end.pop()
        if sym in parens:
            continue
        abstract.append(sym)
        literal.append(lit)
        named.append(lit if sym != "I" else name)
        start.append(a)
        end.append(b)
    if depth:
        return None
    return out
