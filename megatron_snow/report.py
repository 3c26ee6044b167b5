"""A report of one run directory: data funnels, tokens per phase, training curves, annotator, evaluation.

``python -m megatron_snow report RUN_DIR [--out RUN_DIR/report.md]``

It reads only what the steps wrote, by convention of file names, so it works on
any run laid out like ``examples/tiny/work``:
- ``**/funnel.json`` of every data stage (documents in = kept + dropped per reason);
- ``**/*.stats.json`` beside each indexed dataset (tokens per language);
- ``**/metrics.jsonl`` of each training phase (train and validation loss, learning rate);
- ``**/annotator/metrics.json`` and ``**/alignment.json`` (the paper's Fig. 2);
- ``**/results.json`` of ``evaluate`` (with the paper's rows) and ``**/ablation.json``.
Sections with nothing to show are left out. Plots are PNG files beside the report.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from megatron_snow.evaluate.paper import PAPER_TABLE, TABLE as PAPER_TABLE_NAME, paper_cell

def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rglob(run: Path, pattern: str) -> list[Path]:
    """Sorted matches under ``run``, leaving out ablation directories (reported in their own section)."""
    ablations = {p.parent for p in run.rglob("ablation.json")}
    return [p for p in sorted(run.rglob(pattern)) if not ablations & set(p.parents)]


def _funnels(run: Path) -> list[tuple[str, dict]]:
    """(label, funnel dict) of every single-stage funnel, in path order (stage order by naming)."""
    out = []
    for p in _rglob(run, "funnel.json") + _rglob(run, "*.funnel.json"):
        step_dir = p.parent
        if p.name == "funnel.json" and step_dir.suffix == ".step" and \
                step_dir.with_name(step_dir.stem + ".funnel.json").is_file():
            continue  # the runner's copy of an index's funnel, which sits beside the index as PREFIX.funnel.json
        d = _load(p)
        if isinstance(d, dict) and "languages" in d:
            out.append((_rel(p.parent, run) + ("" if p.name == "funnel.json" else f" ({p.name})"), d))
    return out


def _totals(funnel: dict) -> tuple[int, int, dict[str, int]]:
    docs_in = kept = 0
    reasons: dict[str, int] = {}
    for per in funnel.get("languages", {}).values():
        docs_in += per.get("in", [0, 0])[0]
        kept += per.get("kept", [0, 0])[0]
        for k, v in per.items():
            if k.startswith("dropped:"):
                reasons[k.split(":", 1)[1]] = reasons.get(k.split(":", 1)[1], 0) + v[0]
    return docs_in, kept, reasons


def _section_funnels(run: Path, out_dir: Path, lines: list[str]) -> None:
    funnels = _funnels(run)
    if not funnels:
        return
    lines += ["## Data funnel", "", "Documents per stage: in = kept + dropped (by reason).", "",
              "| stage | in | kept | dropped by reason |", "|---|---|---|---|"]
    for label, f in funnels:
        docs_in, kept, reasons = _totals(f)
        why = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])) or "-"
        lines.append(f"| {label} | {docs_in} | {kept} | {why} |")
    langs = sorted({lang for _, f in funnels for lang in f.get("languages", {})})
    lines += ["", "Kept documents per language:", "", "| stage | " + " | ".join(langs) + " |",
              "|---|" + "---|" * len(langs)]
    for label, f in funnels:
        per = f.get("languages", {})
        lines.append(f"| {label} | " + " | ".join(str(per.get(l, {}).get("kept", [0])[0]) for l in langs) + " |")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, len(funnels) * 0.9), 4))
    bottom = [0] * len(funnels)
    for lang in langs:
        vals = [f.get("languages", {}).get(lang, {}).get("kept", [0])[0] for _, f in funnels]
        ax.bar(range(len(funnels)), vals, bottom=bottom, label=lang)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(funnels)), [l.split(" ")[0] for l, _ in funnels], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("documents kept")
    ax.set_title("Data funnel: documents kept per stage and language")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "funnel.png", dpi=110)
    plt.close(fig)
    lines += ["", "![funnel](funnel.png)", ""]


def _section_tokens(run: Path, out_dir: Path, lines: list[str]) -> None:
    stats = [(p, _load(p)) for p in _rglob(run, "*.stats.json")]
    stats = [(p, d) for p, d in stats if isinstance(d, dict) and "languages" in d and "index_cache" not in str(p)]
    if not stats:
        return
    langs = sorted({l for _, d in stats for l in d["languages"]})
    lines += ["## Tokens per indexed dataset and language", "",
              "| dataset | documents | tokens | " + " | ".join(langs) + " |", "|---|---|---|" + "---|" * len(langs)]
    for p, d in stats:
        per = d["languages"]
        total = sum(v.get("tokens", 0) for v in per.values())
        shares = [f"{100 * per.get(l, {}).get('tokens', 0) / max(total, 1):.1f}%" for l in langs]
        lines.append(f"| {_rel(p, run).removesuffix('.stats.json')} | {d.get('documents', '')} | {total} | "
                     + " | ".join(shares) + " |")
    blends = _rglob(run, "blend*.json")
    for b in blends:
        d = _load(b)
        if d is not None:
            lines += ["", f"Blend `{_rel(b, run)}`:", "", "```json", json.dumps(d, indent=1)[:1500], "```"]
    lines.append("")


def _read_metrics(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _section_training(run: Path, out_dir: Path, lines: list[str]) -> None:
    phases = [(p.parent.name, _read_metrics(p)) for p in _rglob(run, "metrics.jsonl")]
    phases = [(n, r) for n, r in phases if any(x.get("split") == "train" for x in r)]
    if not phases:
        return
    lines += ["## Training", "", "| phase | iterations | first train loss | last train loss | last validation loss |",
              "|---|---|---|---|---|"]
    plt = _plt()
    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    offset = 0
    for name, rows in phases:
        train = [r for r in rows if r.get("split") == "train" and "loss" in r]
        valid = [r for r in rows if r.get("split") == "valid" and "loss" in r]
        last_it = max(r["iteration"] for r in train)
        lines.append(f"| {name} | {last_it} | {train[0]['loss']:.3f} | {train[-1]['loss']:.3f} | "
                     + (f"{valid[-1]['loss']:.3f}" if valid else "-") + " |")
        line, = ax_loss.plot([offset + r["iteration"] for r in train], [r["loss"] for r in train], label=f"{name} train")
        if valid:
            ax_loss.plot([offset + r["iteration"] for r in valid], [r["loss"] for r in valid], "o--",
                         color=line.get_color(), label=f"{name} validation")
        ax_lr.plot([offset + r["iteration"] for r in train if "lr" in r], [r["lr"] for r in train if "lr" in r],
                   color=line.get_color(), label=name)
        ax_loss.axvline(offset, color="grey", lw=0.5)
        offset += last_it
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=7)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration (phases one after another)")
    ax_loss.set_title("Loss and learning rate per phase")
    fig.tight_layout()
    fig.savefig(out_dir / "training.png", dpi=110)
    plt.close(fig)
    lines += ["", "![training](training.png)", ""]


def _section_annotator(run: Path, out_dir: Path, lines: list[str]) -> None:
    metrics = [(p, _load(p)) for p in _rglob(run, "annotator/metrics.json")]
    align = [(p, _load(p)) for p in _rglob(run, "alignment.json")]
    if not metrics and not align:
        return
    lines += ["## Quality annotator", ""]
    for p, m in metrics:
        if not isinstance(m, dict):
            continue
        for split in ("validation", "test"):
            s = m.get(split) or {}
            if s:
                lines.append(f"- {split} ({s.get('n', '?')} held-out files): ROC-AUC {s.get('roc_auc', float('nan')):.3f}, "
                             f"F1 {s.get('f1', float('nan')):.3f}, accuracy {s.get('accuracy', float('nan')):.3f}")
    for p, a in align:
        if not isinstance(a, dict) or not a.get("benchmarks"):
            continue
        bench = a["benchmarks"]
        lines += ["", "Alignment with the benchmarks (the paper's Fig. 2): ROC-AUC of benchmark solutions "
                  f"against {a.get('negatives', '?')} held-out corpus files (0.5 = no preference).", "",
                  "| benchmark | positives | ROC-AUC |", "|---|---|---|"]
        for name, b in sorted(bench.items()):
            lines.append(f"| {name} | {b.get('positives', '')} | {b.get('roc_auc', float('nan')):.3f} |")
        plt = _plt()
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = sorted(bench)
        ax.barh(names, [bench[n].get("roc_auc", 0) for n in names])
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("ROC-AUC (benchmark solutions vs corpus files)")
        ax.set_title("Annotator alignment with downstream benchmarks")
        fig.tight_layout()
        fig.savefig(out_dir / "alignment.png", dpi=110)
        plt.close(fig)
        lines += ["", "![alignment](alignment.png)", ""]


def _section_eval(run: Path, out_dir: Path, lines: list[str]) -> None:
    """``evaluate``'s results.json: our row beside the paper's rows it carries (evaluate/paper.py)."""
    results = [(p, _load(p)) for p in _rglob(run, "results.json")]
    results = [(p, r) for p, r in results if isinstance(r, dict) and isinstance(r.get("table"), dict)]
    if not results:
        return
    lines += ["## Evaluation (greedy pass@1, %)", ""]
    for p, r in results:
        table = r["table"]
        cols = table.get("columns") or list(table.get("ours", {}))
        model = r.get("model") or {}
        subset = (r.get("settings") or {}).get("subset")
        lines += [f"`{_rel(p, run)}`: model {model.get('name', '?')}"
                  + (f"; {subset}: not comparable with the paper's numbers" if subset else ""), "",
                  "| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        ours = table.get("ours", {})
        lines.append(f"| {model.get('name', 'this run')} (this run) | " + " | ".join(
            f"{ours[c]:.1f}" if isinstance(ours.get(c), (int, float)) else "-" for c in cols) + " |")
        for name, paper in (table.get("paper") or {}).items():
            if "Arctic-SnowCoder" in name:
                lines.append(f"| {name} (paper, {PAPER_TABLE_NAME}) | " + " | ".join(
                    paper_cell(name, c, paper[c]) if isinstance(paper.get(c), (int, float)) and name in PAPER_TABLE
                    else f"{paper[c]:.1f}" if isinstance(paper.get(c), (int, float)) else "-" for c in cols) + " |")
        lines.append("")


def _section_ablation(run: Path, out_dir: Path, lines: list[str]) -> None:
    for p in sorted(run.rglob("ablation.json")):
        a = _load(p)
        if not isinstance(a, dict) or "summary" not in a:
            continue
        title = {"grouping": "grouping of files into documents (from scratch, same tokens)"}.get(
            a.get("kind"), "data selection (same tokens, same schedule)")
        lines += [f"## Ablation: {title}", "",
                  a.get("description", ""), "", "| held-out set | arm | mean loss | std | per seed |",
                  "|---|---|---|---|---|"]
        for held, arms in a["summary"].items():
            for arm, s in arms.items():
                lines.append(f"| {held} | {arm} | {s['mean']:.4f} | {s['std']:.4f} | "
                             + ", ".join(f"{x:.4f}" for x in s["values"]) + " |")
        if a.get("conclusion"):
            lines += ["", a["conclusion"]]
        lines.append("")


def build_report(run: Path, out: Path | None = None) -> Path:
    """Write ``report.md`` (and its PNG plots) for ``run``; returns its path."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"report: {run} is not a directory")
    out = Path(out) if out else run / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# Run report: {run.resolve().name}", "", f"Made by `python -m megatron_snow report {run}` "
             "from the files the steps wrote. The recipe's facts and the paper's tables: docs/recipe.md.", ""]
    n = len(lines)
    for section in (_section_funnels, _section_tokens, _section_training, _section_annotator, _section_eval,
                    _section_ablation):
        section(run, out.parent, lines)
    if len(lines) == n:
        raise FileNotFoundError(f"report: nothing to report in {run} (no funnel, metrics or results files)")
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m megatron_snow report", description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", help="a run directory (e.g. examples/tiny/work)")
    p.add_argument("--out", default=None, help="report file (default RUN_DIR/report.md; plots beside it)")
    a = p.parse_args(argv)
    try:
        path = build_report(Path(a.run_dir), Path(a.out) if a.out else None)
    except FileNotFoundError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
