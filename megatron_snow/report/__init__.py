"""A report of one run directory: data funnels with examples of what each step set aside and why, what
the annotator calls high quality, synthesis and the phase-3 mix, training curves, evaluation.

``python -m megatron_snow report RUN_DIR [--out RUN_DIR/report.md]`` writes ``report.md`` (plots as PNG
files beside it) and ``report.html`` (one self-contained file: styles, script and plots inline, no
network). Both come from the same section builders (``sections.py``), drawn by two renderers
(``markdown.py``, ``html.py``). Sections with nothing to show are left out.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from megatron_snow.config import Config, setting
from megatron_snow.report import html, markdown
from megatron_snow.report.sections import EXAMPLE_CHARS_BUDGET, build_sections

MAX_HTML_BYTES = 10_000_000


def build_report(run: Path, out: Path | None = None) -> Path:
    """Write ``report.md`` (and its PNG plots) and ``report.html`` beside it for ``run``; returns report.md's path."""
    run = Path(run)
    if not run.is_dir():
        raise FileNotFoundError(f"{run} is not a directory")
    out = Path(out) if out else run / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = EXAMPLE_CHARS_BUDGET
    sections = build_sections(run, budget)
    if not sections:
        raise FileNotFoundError(f"nothing to report in {run} (no funnel, metrics or results files)")
    title = f"Run report: {run.resolve().name}"
    intro = (f"Made by `python -m megatron_snow report {run}` from the files the steps wrote. The recipe's facts "
             "and the paper's tables: docs/recipe.md.")
    markdown.render(title, intro, sections, out)
    page = out.with_suffix(".html")
    while True:  # examples are capped by a character budget; a page still over the limit is made with less
        html.render(title, intro, sections, page)
        if page.stat().st_size < MAX_HTML_BYTES or budget < 1000:
            break
        budget //= 4
        sections = build_sections(run, budget)
    return out


@dataclass
class ReportConfig(Config):
    """Settings of ``report``."""

    run_dir: str = setting(help="a run directory (e.g. examples/tiny/work); also the first argument")
    out: str = setting("", help="report file (empty: RUN_DIR/report.md; plots and report.html beside it)")


def cli_run(cfg: ReportConfig, args, comm) -> None:
    """The ``report`` command."""
    path = build_report(Path(cfg.run_dir), Path(cfg.out) if cfg.out else None)
    print(f"report: {path} and {path.with_suffix('.html')}")


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow report RUN_DIR``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["report"].main(argv)


if __name__ == "__main__":
    sys.exit(main())
