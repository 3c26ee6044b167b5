"""A small, deterministic corpus of real code, with planted cases.

Base files: CPython 3.11.7's standard library and C headers, JavaScript of npm's bundled packages and pyenv's
Bash scripts, all from the archives the repository ships (tests/shipped_files.py), the same on every machine.
Planted: exact and edited near duplicates, benchmark solutions pasted into files, PII, minified and generated files,
invalid UTF-8, binary, empty, and a one-line multi-megabyte file.
``build_corpus`` returns the expectations the tests check.
"""
from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from megatron_snow.phase1.filters import FilterThresholds, filter_reason
from megatron_snow.phase1.minhash import ShingleHasher, jaccard
from tests.shipped_files import clean_code_files, cpython_files, js_shell_files, stdlib_package

def _usable(text: str, name: str, lo: int = 1500, hi: int = 30000) -> bool:
    return (lo <= len(text.encode()) <= hi and "\x00" not in text
            and filter_reason(text, name, FilterThresholds()) is None)


def _spread(items: list, n: int) -> list:
    """n items spread evenly over the (sorted) list."""
    if len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def _shipped(language: str, n: int) -> list[tuple[str, str]]:
    """n usable (path, text) of one language of the shipped JavaScript/shell archive, spread over it."""
    return _spread([(p, t) for p, _, t in js_shell_files(language) if _usable(t, p)], n)


def _shipped_stdlib() -> list[tuple[str, str]]:
    """(path relative to Lib/, text) of the shipped standard-library files, each path once, sorted."""
    files: dict[str, str] = {}
    for name, lang, text in cpython_files():
        if lang == "python":  # positives/<module>.py or repos/<package>/...
            files[name.split("/", 1)[1]] = text
    for name, _, text in clean_code_files("cpython"):
        files.setdefault(name, text)
    skip = {"site-packages", "test", "tests", "idlelib", "lib2to3"}
    return sorted((k, v) for k, v in files.items() if not skip & set(k.split("/")) and _usable(v, k))


def shingle_set(text: str) -> set:
    return set(ShingleHasher().shingles(text, 5).tolist())


@dataclass
class Corpus:
    root: Path
    n_files: int = 0
    exact_pairs: list[tuple[str, str]] = field(default_factory=list)  # (original rel path, copy rel path)
    near_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # (original, edited copy, true Jaccard)
    far_pairs: list[tuple[str, str, float]] = field(default_factory=list)  # heavily edited: Jaccard < 0.6, keep both
    expect_reason: dict[str, tuple[str, str]] = field(default_factory=dict)  # rel path -> (stage, reason)
    benchmark_hits: dict[str, tuple[set, str]] = field(default_factory=dict)  # rel path -> (benchmarks, item)
    pii_file: str = ""


def _edit(text: str, rng: random.Random, frac: float) -> str:
    lines = text.split("\n")
    idx = sorted(rng.sample(range(len(lines)), max(1, int(len(lines) * frac))))
    for i in idx:
        op = rng.random()
        if op < 0.4:
            lines[i] = lines[i] + "  # edited"
        elif op < 0.7:
            lines[i] = ""
        else:
            lines[i] = lines[i].replace("a", "o", 2)
    return "\n".join(lines) + "\n# fork maintained elsewhere\n"


