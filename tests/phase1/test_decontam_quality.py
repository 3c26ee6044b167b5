"""Decontamination quality on edited copies of benchmark functions and on a fixed corpus of clean code
(issue 15, criteria 2 and 3; issue 26, criterion 1).

Planted copies are made here from the shipped HumanEval+, MBPP+, BigCodeBench and EvoEval files
(``decontam_edits.py``): as published, the solution alone, reformatted, renamed, renamed and pasted into
a real module, the test block alone, and six edits that change the normalised stream (statements
reordered, lines and comments inserted, type hints added or removed, ``for`` rewritten as ``while``,
comprehension <-> loop, a helper function extracted), each renamed too, plus the solution split in two
places of a real module. Docstrings are dropped from every edited copy: the text rules cannot help, the
code rules must. Recall is reported per benchmark, per edit and per function size (under / over 25
tokens of the normalised stream).

Clean code: ``data/clean_code.jsonl.xz``, 1,396 files of real code shipped with the tests (CPython's
standard library, numpy, scipy, click, attrs, fsspec, torch and pyarrow headers; sources, versions and
licences in ``data/README.md``), the same on every machine.

Measured (seeded; 30 items per benchmark plus HumanEval/4, 7, 26, 61, 129 and EvoEval/3), functions of
25+ tokens, all benchmarks: renamed 128/128, reformatted 128/128, type hints added/removed 127/127,
embedded 128/128, test blocks 67/67 (all sizes), statements reordered 31/35, lines inserted 86/128,
helper extracted 95/121, split in two places 94/121, for -> while 38/66, comprehension <-> loop 10/18;
clean files flagged 0/1396. Before the rules were tuned (bars committed first): renamed EvoEval-difficult
22/31 and reformatted 25/31 (EvoEval prompts lack a final newline, so the docstring ran into the first
statement), HumanEval/55 missed (``a, b, = b, a + b``), type hints 70/127, MBPP/794's three-assert test
block missed (too short for k-grams), inserted 51/128, helper 62/121, for -> while 14/66, comprehension
5/18, reordered 25/35 (then code_containment 0.8 and code_long_grams 40; now 0.7 and 20, which flag no
more of 1,500 real files than before).
"""
from __future__ import annotations

import json
import lzma
import random
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.phase1.decontam import (
    DecontamConfig, Decontaminator, code_tokens, generic_tokens, python_tokens,
)
from tests.phase1.decontam_edits import EDITS, edited, reference_stream, reformat, rename, split_in_host
from tests.results import check_or_write

BENCHES = ("humanevalplus", "mbppplus", "bigcodebench", "evoeval_difficult", "evoeval_creative")
CLEAN_CODE = Path(__file__).parent / "data" / "clean_code.jsonl.xz"
N_ITEMS = 30  # per benchmark, plus the named misses
NAMED = {"humanevalplus": ["HumanEval/4", "HumanEval/7", "HumanEval/26", "HumanEval/61", "HumanEval/129"],
         "evoeval_difficult": ["EvoEval/3"], "evoeval_creative": ["EvoEval/3"]}
SHORT = 25  # tokens of ``reference_stream``: functions under it are reported apart


def solution(r: dict, stem: str) -> str:
    if stem == "mbppplus":
        return r["canonical_solution"]
    prompt = r["complete_prompt"] if stem == "bigcodebench" else r["prompt"]
    return prompt + ("" if prompt.endswith("\n") else "\n") + r["canonical_solution"]


def checks_of(r: dict, stem: str) -> str | None:
    return r["assertion"] if stem == "mbppplus" else r.get("test")


