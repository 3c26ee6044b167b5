"""The hashed streams without positions (``streams.python_streams``, ``streams.generic_streams``) are the fast
lexer's and the generic lexer's streams, hashed: on every string form and layout, on ``def`` headers with type
hints, on real code; where they could differ they decline (None) and the rules lex the file as before."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from megatron_snow.phase1.decontam.hashing import WORD, symbol_hashes
from megatron_snow.phase1.decontam.lexing import fast_python_tokens, generic_tokens
from megatron_snow.phase1.decontam.streams import generic_streams, python_streams
from tests.phase1.test_decontam_lexer import TRICKY, real_python_texts
from tests.phase1.test_decontam_quality import clean_corpus

pytestmark = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the fast lexer follows 3.11's tokenize")

HEADERS = [
    "def f(a: int, b: dict[str, list[int]] = {}, *args: 'T', c=lambda x: x, **kw: Any) -> tuple[int, ...]:\n"
    "    return a\n",
    "def f(a, b,) -> None: pass\n", "def f(x=(1, 2), y: int=3): return x.y\n", "class A:\n    def m(self): ...\n",
    "def f(x: Callable[[int], str]) -> Callable[[int],\n        str]:\n    'doc'\n    return x\n",
    "def g(*, key: str | None = None, **kw) -> 'A.B': return key.strip()\n", "x.def\n", "def f(: pass\n",
    "def f(a: int\n", "def f(x=def): pass\n", "f(a, b, )\nx = [1, 2,]\ny = {1: 2,}\na, b, = b, a\n",
    "f(a, (b), )\n", "f(a,,)\n", "print(x.real, x . imag, x.\\\n  imag)\n", "'doc' ; x = 1\n'doc2'\n'a' 'b'\n",
    "if x:\n    'not a docstring' + y\n", "x = 1 if y else 2\n",
]


def same(text: str) -> bool:
    """python_streams is None, or the hashes of the fast lexer's three streams (which is not None then)."""
    got = python_streams(text)
    if got is None:
        return True
    toks = fast_python_tokens(text)
    assert toks is not None, text
    return all(np.array_equal(h, symbol_hashes(getattr(toks, mode)))
               for h, mode in zip(got, ("abstract", "literal", "named"))) and same_words(got, text)


def same_words(got, text: str) -> bool:
    """The words, when given, are the text's (as the text rules read them)."""
    return got.words is None or np.array_equal(got.words, symbol_hashes(WORD.findall(text.lower())))


def test_streams_equal_the_fast_lexer_on_every_form():
    assert python_streams(TRICKY) is not None and same(TRICKY)
    for text in HEADERS:
        assert same(text), text
    assert python_streams(HEADERS[0]) is not None and python_streams("def f(a: int\n") is None
    assert python_streams("f(a,,)\n") is None  # ``, ,``: declined


@pytest.mark.parametrize("text", [
    "x = $y\n", "x = 'unterminated\n", 'x = """unterminated\n', "x = (1,\n", "if x:\n        a\n    b\n",
    "x = 1 \\\n", "x = 1)\n", "x = `y`\n", "x = 1\r\ny = 2\r\n", "print 'py2'\n", "x = 10L\n", "x = 0777\n",
    "x = 1if y else 2\n", "x = a ? b : c\n", "x = '→'\n", "x = →\n", "x = 1.5e\n", "x = 0x1g\n", "",
])
def test_streams_decline_where_the_fast_lexer_gives_up(text):
    assert same(text), text
    if fast_python_tokens(text) is None:
        assert python_streams(text) is None


def test_streams_equal_the_fast_lexer_on_real_code(benchmarks_dir):
    """The shipped clean corpus, 200 files of the standard library, the benchmarks' solutions."""
    texts = real_python_texts(benchmarks_dir)
    decided = 0
    for text in texts:
        assert same(text), text[:200]
        decided += python_streams(text) is not None
    assert decided >= 0.95 * len(texts), (decided, len(texts))


C_CODE = r'''/* A header. */
#include <stdio.h>
// a line comment, with "a string" in it
static const char *names[] = {"a", "b",};  /* trailing comma */
int f(int a, int b) { return a + b * 0x1F + 1.5e-3; }
#define STR "alone after a macro"
"""triple, alone"""
x = `tick`; y = $z; w = a ? b : c;
'''


def same_generic(text: str, c_comments: bool) -> bool:
    got = generic_streams(text, c_comments)
    if got is None:
        return True
    toks = generic_tokens(text, c_comments)
    return all(np.array_equal(h, symbol_hashes(getattr(toks, mode)))
               for h, mode in zip(got, ("abstract", "literal", "named"))) and same_words(got, text)


def test_generic_streams_equal_the_generic_lexer():
    """C-like and Python text, both comment styles; strings alone on their line (dropped after nothing or a
    ``:``, whatever parentheses, ``;`` and popped commas stand between)."""
    for c_comments in (True, False):
        for text in [C_CODE, TRICKY, "", "x\n"] + HEADERS:
            assert same_generic(text, c_comments), (c_comments, text[:80])
    assert generic_streams(C_CODE, True) is not None and generic_streams(HEADERS[0], False) is not None
    for text in ('f(x,\n  "alone"\n)\n', 'x = {\n"a":\n"alone"\n}\n', '"first"\nf(a,\n)\n"alone"\n',
                 'f(a,\n)\n"alone"\n', 'x = (\n"alone"\n)\n', 'x;\n"alone"\n', 'a:\n"one"\n"two"\n'):
        assert generic_streams(text, True) is not None and same_generic(text, True), text
    assert generic_streams('def f(x,\n  "alone"\n): pass\n', True) is None  # a ``def`` header: declined
    for text in ("x = 1ULL + 0x1.8p3f + 10ms;\n", "int ΑΣ'Β = 1;\n", "s = 'Straße İx';\n"):  # words read from the text
        assert same_generic(text, True), text
    assert generic_streams("x = 10ms;\n", True).words is None and generic_streams("x = 1;\n", True).words is not None
    assert python_streams("x = 'ΑΣ'\n").words is None and same(TRICKY) and python_streams(TRICKY).words is not None
    texts = [r["text"] for r in clean_corpus()]
    assert all(same_generic(t, r["language"] != "python") for t, r in zip(texts, clean_corpus()))