def build_corpus(root: Path, benchmarks_dir: Path | None, n_py: int = 130, n_h: int = 50, n_js: int = 25,
                 n_sh: int = 20) -> Corpus:
    root = Path(root)
    c = Corpus(root)
    all_py = _shipped_stdlib()
    py = _spread(all_py, n_py)
    hosts = [p for p in _spread(all_py, n_py + 40) if p not in set(py)][:5]  # not in the corpus
    headers = _spread([(name.split("/", 2)[2], text) for name, _, text in stdlib_package("cpython-include")
                       if _usable(text, name)], n_h)
    js = _shipped("javascript", n_js)
    sh = _shipped("shell", n_sh)
    base: list[tuple[str, bytes]] = []
    for rel, text in py:
        parts = rel.split("/")
        repo = "cpython-" + (parts[0].replace(".py", "") if len(parts) > 1 else "root")
        base.append((f"{repo}/{rel}", text.encode()))
    base += [(f"cpython-include/{rel}", text.encode()) for rel, text in headers]
    base += [(f"js-shipped/{i:03d}-{Path(p).name}", t.encode()) for i, (p, t) in enumerate(js)]
    base += [(f"shell-shipped/{i:03d}-{Path(p).name}", t.encode()) for i, (p, t) in enumerate(sh)]
    files: dict[str, bytes] = dict(base)
    rng = random.Random(7)

    # exact duplicates: verbatim copies in a "zz-forks" repo (walked last, so the copy is the one dropped)
    for rel, data in rng.sample(base, 10):
        copy = f"zz-forks/exact/{rel.split('/', 1)[1]}"
        files[copy] = data
        c.exact_pairs.append((rel, copy))
        c.expect_reason[copy] = ("exact_dedup", "exact_duplicate")

    # near duplicates: edited copies with true shingle Jaccard in [0.75, 0.97]
    py_base = [(r, d) for r, d in base if r.endswith(".py") and len(d) > 3000]
    for rel, data in rng.sample(py_base, min(40, len(py_base))):
        text = data.decode()
        for frac in (0.06, 0.04, 0.02):
            edited = _edit(text, random.Random(rel), frac)
            j = jaccard(shingle_set(text), shingle_set(edited))
            if 0.75 <= j <= 0.97:
                copy = f"zz-forks/near/{rel.split('/', 1)[1]}"
                files[copy] = edited.encode()
                c.near_pairs.append((rel, copy, j))
                c.expect_reason[copy] = ("near_dedup", "near_duplicate")
                break
        if len(c.near_pairs) >= 30:
            break
    # heavily edited copies (true Jaccard 0.3..0.6): not duplicates, both must stay
    near_src = {o for o, _, _ in c.near_pairs}
    for rel, data in rng.sample([x for x in py_base if x[0] not in near_src], min(30, len(py_base) - len(near_src))):
        text = data.decode()
        for frac in (0.25, 0.35, 0.45):
            edited = _edit(text, random.Random(rel + "far"), frac)
            j = jaccard(shingle_set(text), shingle_set(edited))
            if 0.3 <= j <= 0.6:
                copy = f"zz-forks/far/{rel.split('/', 1)[1]}"
                files[copy] = edited.encode()
                c.far_pairs.append((rel, copy, j))
                break
        if len(c.far_pairs) >= 10:
            break

    # filter cases
    js_text = files[next(r for r in files if r.startswith("js-shipped/"))].decode()
    minified = "".join(line.strip() for line in js_text.split("\n")).replace(" ", "") * 4
    files["planted/static/app.js"] = ("/* app */" + minified + "\n").encode()
    files["planted/static/vendor.min.js"] = ("var x=1;\n" * 10 + "function g(a,b){return a+b}\n").encode()
    files["planted/gen/messages_pb2.py"] = (
        "# -*- coding: utf-8 -*-\n# Generated by the protocol buffer compiler.  DO NOT EDIT!\n"
        "# source: messages.proto\n" + "".join(f"FIELD_{i} = {i}\n" for i in range(200))).encode()
    files["planted/empty.py"] = b""
    files["planted/blank.sh"] = b"\n\n   \n"
    files["planted/huge_one_line.js"] = ("var data = [" + "1234567, " * 300_000 + "0];").encode()  # ~2.7 MB
    files["planted/layout.php"] = (b'<?xml version="1.0" encoding="UTF-8"?>\n<root><a>1</a></root>\n'
                                   + b"<?php echo 1; ?>\n" * 20)
    for rel, reason in (("planted/static/app.js", "minified"), ("planted/static/vendor.min.js", "minified"),
                        ("planted/gen/messages_pb2.py", "auto_generated"), ("planted/empty.py", "empty"),
                        ("planted/blank.sh", "empty"), ("planted/huge_one_line.js", "too_large"),
                        ("planted/layout.php", "xml")):
        c.expect_reason[rel] = ("filter", reason)
    # ingest cases
    files["planted/latin1.py"] = "# caf\xe9 na\xefve\nprint('r\xe9sum\xe9')\n".encode("latin-1")
    files["planted/blob.c"] = b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 8
    files["planted/README.md"] = b"# readme\n"
    c.expect_reason.update({"planted/latin1.py": ("ingest", "invalid_utf8"), "planted/blob.c": ("ingest", "binary"),
                            "planted/README.md": ("ingest", "unsupported_language")})
    files["planted/analysis.ipynb"] = json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Sales analysis\n", "Load and summarise."]},
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 1,
         "source": ["import statistics\n", "sales = [3, 5, 8, 13]\n", "print(statistics.mean(sales))\n"]},
    ]}).encode()

    # PII
    c.pii_file = "planted/deploy/config.py"
    files[c.pii_file] = (
        '"""Deployment settings. Maintainer: Jane Roe <jane.roe@example.org>."""\n'
        'ADMIN_EMAIL = "ops-team@corp-mail.com"\n'
        'DB_HOST = "34.201.77.12"        # public address: redacted\n'
        'CACHE_HOST = "10.0.0.12"        # private address: kept\n'
        'DNS = "8.8.8.8"                 # public resolver: kept\n'
        'LIB_VERSION = "version 2.4.1.0"  # version number: kept\n'
        'AWS_ACCESS_KEY_ID = "AKIAQ7XJ3M5KZ2LPW8RT"\n'
        'GITHUB_TOKEN = "ghp_Zt9x2Lq8Vb4Nw6Hj1Kc3Mf5Rd7Sp0Ga2Ye4U"\n'
        'api_key = "f83Kd92LmQ0zX7vB4nR1tY6u"\n'
        'PRIVATE = """-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn\n'
        '-----END RSA PRIVATE KEY-----"""\n'
        "def connect():\n    return (DB_HOST, CACHE_HOST, DNS)\n").encode()

    # benchmark solutions pasted into otherwise ordinary files
    if benchmarks_dir is not None:
        def load(name):
            with gzip.open(Path(benchmarks_dir) / name, "rt", encoding="utf-8") as f:
                return [json.loads(line) for line in f if line.strip()]

        he = load("humaneval.jsonl.gz")
        mbpp = {r["task_id"]: r for r in load("mbpp.jsonl.gz")}
        bcb = load("bigcodebench.jsonl.gz")
        gsm = load("gsm8k_test.jsonl.gz")
        cases = {
            "planted/bench/utils_he.py": ("import os\n\n" + he[0]["prompt"] + he[0]["canonical_solution"] + "\n\n",
                                          {"humaneval", "humaneval+", "evoeval_verbose", "evoeval_concise"},
                                          "HumanEval/0"),
            "planted/bench/helpers_mbpp.py": ("# helpers\n" + mbpp[2]["code"].replace("\r\n", "\n") + "\n",
                                              {"mbpp"}, "2"),
            "planted/bench/task_bcb.py": (bcb[0]["complete_prompt"] + bcb[0]["canonical_solution"] + "\n",
                                          {"bigcodebench"}, "BigCodeBench/0"),
            # only part of a docstring: no full substring, but shared 10-grams
            "planted/bench/pick_longest.py": ("def pick(xs):\n"
                                              "    # Return the first one in case of multiple strings"
                                              " of the same length.\n"
                                              "    return max(xs, key=len) if xs else None\n",
                                              {"humaneval", "humaneval+", "evoeval_verbose", "evoeval_concise"},
                                              "HumanEval/12"),
            "planted/bench/ducks.py": ('"""' + gsm[0]["question"] + '"""\nprint(16 - 3 - 4)\n', {"gsm8k"}, "gsm8k/0"),
        }
        for (_, host), (rel, (snippet, benches, item)) in zip(hosts, sorted(cases.items())):
            # paste into the middle of a real file, re-indented differently (substring match is whitespace-blind)
            mid = len(host) // 2
            cut = host.rfind("\n", 0, mid) + 1
            files[rel] = (host[:cut] + snippet.replace("    ", "  ") + host[cut:]).encode()
            c.benchmark_hits[rel] = (benches, item)
            c.expect_reason[rel] = ("decontaminate", "")

    for rel, data in sorted(files.items()):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    c.n_files = len(files)
    return c
