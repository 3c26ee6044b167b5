"""report.md: the sections as Markdown for terminals and code review; plots are PNG files beside it."""
from __future__ import annotations

import re
from pathlib import Path

from megatron_snow.report.blocks import Example, Examples, Figure, Heading, Section, Table, Text


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _fence(text: str) -> str:
    """A fenced block no line of ``text`` can close (a fence longer than any backtick run in it)."""
    run = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, run + 1)
    return f"{fence}\n{text}\n{fence}"


def _example(ex: Example) -> list[str]:
    lines = [f"- **{_cell(ex.title)}** ({ex.language})"]
    lines += [f"  - {name}: {_cell(value)}" for name, value in ex.evidence]
    lines += ["", f"  {ex.text_label}:", "", _fence(ex.text)]
    if ex.side:
        lines += ["", f"  {ex.side[0]}:", "", _fence(ex.side[1])]
    return lines + [""]


def render(title: str, intro: str, sections: list[Section], out: Path) -> Path:
    """Write ``out`` (report.md) and each figure as a PNG file beside it."""
    lines = [f"# {title}", "", intro, ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, Text):
                lines += [b.text, ""]
            elif isinstance(b, Heading):
                lines += [f"### {b.text}", ""]
            elif isinstance(b, Table):
                if b.caption:
                    lines += [b.caption, ""]
                lines += ["| " + " | ".join(map(_cell, b.columns)) + " |", "|" + "---|" * len(b.columns)]
                lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in b.rows]
                lines.append("")
            elif isinstance(b, Figure):
                (out.parent / b.name).write_bytes(b.png)
                lines += [f"![{b.alt}]({b.name})", ""]
            elif isinstance(b, Examples):
                lines += [f"**{b.heading}**", ""]
                if b.note:
                    lines += [f"({b.note})", ""]
                for ex in b.items:
                    lines += _example(ex)
    out.write_text("\n".join(lines) + "\n")
    return out
