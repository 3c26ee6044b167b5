"""Matplotlib figures as PNG bytes (the Markdown renderer writes them beside report.md, the HTML one inlines them)."""
from __future__ import annotations

import io

from megatron_snow.report.blocks import Figure

DPI = 100


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def figure(fig, name: str, alt: str) -> Figure:
    """Close ``fig`` and return it as a Figure block (PNG, metadata without dates: same run, same bytes)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt().close(fig)
    return Figure(name, buf.getvalue(), alt)
