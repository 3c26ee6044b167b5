"""The fast lexer gives the stream Python's ``tokenize`` gives (names, literals, positions), on real code and
on the cases where the two could part (strings of every form, f-strings, comments, continuations,
docstrings, indentation); where ``tokenize`` rejects the text, the fast lexer gives up too."""
from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

import pytest

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.phase1.decontam.lexing import fast_python_tokens, python_tokens, tokenize_tokens
from tests.phase1.test_decontam_quality import BENCHES, clean_corpus, solution

pytestmark = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="the fast lexer follows 3.11's tokenize")

TRICKY = r'''#!/usr/bin/env python
"""Module docstring: dropped."""
from __future__ import annotations
import os, re  # two names
x = 1; y = 0x_1F + 0o17 + 0b1_01 + 1_000 + 1.5e-3 + .5 + 5. + 3j + 1.5J + 1e5j + 00 + 0_0
s = 'single' "double" r'\d+\w' b'\x00' Rb"raw\\" u'uni' f'{x!r:>{y}}' F"{ {'a': 1}['a'] }" rf'{x}\n'
t = """triple "with" quotes
spanning \
lines""" + \
    QQQand 'more' QQQ
esc = "tab\there", 'it\'s', "back\\slash", "\N{BULLET}", '\u00e9', "bad \d escape"


class K:
    'a single-quoted docstring'
    attr: dict[str, int] = {}

    def method(self, a: int, *args: str, b: "K" = None, **kw) -> list[int]:
        """Docstring."""
        "a string statement"
        "two" "strings"
        value = ("a"
                 "b")  # implicit concatenation inside brackets: kept
        if a:
            return [a,
                    b, ]  # trailing comma
        elif a is not None and \
                b:
            pass
        lam = lambda q, r=2: q ** r // 3 @ a
        a, b, = b, a
        a <<= 2; a >>= 1; a **= 2; a //= 3; a @= b; a ^= 1; a |= 2; a &= 3; a %= 4
        print(f"{value=}", end="")
        return ...


async def gen():
	yield await other()  # tab indentation
	for i in range(10):
		if i % 2 == 0:
			continue


@decorator(arg=[1, 2, 3])
def último(ä, *, ß=None):
    return ä.real if (n := len(ß or [])) > 0 else -1
'''.replace("QQQ", "'" * 3)  # a triple single quote would end this literal


def same_stream(text: str) -> bool:
    """Same symbols, and the same character span of each token (tokenize's are (row, col) pairs)."""
    fast, ref = fast_python_tokens(text), tokenize_tokens(text)
    assert fast is not None and ref is not None
    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    return (fast.abstract, fast.literal, fast.named) == (ref.abstract, ref.literal, ref.named) and \
        fast.start + fast.end == [line_starts[r - 1] + c for r, c in ref.start + ref.end]


def test_fast_lexer_equals_tokenize_on_every_string_form_and_layout():
    assert same_stream(TRICKY)
    toks = fast_python_tokens(TRICKY)
    assert "Sa single-quoted docstring" not in toks.literal and "Sa string statement" not in toks.literal
    assert "Sa" in toks.literal and "Stab\there" in toks.literal  # kept, with escapes read
    for piece in ("x = 1\n", "", "\n\n", "  indented = 1\n", "x = 'no newline'", "def f():\n    'doc'",
                  "if x:\n    y = 1\n  # comment at another indent\n    z = 2\n", "x = [\n1,\n  2]\n",
                  "a = 1 \\\n  + 2\n", "'''only a docstring'''\n", "f(**{'a': 1})\n", "x = 1  # trailing\n"):
        assert same_stream(piece), piece


@pytest.mark.parametrize("text", [
    "x = $y\n", "x = 'unterminated\n", 'x = """unterminated\n', "x = (1,\n", "if x:\n        a\n    b\n",
    "x = 1 \\\n", "x = 1)\n", "x = `y`\n", "x = 1\r\ny = 2\r\n", "print 'py2'\n", "x = 10L\n", "x = 0777\n",
    "x = 1if y else 2\n", "x = a ? b : c\n", "x = '→'\n", "x = →\n",
])
def test_where_tokenize_may_part_the_fast_lexer_gives_up_or_agrees(text):
    fast, ref = fast_python_tokens(text), tokenize_tokens(text)
    if fast is not None:
        assert ref is not None and same_stream(text), text
    p = python_tokens(text)
    assert (p is None) == (ref is None) and (p is None or p.abstract == ref.abstract)


def real_python_texts(benchmarks_dir) -> list[str]:
    """The shipped clean corpus, 200 files of the standard library, the benchmarks' solutions."""
    texts = [r["text"] for r in clean_corpus() if r["language"] == "python"]
    stdlib = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    texts += [p.read_text(encoding="utf-8", errors="replace") for p in stdlib[::max(1, len(stdlib) // 200)]]
    return texts + [solution(r, stem) for stem in BENCHES
                    for r in read_benchmark(benchmark_path(str(benchmarks_dir), stem))[:100]]


def test_fast_lexer_equals_tokenize_on_real_code(benchmarks_dir):
    """The shipped clean corpus, 200 files of the standard library, the benchmarks' solutions."""
    texts = real_python_texts(benchmarks_dir)
    decided = 0
    for text in texts:
        if fast_python_tokens(text) is None:
            assert python_tokens(text) is tokenize_tokens(text) is None or \
                python_tokens(text).abstract == tokenize_tokens(text).abstract
            continue
        decided += 1
        assert tokenize_tokens(text) is not None and same_stream(text), text[:200]
    assert decided >= 0.95 * len(texts), (decided, len(texts))
