"""Benchmark decontamination: case-insensitive substrings of docstrings/solutions, and shared 10-grams.

Text is compared lower-cased with whitespace runs collapsed, so re-indented
pastes still match. Substring search is exact but fast: every pattern is
anchored on one of its interior word 3-grams (interior words are whole words
in any text that contains the pattern), and only files holding an anchor are
searched. N-grams shared by many benchmark items (imports, boilerplate) are
left out, since they say nothing about a particular test item.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import xxhash

from megatron_snow.benchmarks import benchmark_path, read_benchmark, resolve_benchmarks_dir

_WS = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
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


# file stem -> (benchmark, id field or None, [(field, kind)]); kind: docstring | text | code | json_list
BENCHMARK_FIELDS: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    "humaneval": ("humaneval", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "humanevalplus": ("humaneval+", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "mbpp": ("mbpp", "task_id", [("text", "text"), ("code", "code")]),
    "mbppplus": ("mbpp+", "task_id", [("prompt", "docstring"), ("canonical_solution", "code")]),
    "bigcodebench": ("bigcodebench", "task_id", [("complete_prompt", "docstring"), ("canonical_solution", "code")]),
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


def normalize(text: str) -> str:
    return _WS.sub(" ", text.lower()).strip()


def _ngram_hashes(words: list[str], n: int) -> np.ndarray:
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    th = np.fromiter((xxhash.xxh64_intdigest(w.encode()) for w in words), dtype=np.uint64, count=len(words))
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


def load_benchmark_items(cfg: DecontamConfig) -> list[tuple[str, str, str, str]]:
    """(benchmark, item id, field, text) for every configured benchmark found."""
    rows: list[tuple[str, str, str, str]] = []
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
            for fname, kind in fields:
                for t in _texts(r.get(fname), kind):
                    if t.strip():
                        rows.append((bench, item, fname, t))
    if not found and cfg.require_benchmarks:
        raise FileNotFoundError(f"decontaminate: no benchmark files found in {str(resolve_benchmarks_dir(cfg.benchmarks_dir))!r}"
                                " (set decontaminate.benchmarks_dir, or online: true)")
    return rows


class Decontaminator:
    def __init__(self, cfg: DecontamConfig, items: list[tuple[str, str, str, str]] | None = None):
        self.cfg = cfg
        items = load_benchmark_items(cfg) if items is None else items
        self.patterns: list[Pattern] = []
        self.anchors: dict[int, list[int]] = defaultdict(list)
        self.skipped_short = 0
        seen = set()
        ngram_items: dict[int, dict] = defaultdict(dict)  # ordered: first owner in benchmark order
        for bench, item, fname, text in items:
            norm = normalize(text)
            words = _WORD.findall(norm)
            for i, h in enumerate(_ngram_hashes(words, cfg.ngram).tolist()):
                if not _low_information(words[i:i + cfg.ngram]):
                    ngram_items[h][(bench, item)] = None
            if len(norm) < cfg.min_substring_chars or len(words) < 5 or (norm, bench, item) in seen:
                self.skipped_short += len(norm) < cfg.min_substring_chars
                continue
            seen.add((norm, bench, item))
            interior = words[1:-1]
            best = max(range(len(interior) - 2), key=lambda i: len("".join(interior[i:i + 3])))
            anchor = int(_ngram_hashes(interior[best:best + 3], 3)[0])
            self.anchors[anchor].append(len(self.patterns))
            self.patterns.append(Pattern(norm, bench, item, fname))
        self.anchor_keys = np.array(sorted(self.anchors), dtype=np.uint64)
        self.ngram_owner: dict[int, tuple[str, str]] = {}
        for h, owners in ngram_items.items():
            # count items per benchmark family: HumanEval/0 in humaneval and humaneval+ is one item
            if len({o[1] for o in owners}) <= cfg.ngram_max_items:
                self.ngram_owner[h] = next(iter(owners))
        self.ngram_keys = np.array(sorted(self.ngram_owner), dtype=np.uint64)
        self.benchmarks = sorted({b for b, *_ in items})

    def check(self, text: str) -> dict | None:
        """None if clean, else {reason, benchmark, item, ...} of the first match."""
        norm = normalize(text)
        words = _WORD.findall(norm)
        if len(words) >= 3 and len(self.anchor_keys):
            tri = _ngram_hashes(words, 3)
            hits = np.unique(tri[_member(tri, self.anchor_keys)])
            found = [pi for h in hits.tolist() for pi in self.anchors[h] if self.patterns[pi].text in norm]
            if found:  # report the same match whatever the hash order: first pattern in benchmark order
                p = self.patterns[min(found)]
                return {"reason": "benchmark_substring", "benchmark": p.benchmark, "item": p.item,
                        "field": p.field, "match": p.text[:80]}
        if len(words) >= self.cfg.ngram and len(self.ngram_keys):
            ng = _ngram_hashes(words, self.cfg.ngram)
            mask = _member(ng, self.ngram_keys)
            if mask.any():
                i = int(np.flatnonzero(mask)[0])  # first shared n-gram in the file
                bench, item = self.ngram_owner[int(ng[i])]
                return {"reason": "benchmark_ngram", "benchmark": bench, "item": item,
                        "match": " ".join(words[i:i + self.cfg.ngram])[:120]}
        return None