def top_level_cut(text: str) -> int:
    """Offset of a top-level def/class line in the second half of a module (or its end)."""
    m = re.compile(r"^(?:def|class) ", re.M).search(text, len(text) // 2)
    return m.start() if m else len(text)


def clean_corpus() -> list[dict]:
    """The shipped clean files: {package, version, license, path, language, text}."""
    with lzma.open(CLEAN_CODE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def clean_files(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(name, text, language) of ``n`` shipped clean files, Python first (hosts for pasted copies)."""
    rows = clean_corpus()
    rng = random.Random(seed)
    py = [r for r in rows if r["language"] == "python"]
    other = [r for r in rows if r["language"] != "python"]
    pick = rng.sample(py, min(len(py), n - n // 5)) + rng.sample(other, min(len(other), n // 5))
    return [(f"{r['package']}/{r['path']}", r["text"], r["language"]) for r in pick]


def host_module() -> str:
    """A shipped clean Python module of 5-8 KB with top-level functions (the same one everywhere)."""
    return next(r["text"] for r in sorted(clean_corpus(), key=lambda r: r["path"])
                if r["language"] == "python" and 5000 < len(r["text"]) and "\ndef " in r["text"][len(r["text"]) // 2:])


@pytest.fixture(scope="module")
def dec(benchmarks_dir):
    return Decontaminator(DecontamConfig(benchmarks_dir=str(benchmarks_dir)))


def _size(code: str) -> str:
    return "short" if len(reference_stream(code)) < SHORT else "long"


def plant(benchmarks_dir) -> list[tuple[str, str, str, str, str]]:
    """[(benchmark stem, item id, size, variant, text)]; edits that leave the code as it was up to names
    and layout (``reference_stream``), or do not apply, are left out: every edit variant changes the code."""
    rng = random.Random(0)
    hosts = [t for _, t, lang in clean_files(200, seed=1) if lang == "python" and 2000 < len(t) < 6000]
    out = []
    for stem in BENCHES:
        recs = read_benchmark(benchmark_path(str(benchmarks_dir), stem))
        named = [r for r in recs if r["task_id"] in NAMED.get(stem, [])]
        for r in named + rng.sample([r for r in recs if r not in named], N_ITEMS):
            code = solution(r, stem)
            size = _size(code)
            host = rng.choice(hosts)
            cut = top_level_cut(host)
            base = reference_stream(code)
            variants = [("verbatim", code), ("solution_only", r["canonical_solution"]),
                        ("reformatted", reformat(code)), ("renamed", rename(code, rng)),
                        ("embedded", host[:cut] + "\n" + rename(code, rng) + "\n" + host[cut:])]
            for kind in EDITS:
                text = edited(code, kind, rng)
                if text is not None and reference_stream(text) != base:
                    variants.append((kind, text))
            split = split_in_host(code, host, rng)
            if split is not None:
                variants.append(("split", split))
            if checks_of(r, stem):
                variants.append(("tests_only", checks_of(r, stem)))
            out += [(stem, r["task_id"], size, v, t) for v, t in variants]
    return out


@pytest.fixture(scope="module")
def planted(benchmarks_dir):
    return plant(benchmarks_dir)


def test_normalised_stream_ignores_names_literals_and_layout():
    a = ('def total(xs, start=0):\n    """Sum."""\n    acc = start  # running\n'
         '    for x in xs:\n        acc += x * 2\n    return acc\n')
    b = "def f(values,start = 10,):\n  s=start\n  for v in values: s += (v*7)\n  return s\n"
    assert code_tokens(a).abstract == code_tokens(b).abstract
    assert code_tokens(a).abstract[:6] == ["def", "I", "I", ",", "I", "="]  # parentheses dropped
    assert code_tokens(a).literal != code_tokens(b).literal  # the literal stream keeps values
    assert "sum" in code_tokens("y = sum(x.values())").abstract  # builtins and attributes stay
    assert "values" in code_tokens("y = sum(x.values())").abstract
    assert python_tokens("x = $y\n") is None  # not Python: the generic lexer reads it
    assert generic_tokens("int f(int a) { return a % 10; } // c", c_comments=True).abstract == \
        ["int", "I", "int", "I", "{", "return", "I", "%", "N", "}"]  # int: a Python builtin, kept


def test_generic_lexer_matches_tokenize_on_benchmark_code(benchmarks_dir):
    same = total = 0
    for stem in BENCHES:
        for r in read_benchmark(benchmark_path(str(benchmarks_dir), stem))[:60]:
            code = solution(r, stem)
            total += 1
            same += generic_tokens(code).abstract == python_tokens(code).abstract
    assert same / total >= 0.97, (same, total)


def recall_table(dec: Decontaminator, planted) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(benchmark, variant, size) -> (caught, planted); prints the table. Every drop names benchmark,
    item, field and the text that matched."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    reasons: dict[str, Counter] = defaultdict(Counter)
    missed = []
    for stem, item, size, variant, text in planted:
        hit = dec.check(text, "python")
        c = counts[(stem, variant, size)]
        c[1] += 1
        if hit is not None:
            assert hit["benchmark"] and hit["item"] and hit["field"] and hit["match"], hit
            c[0] += 1
            reasons[variant][hit["reason"]] += 1
        else:
            missed.append((item, variant, size))
    variants = list(dict.fromkeys(v for _, _, _, v, _ in planted))
    print("\nrecall (caught/planted), functions under | over 25 normalised tokens")
    print(f"{'variant':14s}" + "".join(f"{s[:16]:>22s}" for s in BENCHES) + f"{'all':>22s}")
    for v in variants:
        row = f"{v:14s}"
        for stem in list(BENCHES) + [None]:
            cell = []
            for size in ("short", "long"):
                got = [counts[(b, v, size)] for b in BENCHES if stem in (None, b)]
                n, k = sum(x[1] for x in got), sum(x[0] for x in got)
                cell.append(f"{k}/{n}" if n else "-")
            row += f"{' | '.join(cell):>22s}"
        print(row + "  " + ", ".join(f"{r} {n}" for r, n in reasons[v].most_common()))
    print("missed:", " ".join(f"{i}:{v}:{s}" for i, v, s in missed))
    return {k: tuple(v) for k, v in counts.items()}


def _recall(table, variant: str, size: str | None = None, stem: str | None = None) -> float:
    got = [v for (b, var, s), v in table.items() if var == variant and size in (None, s) and stem in (None, b)]
    n = sum(x[1] for x in got)
    return sum(x[0] for x in got) / n if n else 1.0


# Bars set before the rules were tuned (issue 26): renamed and reformatted functions of 25+ tokens
# >= 0.95 in every benchmark, test blocks >= 0.95; edits that change the stream >= 0.8 (25+ tokens).
BARS = {("renamed", "long"): 0.95, ("reformatted", "long"): 0.95, ("verbatim", "long"): 0.95,
        ("tests_only", None): 0.95}
EDIT_BAR = 0.8


@pytest.fixture(scope="module")
def table(dec, planted):
    return recall_table(dec, planted)


@pytest.mark.slow
def test_renamed_reformatted_and_test_blocks_are_caught_in_every_benchmark(table):
    for (variant, size), bar in BARS.items():
        for stem in BENCHES:
            r = _recall(table, variant, size, stem)
            assert r >= bar, (stem, variant, size, r)
    # every edit kind planted on enough items to mean something
    assert all(sum(v[1] for (_, var, s), v in table.items() if var == kind and s == "long") >= 30
               for kind in ("inserted", "type_hints", "helper", "split", "for_while")), table


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="not met: edits that insert, move or rewrite statements break the "
                   "k-gram runs the code rules need (measured 25+ tokens: inserted 0.67, helper 0.79, split 0.78, "
                   "for_while 0.58, comprehension 0.56; before tuning 0.40, 0.44, 0.44, 0.21, 0.31)")
def test_edited_copies_meet_the_edit_bar(table):
    low = {v: round(_recall(table, v, "long"), 3) for v in ("embedded", *EDITS, "split")
           if _recall(table, v, "long") < EDIT_BAR}
    assert not low, low


@pytest.mark.slow
def test_pipeline_drop_records_rule_benchmark_item_field_and_match(tmp_path, benchmarks_dir):
    """Through the phase-1 decontaminate stage: each drop keeps what matched; the funnel counts the rule."""
    from megatron_snow.dist import Comm
    from megatron_snow.funnel import Funnel
    from megatron_snow.phase1.ingest import IngestConfig, SourceConfig
    from megatron_snow.phase1.pipeline import Phase1Config, run_phase1
    from megatron_snow.records import iter_records

    he = {r["task_id"]: r for r in read_benchmark(benchmark_path(str(benchmarks_dir), "humanevalplus"))}
    mbpp = {r["task_id"]: r for r in read_benchmark(benchmark_path(str(benchmarks_dir), "mbppplus"))}
    bcb = {r["task_id"]: r for r in read_benchmark(benchmark_path(str(benchmarks_dir), "bigcodebench"))}
    rng = random.Random(3)
    root = tmp_path / "repos" / "r"
    root.mkdir(parents=True)
    planted = {
        "long_renamed.py": (rename(solution(he["HumanEval/129"], "humanevalplus"), rng), "HumanEval/129"),
        "short_renamed.py": (rename(solution(he["HumanEval/0"], "humanevalplus"), rng), "HumanEval/0"),
        "bcb_renamed.py": (rename(solution(bcb["BigCodeBench/3"], "bigcodebench"), rng), "BigCodeBench/3"),
        "test_helpers.py": ("import unittest\n\n" + checks_of(mbpp["Mbpp/2"], "mbppplus"), "Mbpp/2"),
    }
    for name, (text, _) in planted.items():
        (root / name).write_text(text)
    (root / "clean_module.py").write_text(host_module())
    cfg = Phase1Config(output_dir=str(tmp_path / "out"), progress=False,
                       stages=["ingest", "filter", "decontaminate"],
                       ingest=IngestConfig(sources=[SourceConfig(kind="directory", path=str(tmp_path / "repos"))]))
    cfg.exact_dedup.enabled = cfg.near_dedup.enabled = cfg.pii.enabled = cfg.grouping.enabled = False
    cfg.decontaminate = DecontamConfig(benchmarks_dir=str(benchmarks_dir))
    run_phase1(cfg, comm=Comm(None))
    out = tmp_path / "out" / "05_decontaminate"
    dropped = {r.path: r.meta["dropped"] for r in iter_records(out / "dropped")}
    kept = {r.path for r in iter_records(out)}
    assert kept == {"clean_module.py"} and set(dropped) == set(planted)
    for name, (text, item) in planted.items():
        d = dropped[name]
        assert d["stage"] == "decontaminate" and str(d["item"]).split("/")[-1] == item.split("/")[-1], (name, d)
        assert d["benchmark"] and d["field"] and d["match"] and d["match"] in text
    reasons = Funnel.read(out / "funnel.json").reasons()
    assert sum(reasons.values()) == len(planted)
    assert reasons == dict(Counter(d["reason"] for d in dropped.values()))
    assert {"benchmark_code", "benchmark_test"} <= set(reasons), reasons


GENERIC = [  # helpers any codebase has; several are, renamed, the whole of an MBPP solution
    "def is_even(x):\n    return x % 2 == 0\n", "def total(values):\n    return sum(values)\n",
    "def smaller(a, b):\n    return min(a, b)\n", "def concat(parts):\n    return ''.join(parts)\n",
    "def shout(s):\n    return s.upper()\n", "def code_of(c):\n    return ord(c)\n",
    "def div(n, m):\n    return n // m\n", "def odd(n):\n    return 2 * n + 1\n",
    "def to_bytes(s):\n    return s.encode('utf-8')\n", "def numbers(s):\n    return re.findall(r'\\d+', s)\n",
    "def longest(words):\n    return max(len(w) for w in words)\n",
]


def test_short_rules_leave_generic_code_in_real_files(dec):
    """Short generic functions inside a real module are never flagged; a file that is nothing but a
    short benchmark function (renamed) is, by benchmark_code_file; a short function with a rare
    literal (an MBPP regex) is caught inside a real module too, by benchmark_code_literal."""
    host = host_module()
    cut = top_level_cut(host)
    for fn in GENERIC:
        assert dec.check(host[:cut] + "\n" + fn + "\n" + host[cut:], "python") is None, fn
    same = {"563", "725"}  # MBPP items 563 and 725 have this one solution
    lone = dec.check("import re\n\n\ndef pick(t):\n    return re.findall('\"(.*?)\"', t)\n", "python")
    assert lone and lone["reason"] == "benchmark_code_file" and lone["item"].split("/")[-1] in same, lone
    inside = dec.check(host[:cut] + "\ndef pick(t):\n    return re.findall(r'\"(.*?)\"', t)\n" + host[cut:], "python")
    assert inside and inside["reason"] == "benchmark_code_literal" and inside["item"].split("/")[-1] in same, inside
    assert inside["match"].startswith("def pick(t):")
    # the file rule needs the file to be the function: one more statement and it is ordinary code again
    assert dec.check("def total(values):\n    return sum(values)\n\nprint(total([1]))\n", "python") is None


@pytest.fixture(scope="module")
def clean_flagged(dec) -> tuple[int, list[tuple[str, str, str, str]]]:
    """(files, [(file, reason, item, match)]) of all rules together on the shipped clean corpus."""
    rows = clean_corpus()
    return len(rows), [(f"{r['package']}/{r['path']}", h["reason"], h["item"], h["match"][:80]) for r in rows
                       if (h := dec.check(r["text"], r["language"]))]


@pytest.mark.slow
def test_clean_real_code_false_positive_rate(clean_flagged):
    """All rules together on the shipped clean corpus (1,396 files: 996 Python, 400 C/C++ headers):
    <= 0.2% flagged."""
    n_rows, flagged = clean_flagged
    assert n_rows == 1396  # the corpus is fixed: 0.2% is 2 files
    rate = len(flagged) / n_rows
    print(f"\nclean files flagged: {len(flagged)} / {n_rows} = {rate:.4f}")
    for f in flagged:
        print("  ", f)
    assert rate <= 0.002, flagged


@pytest.mark.slow
def test_prefilter_keeps_every_verdict(dec, planted, benchmarks_dir):
    """The skeleton prefilter (``prefilter: true``) only decides which files are tokenized: on a third of the
    planted copies and half the shipped clean files the verdicts (rule, benchmark, item, field, match) are
    the same (all of them: measured once, 2,992 of 2,992)."""
    pre = Decontaminator(DecontamConfig(benchmarks_dir=str(benchmarks_dir), prefilter=True))
    assert pre.prefilter is not None and dec.prefilter is None
    cases = [(text, "python") for *_, text in planted[::3]] + [(r["text"], r["language"]) for r in clean_corpus()[::2]]
    skipped = sum(not pre.prefilter.passes(t, lang) for t, lang in cases)
    assert [pre.check(t, lang) for t, lang in cases] == [dec.check(t, lang) for t, lang in cases]
    assert skipped >= 100, skipped  # it does skip files (measured 241 of 1,230)


@pytest.mark.slow
def test_measured_quality_is_the_committed_result(table, clean_flagged):
    """docs/results/decontam_quality.json holds this module's measurement (README.md quotes it, rebuilt by
    tests/test_claims.py): fails when the rules or the planted set change what is caught and the file was not
    rewritten (MEGATRON_SNOW_WRITE_RESULTS=1)."""
    recall: dict = defaultdict(lambda: defaultdict(dict))  # variant -> benchmark -> size -> "caught/planted"
    for (stem, variant, size), (caught, planted_n) in sorted(table.items()):
        if planted_n:
            recall[variant][stem][size] = f"{caught}/{planted_n}"
    n_files, flagged = clean_flagged
    check_or_write("decontam_quality", {
        "made_by": "MEGATRON_SNOW_WRITE_RESULTS=1 python -m pytest tests/phase1/test_decontam_quality.py "
                   "-k committed_result",
        "short_tokens": SHORT, "bars": {f"{v}/{s or 'all'}": b for (v, s), b in BARS.items()}, "edit_bar": EDIT_BAR,
        "recall": recall, "clean_corpus": {"files": n_files, "flagged": [f[0] for f in flagged]}})
