"""The results table: ours beside the paper's, as JSON (``results.json``) and markdown (``results.md``).

Columns are the paper's: HumanEval+ and MBPP+ (plus tests), EvoEval (mean of
the five categories), BigCodeBench (complete, full). Details per unit (base
tests, each EvoEval category, BigCodeBench-Hard when present, tasks set aside
or missing, reference solutions that cannot run here) follow, then the model,
the data files with their sha256, and every setting.
"""
from __future__ import annotations

import json
from pathlib import Path

from megatron_snow.evaluate.paper import (CITATION, COLUMN_TITLES, COLUMNS, PAPER_TABLE, REFERENCE_MODEL, TABLE,
                                          paper_cell)
from megatron_snow.evaluate.score import UnitResult
from megatron_snow.evaluate.tasks import EVOEVAL_CATEGORIES


def table_row(results: dict[str, UnitResult]) -> tuple[dict, dict]:
    """Our value per paper column (None when not run) and a note per column (partial coverage)."""
    row, notes = {}, {}
    for col in COLUMNS:
        if col == "evoeval":
            cats = [results[f"evoeval/{c}"] for c in EVOEVAL_CATEGORIES if f"evoeval/{c}" in results]
            row[col] = sum(r.scores["pass@1"] for r in cats) / len(cats) if cats else None
            if cats and len(cats) < len(EVOEVAL_CATEGORIES):
                notes[col] = f"{len(cats)} of {len(EVOEVAL_CATEGORIES)} categories"
        else:
            unit = "bigcodebench/full" if col == "bigcodebench" else col
            row[col] = results[unit].scores["pass@1"] if unit in results else None
    return row, notes


def build_report(results: dict[str, UnitResult], model: dict, data: dict, settings: dict, skipped: dict) -> dict:
    row, notes = table_row(results)
    return {
        "model": model,
        "table": {"columns": list(COLUMNS), "ours": row, "notes": notes,
                  "paper": {name: vals for name, (_, vals) in PAPER_TABLE.items()},
                  "paper_reference_model": REFERENCE_MODEL, "paper_source": CITATION},
        "units": {name: {"n_tasks": r.n_tasks, "scores": r.scores, "set_aside": r.set_aside,
                         "reference": r.reference, "network": r.network, "excluded": r.excluded,
                         "missing_modules": r.missing_modules} for name, r in results.items()},
        "skipped_units": skipped,
        "data": data,
        "settings": settings,
    }


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"


def to_markdown(report: dict) -> str:
    t, model = report["table"], report["model"]
    cols = t["columns"]
    lines = [f"# Evaluation: {model['name']}", "",
             "Greedy pass@1 (%). Paper rows: " + t["paper_source"] + ".", ""]
    if report["settings"].get("subset"):
        lines += [f"**Subset only ({report['settings']['subset']}): not comparable with the paper's numbers.**", ""]
    lines += ["| model | tokens | " + " | ".join(COLUMN_TITLES[c] for c in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for name, (tokens, _vals) in PAPER_TABLE.items():
        bold = name == t["paper_reference_model"]
        cells = [(f"**{paper_cell(name, c)}**" if bold else paper_cell(name, c)) for c in cols]
        lines.append(f"| {'**' + name + '**' if bold else name} (paper, {TABLE}) | {tokens} | "
                     + " | ".join(cells) + " |")
    ours = [_fmt(t["ours"][c]) + (f" ({t['notes'][c]})" if c in t["notes"] else "") for c in cols]
    lines.append(f"| **{model['name']} (ours)** | {model.get('tokens', '-')} | " + " | ".join(ours) + " |")
    lines += ["", "## Per unit", "", "| unit | tasks | pass@1 | base pass@1 | set aside | reference fails here "
              "| excluded (known to fail here) |", "|---|---|---|---|---|---|---|"]
    for name, u in report["units"].items():
        aside = ", ".join(f"{k}: {v}" for k, v in u["set_aside"].items()) or "-"
        ref = u["reference"].get("reference_failed")
        lines.append(f"| {name} | {u['n_tasks']} | {_fmt(u['scores']['pass@1'])} | "
                     f"{_fmt(u['scores'].get('base_pass@1'))} | {aside} | {len(ref) if ref is not None else '-'} | "
                     + (f"{len(u['excluded'])} (pass@1 without them: "
                        f"{_fmt(u['scores'].get('pass@1_without_excluded'))})" if u.get("excluded") else "-") + " |")
    for name, why in report["skipped_units"].items():
        lines.append(f"| {name} | - | - | - | skipped: {why} | - | - |")
    lines += ["", "## Data", ""]
    for name, d in report["data"].items():
        lines.append(f"- {name}: `{d.get('file')}` ({d.get('records', '-')} records, "
                     f"sha256 {str(d.get('sha256'))[:16]})")
    lines += ["", "## Settings", "", "```json", json.dumps({"model": model, **report["settings"]}, indent=2), "```", ""]
    return "\n".join(lines)


def write_report(report: dict, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    j, m = out_dir / "results.json", out_dir / "results.md"
    j.write_text(json.dumps(report, indent=2) + "\n")
    m.write_text(to_markdown(report))
    return j, m
