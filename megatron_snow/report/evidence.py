"""Evidence for one set-aside document that its stage did not write as a number, worked out here with
the stage's own code and the settings in its ``step.json``: the value that failed a filter rule, the
Jaccard of a near duplicate with the file its cluster kept. What the stage did record (the reason, the
kept partner's id, the decontamination rule, benchmark, item and matched text) is shown as written."""
from __future__ import annotations

from megatron_snow.phase1 import filters as F

# rule -> (what is measured, the threshold's setting, how it fails)
FILTER_RULES = {
    "empty": ("non-blank characters", "min_file_chars", "<"),
    "too_large": ("bytes", "max_file_bytes", ">"),
    "xml": ("'<?xml version=' in the first 100 characters", "xml_header", "on"),
    "auto_generated": ("generated-code marker in the first lines", "auto_generated_lines", "lines"),
    "minified": ("whitespace fraction (longest line)", "minified_max_whitespace_fraction", "<"),
    "max_line_length": ("longest line, characters", "max_line_length", ">"),
    "avg_line_length": ("mean line length, characters", "max_avg_line_length", ">"),
    "alphanum_fraction": ("alphanumeric fraction", "min_alphanum_fraction", "<"),
    "alpha_fraction": ("alphabetic fraction", "min_alpha_fraction", "<"),
    "html_visible_text": ("visible HTML text, characters (fraction)", "html_min_visible_chars", "<"),
}


def first_lines(text: str, max_lines: int = 12, max_line_chars: int = 160, max_chars: int = 1200) -> str:
    """The start of a document, capped in lines, line length and characters (the report's size stays bounded)."""
    out, used = [], 0
    lines = text.split("\n")
    for line in lines[:max_lines]:
        if len(line) > max_line_chars:
            line = line[:max_line_chars] + f" … (+{len(line) - max_line_chars} characters)"
        if used + len(line) > max_chars:
            out.append("…")
            break
        out.append(line)
        used += len(line) + 1
    else:
        if len(lines) > max_lines:
            out.append(f"… (+{len(lines) - max_lines} lines)")
    return "\n".join(out)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def filter_evidence(reason: str, text: str, path: str, thresholds: dict) -> list[tuple[str, str]]:
    """[(rule, ...), (value, ...), (threshold, ...)] for a file the filter set aside, by the filter's own measures."""
    rule = FILTER_RULES.get(reason)
    if rule is None or (not text and reason != "empty"):
        return []
    what, key, how = rule
    t = thresholds
    lines = text.splitlines() or [""]
    value: object
    if reason == "empty":
        value = len(text.strip())
    elif reason == "too_large":
        value = len(text.encode("utf-8", "surrogatepass"))
    elif reason == "xml":
        value = "<?xml version=" in text[:100]
    elif reason == "auto_generated":
        head = "\n".join(text[:4000].split("\n", t.get(key, 5))[:t.get(key, 5)]).lower()
        value = next((m for m in F.AUTO_GENERATED_MARKERS if m in head), "-")
    elif reason == "minified":
        if F._MIN_NAME.search(path or ""):
            return [("rule", "minified"), ("value", "a .min.js/.min.css/.min.mjs name")]
        value = sum(text.count(c) for c in " \t\n\r") / max(1, len(text))
    elif reason == "max_line_length":
        value = max(map(len, lines))
    elif reason == "avg_line_length":
        value = sum(map(len, lines)) / len(lines)
    elif reason == "alphanum_fraction":
        value = F._count_in(text, F._ALNUM_BYTES, F._NOT_ALNUM) / len(text)
    elif reason == "alpha_fraction":
        value = F._count_in(text, F._ALPHA_BYTES, F._NOT_ALPHA) / len(text)
    else:  # html_visible_text
        visible = F.visible_html_text(text)
        value = f"{len(visible)} ({len(visible) / len(text):.3f})"
    setting = f"{key} = {_fmt(t.get(key))}"
    if how in ("<", ">"):
        setting += f" (set aside when the value is {'below' if how == '<' else 'above'} it)"
    return [("rule", reason), ("value", f"{what}: {_fmt(value)}"), ("setting", setting)]


def jaccard(a: str, b: str, ngram: int) -> float:
    """Exact Jaccard of two texts' shingle sets, as near dedup measures it (minhash.ShingleHasher, its n-gram)."""
    from megatron_snow.phase1.minhash import ShingleHasher, exact_jaccard

    h = ShingleHasher(cache_size=1 << 12)
    return exact_jaccard(h.shingles(a, ngram), h.shingles(b, ngram))


def lines_with(text: str, needles: list[str], max_lines: int = 8, max_line_chars: int = 160) -> str:
    """The lines of ``text`` that hold any of ``needles`` (e.g. PII placeholders), numbered, capped."""
    out = []
    for i, line in enumerate(text.split("\n"), 1):
        if any(n in line for n in needles):
            out.append(f"{i:5d}: {line[:max_line_chars]}")
            if len(out) == max_lines:
                break
    return "\n".join(out)


def lines_around(text: str, match: str, before: int = 2, max_lines: int = 14) -> tuple[int, str] | None:
    """(first line number, the lines) where ``match`` (a decontamination rule's matched text, verbatim or
    whitespace- and case-normalised) starts in ``text``; None if it cannot be found."""
    import re

    at = text.find(match[:60]) if match else -1
    if at < 0:
        words = re.findall(r"\w+", match)[:8]
        if len(words) < 3:
            return None
        m = re.search(r"\W+".join(map(re.escape, words)), text, flags=re.IGNORECASE)
        if m is None:
            return None
        at = m.start()
    line = text.count("\n", 0, at)
    start = max(0, line - before)
    return start + 1, first_lines("\n".join(text.split("\n")[start:]), max_lines=max_lines)
