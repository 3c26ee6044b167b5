"""report.html: the same sections as one self-contained page (styles, script and PNG plots inline, no
network: a Content-Security-Policy forbids every fetch). Every string is escaped, so corpus text that
holds ``<script>`` or ``</html>`` shows as text."""
from __future__ import annotations

import base64
from html import escape
from pathlib import Path

from megatron_snow.report.blocks import Example, Examples, Figure, Heading, Section, Table, Text

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 0;
       color: #1d232a; background: #f6f7f9; }
header { background: #20364f; color: #fff; padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; opacity: .85; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #d8dde3; padding: 8px 28px; z-index: 1; }
nav a { margin-right: 16px; color: #20364f; text-decoration: none; font-weight: 600; }
nav button { float: right; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section { background: #fff; border: 1px solid #d8dde3; border-radius: 6px; padding: 4px 20px 16px; margin: 18px 0; }
h2 { border-bottom: 2px solid #20364f; padding-bottom: 4px; }
h3 { margin-top: 22px; color: #20364f; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 13px; }
th, td { border: 1px solid #d8dde3; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
figure.plot { margin: 10px 0; }
figure.plot img { max-width: 100%; border: 1px solid #e3e6ea; }
.examples h4 { margin: 18px 0 6px; }
.note { color: #6b7480; font-style: italic; }
details.example { border: 1px solid #d8dde3; border-radius: 4px; margin: 6px 0; background: #fbfcfd; }
details.example > summary { cursor: pointer; padding: 5px 10px; }
details.example .title { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-weight: 600; }
.lang { display: inline-block; background: #e1ecf7; color: #20364f; border-radius: 8px; padding: 0 7px;
        font-size: 12px; margin-left: 6px; }
dl.evidence { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 12px; }
dl.evidence dt { color: #6b7480; }
dl.evidence dd { margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap;
                 word-break: break-word; }
.texts { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 10px; margin: 6px 12px 10px; }
.texts figure { margin: 0; }
.texts figcaption { font-size: 12px; color: #6b7480; }
pre { background: #f1f3f5; border: 1px solid #e3e6ea; padding: 6px 8px; margin: 2px 0; overflow-x: auto;
      font: 12px/1.35 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre; }
"""

SCRIPT = """
(function () {
  var button = document.getElementById("toggle-examples");
  var all = document.querySelectorAll("details.example");
  function allOpen() { return Array.prototype.every.call(all, function (d) { return d.open; }); }
  function label() { button.textContent = allOpen() ? "collapse all examples" : "expand all examples"; }
  button.addEventListener("click", function () {
    var open = !allOpen();
    all.forEach(function (d) { d.open = open; });
    label();
  });
  label();
})();
"""


def _e(s) -> str:
    return escape(str(s), quote=True)


def _is_num(s: str) -> bool:
    t = str(s).replace(",", "").replace("%", "").replace(".", "", 1).lstrip("-")
    return t.isdigit()


def _table(t: Table) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in t.columns)
    rows = "".join("<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if _is_num(c) and j else f"<td>{_e(c)}</td>"
                                    for j, c in enumerate(r)) + "</tr>" for r in t.rows)
    cap = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _example(ex: Example, open_: bool) -> str:
    ev = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in ex.evidence)
    texts = f"<figure><figcaption>{_e(ex.text_label)}</figcaption><pre>{_e(ex.text)}</pre></figure>"
    if ex.side:
        texts += f"<figure><figcaption>{_e(ex.side[0])}</figcaption><pre>{_e(ex.side[1])}</pre></figure>"
    return (f'<details class="example"{" open" if open_ else ""}><summary><span class="title">{_e(ex.title)}</span>'
            f'<span class="lang">{_e(ex.language)}</span></summary><dl class="evidence">{ev}</dl>'
            f'<div class="texts">{texts}</div></details>')


def _block(b) -> str:
    if isinstance(b, Text):
        return f"<p>{_e(b.text)}</p>"
    if isinstance(b, Heading):
        return f"<h3>{_e(b.text)}</h3>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Figure):
        data = base64.b64encode(b.png).decode("ascii")
        return (f'<figure class="plot"><img alt="{_e(b.alt)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_e(b.alt)}</figcaption></figure>")
    if isinstance(b, Examples):
        note = f'<p class="note">{_e(b.note)}</p>' if b.note else ""
        items = "".join(_example(ex, i == 0) for i, ex in enumerate(b.items))
        return f'<div class="examples"><h4>{_e(b.heading)}</h4>{note}{items}</div>'
    raise TypeError(f"report: no HTML for a {type(b).__name__}")


def render(title: str, intro: str, sections: list[Section], out: Path) -> Path:
    """Write ``out`` (report.html): one file that opens from disk."""
    nav = "".join(f'<a href="#{_e(s.id)}">{_e(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{_e(s.id)}" class="report-section"><h2>{_e(s.title)}</h2>'
                   + "".join(_block(b) for b in s.blocks) + "</section>" for s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n<body>"
            f"<header><h1>{_e(title)}</h1><p>{_e(intro)}</p></header>"
            f'<nav>{nav}<button id="toggle-examples" type="button">expand all examples</button></nav>'
            f"<main>{body}</main><script>{SCRIPT}</script></body></html>\n")
    out.write_text(page, encoding="utf-8")
    return out
