"""The benchmarks decontamination knows: which fields of each file are text, code or tests; their loader;
the names each item's own code defines."""
from __future__ import annotations

import ast
import json
import re
from collections import defaultdict

from megatron_snow.benchmarks import benchmark_path, read_benchmark, resolve_benchmarks_dir
from megatron_snow.phase1.decontam.config import DecontamConfig
from megatron_snow.phase1.decontam.lexing import KEEP_NAMES

_DOCSTRING = re.compile(r'("""|\'\'\')(.*?)\1', re.DOTALL)
TextItem = tuple[str, str, str, str]  # (benchmark, item id, field, text)
CodeItem = tuple[str, str, str, str, str]  # (benchmark, item id, field, kind: function | tests, code)

# file stem -> (benchmark, id field or None, [(field, kind)]); kind: docstring | text | code | json_list
# (text rules; code and json_list also code rules, after the item's docstring-kind prompt) | tests |
# tests_list (test code: code rules only)
BENCHMARK_FIELDS: dict[str, tuple[str, str | None, list[tuple[str, str]]]] = {
    "humaneval": ("humaneval", "task_id", [("prompt", "docstring"), ("canonical_solution", "code"), ("test", "tests")]),
    "humanevalplus": ("humaneval+", "task_id", [("prompt", "docstring"), ("canonical_solution", "code"),
                                                ("test", "tests")]),
    "mbpp": ("mbpp", "task_id", [("text", "text"), ("code", "code"), ("test_list", "tests_list")]),
    "mbppplus": ("mbpp+", "task_id", [("prompt", "docstring"), ("canonical_solution", "code"),
                                      ("assertion", "tests")]),
    "bigcodebench": ("bigcodebench", "task_id", [("complete_prompt", "docstring"), ("canonical_solution", "code"),
                                                 ("test", "tests")]),
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


TEXT_KINDS = ("docstring", "text", "code", "json_list")
_MAX_TEST_CHARS = 3000


def load_benchmark_items(cfg: DecontamConfig) -> list[TextItem]:
    """(benchmark, item id, field, text) for the text rules, for every configured benchmark found."""
    return load(cfg)[0]


def load_code_units(cfg: DecontamConfig) -> list[CodeItem]:
    """(benchmark, item id, field, kind, code) for the code rules: kind "function" (the item's prompt,
    when it is a docstring-kind field, then the solution) or "tests" (its test code)."""
    return load(cfg)[1]


def load(cfg: DecontamConfig) -> tuple[list[TextItem], list[CodeItem]]:
    """The text items and code items of every configured benchmark found (each file read once)."""
    rows: list[TextItem] = []
    units: list[CodeItem] = []
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
                where = resolve_benchmarks_dir(cfg.benchmarks_dir)
                raise FileNotFoundError(f"decontaminate: benchmark '{stem}' not found in {where}"
                                        + ("" if cfg.online else " (online: false)"))
            continue
        found.append(stem)
        for i, r in enumerate(records):
            item = str(r.get(id_field)) if id_field and r.get(id_field) is not None else f"{bench}/{i}"
            prompt = "".join(str(r.get(f) or "") for f, k in fields if k == "docstring")
            for fname, kind in fields:
                value = r.get(fname)
                if kind in TEXT_KINDS:
                    for t in _texts(value, kind):
                        if t.strip():
                            rows.append((bench, item, fname, t))
                if kind in ("code", "json_list"):
                    for t in _texts(value, kind):
                        if t.strip():  # EvoEval's prompts lack the final newline: the docstring ends a line
                            sep = "\n" if prompt and not prompt.endswith("\n") else ""
                            units.append((bench, item, fname, "function", prompt + sep + t))
                elif kind in ("tests", "tests_list") and value:
                    t = "\n".join(map(str, value)) if kind == "tests_list" else str(value)
                    if len(t) > _MAX_TEST_CHARS:  # the head of a long test block identifies it
                        t = t[:t.rfind("\n", 0, _MAX_TEST_CHARS) + 1 or _MAX_TEST_CHARS]
                    units.append((bench, item, fname, "tests", t))
    if not found and cfg.require_benchmarks:
        where = str(resolve_benchmarks_dir(cfg.benchmarks_dir))
        raise FileNotFoundError(f"decontaminate: no benchmark files found in {where!r}"
                                " (set decontaminate.benchmarks_dir, or online: true)")
    return rows, units


FIELD_KIND = {(bench, f): kind for bench, _, fields in BENCHMARK_FIELDS.values() for f, kind in fields}


def _names_in(code: str) -> set[str] | None:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    names: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name.lower())
        elif isinstance(n, ast.arg):
            names.add(n.arg.lower())
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id.lower())
    return names


def defined_names(units: list[CodeItem]) -> dict[tuple[str, str], set[str]]:
    """(benchmark, item) -> lower-cased names (of 3+ characters) its own code defines: functions,
    classes, parameters, assigned variables. A word 10-gram of a solution counts only when it holds
    three of them; library names (``plt``, ``default_backend``) and ``for i in range`` do not."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    parsed: dict[str, set[str] | None] = {}  # the same code in several benchmarks: parsed once
    for bench, item, _, kind, code in units:
        if kind != "function":
            continue
        if code not in parsed:
            parsed[code] = _names_in(code)
        if parsed[code] is None:
            continue
        out[(bench, item)].update(parsed[code])
    return {k: {x for x in v if len(x) >= 3 and x not in KEEP_NAMES and x != "self"} for k, v in out.items()}

