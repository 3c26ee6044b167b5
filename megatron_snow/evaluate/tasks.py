"""The benchmarks as evaluation units: data file, prompt, stop strings, solution rule.

A user names benchmarks (``humaneval+``, ``mbpp+``, ``evoeval``,
``bigcodebench``); each expands to units that are generated and scored on
their own (EvoEval: its five default categories; BigCodeBench: ``full`` and,
when ``bigcodebench_hard`` is in the benchmark directory, ``hard``). A unit
name (``evoeval/difficult``) also selects that unit alone.

Prompts are the benchmark's prompt with trailing newlines stripped, as in the
paper. The stop strings are the evaluators' own for base-model (direct)
completion, read from the installed ``evalplus`` / ``bigcodebench``. How a
sample becomes the program that is run follows each evaluator: a
``solution`` is taken as is; a ``completion`` is appended to the benchmark's
original prompt (``prompt`` / ``complete_prompt``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from megatron_snow.benchmarks import benchmark_path, read_benchmark, resolve_benchmarks_dir

EVOEVAL_CATEGORIES = ("difficult", "creative", "subtle", "combine", "tool_use")  # EvoEval's five defaults


@dataclass(frozen=True)
class Unit:
    name: str  # "humaneval+", "mbpp+", "evoeval/difficult", "bigcodebench/full", "bigcodebench/hard"
    benchmark: str  # the table column: humaneval+ | mbpp+ | evoeval | bigcodebench
    harness: str  # evalplus | evoeval | bigcodebench
    dataset: str  # the evaluator's dataset name: humaneval, mbpp, EvoEval_<category>, full, hard
    stem: str  # benchmark file stem in the benchmark directory
    optional: bool = False  # skipped (reported) when its file is absent

    @property
    def prompt_key(self) -> str:
        return "complete_prompt" if self.harness == "bigcodebench" else "prompt"

    @property
    def file_name(self) -> str:
        return self.name.replace("/", "_").replace("+", "plus")


UNITS: dict[str, list[Unit]] = {
    "humaneval+": [Unit("humaneval+", "humaneval+", "evalplus", "humaneval", "humanevalplus")],
    "mbpp+": [Unit("mbpp+", "mbpp+", "evalplus", "mbpp", "mbppplus")],
    "evoeval": [Unit(f"evoeval/{c}", "evoeval", "evoeval", f"EvoEval_{c}", f"evoeval_{c}") for c in EVOEVAL_CATEGORIES],
    "bigcodebench": [Unit("bigcodebench/full", "bigcodebench", "bigcodebench", "full", "bigcodebench"),
                     Unit("bigcodebench/hard", "bigcodebench", "bigcodebench", "hard", "bigcodebench_hard",
                          optional=True)],
}
ALL_UNITS = {u.name: u for units in UNITS.values() for u in units}


class TaskError(ValueError):
    """Bad benchmark selection or data; one line."""


def select_units(spec: str) -> list[Unit]:
    """``"humaneval+,evoeval"`` -> its units, in order; unknown names are an error."""
    out: list[Unit] = []
    for name in [s.strip().lower() for s in spec.split(",") if s.strip()]:
        units = UNITS.get(name) or ([ALL_UNITS[name]] if name in ALL_UNITS else None)
        if units is None:
            known = ", ".join(dict.fromkeys(list(UNITS) + list(ALL_UNITS)))
            raise TaskError(f"unknown benchmark {name!r} (known: {known})")
        out += [u for u in units if u not in out]
    if not out:
        raise TaskError("no benchmark selected")
    return out


def unit_path(unit: Unit, benchmarks_dir: str | Path | None) -> Path | None:
    return benchmark_path(benchmarks_dir, unit.stem)


def load_problems(unit: Unit, benchmarks_dir: str | Path | None, limit: int | None = None,
                  task_ids: list[str] | None = None) -> dict[str, dict]:
    """The unit's records by task id, in file order; ``limit`` keeps the first N, ``task_ids`` those named."""
    path = unit_path(unit, benchmarks_dir)
    if path is None:
        raise TaskError(f"{unit.name}: {unit.stem}.jsonl(.gz) not found in {resolve_benchmarks_dir(benchmarks_dir)} "
                        "(python -m megatron_snow fetch-benchmarks downloads it)")
    problems = {r["task_id"]: r for r in read_benchmark(path)}
    if task_ids is not None:
        missing = [t for t in task_ids if t not in problems]
        if missing:
            raise TaskError(f"{unit.name}: unknown task ids {missing[:5]}")
        problems = {t: problems[t] for t in task_ids}
    if limit is not None:
        problems = dict(list(problems.items())[:limit])
    return problems


def data_version(unit: Unit, benchmarks_dir: str | Path | None) -> dict:
    """What the results were computed on: file, sha256 of its bytes, record count."""
    path = unit_path(unit, benchmarks_dir)
    if path is None:
        return {"file": None}
    return {"file": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "records": len(read_benchmark(path))}


def prompt_for(unit: Unit, problem: dict) -> str:
    """What the model sees: the benchmark prompt, trailing newlines stripped (as in the paper)."""
    return problem[unit.prompt_key].rstrip("\n")


def stop_strings(unit: Unit) -> list[str]:
    """The evaluator's own stop strings for direct completion by a base model."""
    if unit.harness == "bigcodebench":
        from bigcodebench.provider.utility import EOS, extra_eos_for_direct_completion

        return list(EOS) + extra_eos_for_direct_completion("bigcodebench")
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion

    # EvoEval's problems are HumanEval-style functions: HumanEval's stops.
    return list(EOS) + extra_eos_for_direct_completion("mbpp" if unit.dataset == "mbpp" else "humaneval")


def truncate_at_stops(text: str, stops: list[str]) -> str:
    """The completion up to (not including) the first stop string."""
    cut = len(text)
    for s in stops:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


def solution_for(unit: Unit, problem: dict, sample: dict) -> str:
    """The program to run for one sample, by the evaluator's rule (``solution`` as is, else prompt + completion)."""
    if isinstance(sample.get("solution"), str):
        return sample["solution"]
    return problem[unit.prompt_key] + sample["completion"]


def canonical_solution(unit: Unit, problem: dict) -> str:
    """The reference program, as each evaluator builds it for its ground truth."""
    if unit.harness == "evalplus":
        return problem["prompt"] + problem["canonical_solution"]
    if unit.harness == "evoeval":
        return problem["prompt"] + "\n" + problem["canonical_solution"]
    return problem["complete_prompt"] + "\n" + problem["canonical_solution"]
