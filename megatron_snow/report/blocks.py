"""What a report section is made of: plain data that both renderers (Markdown, HTML) draw.

The section builders (``sections.py``) read the run directory once and return these blocks; the
renderers only lay them out, so report.md and report.html cannot disagree. Every string in a block
is plain text (often from the corpus, so untrusted): the HTML renderer escapes all of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Text:
    """A paragraph."""

    text: str


@dataclass
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG plot: a file beside report.md, inline (base64) in report.html."""

    name: str  # file name beside report.md, e.g. "funnel.png"
    png: bytes
    alt: str


@dataclass
class Example:
    """One document shown: what it is, the evidence the stage recorded, its first lines, and optionally
    a second text beside it (the kept near-duplicate partner, the seed snippet of a synthetic file)."""

    title: str  # path or id
    language: str
    evidence: list[tuple[str, str]]  # (name, value) pairs
    text: str  # the first lines (already capped)
    text_label: str = "first lines"
    side: tuple[str, str] | None = None  # (label, text)


@dataclass
class Examples:
    heading: str
    items: list[Example]
    note: str = ""


@dataclass
class Section:
    id: str  # the HTML anchor (and the browser test's handle)
    title: str
    blocks: list = field(default_factory=list)
