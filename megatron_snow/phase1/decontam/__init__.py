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
Code is lexed to token streams (``lexing``): Python by a compiled regular expression that gives what Python's
``tokenize`` gives (and hands the text to ``tokenize`` where it could differ), other languages (and text
``tokenize`` rejects) by a generic lexer that gives the same stream on Python code. Every file is first read
as hashed streams without positions (``streams``: the same streams, in array operations); a file is lexed with
positions only where a code rule fires, for the matched text.

Modules, one concern each: ``config`` (settings), ``benchmarks`` (the benchmark files and their items),
``lexing`` (token streams), ``streams`` (the same streams, hashed, without positions), ``hashing`` (word /
token n-grams), ``index`` (the index built from the items), ``cache`` (the index kept in this process and on
disk), ``prefilter`` (the optional skeleton prefilter), ``rules`` (the matching rules and their ``Match``),
``decontaminator`` (the index and the rules together).
"""
from megatron_snow.phase1.decontam.benchmarks import BENCHMARK_FIELDS, HUB_IDS, load_benchmark_items, load_code_units
from megatron_snow.phase1.decontam.cache import cache_dir, index_key
from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.decontaminator import Decontaminator
from megatron_snow.phase1.decontam.lexing import CodeTokens, code_tokens, generic_tokens, python_tokens
from megatron_snow.phase1.decontam.rules import Match

__all__ = ["BENCHMARK_FIELDS", "HUB_IDS", "CodeTokens", "DecontamConfig", "Decontaminator", "Match", "cache_dir",
           "code_tokens", "generic_tokens", "index_key", "load_benchmark_items", "load_code_units", "python_tokens"]
