"""Seeds of phase 3: the top-scored phase-2 documents of each language, and a snippet of each.

The recipe's seeds are the top-scored phase-2 documents (annotator scores);
OSS-Instruct shows the generator 1-15 consecutive lines from a random position
of a seed. The snippet of a document depends only on (``random_seed``, document
id), never on the order or the rank that handles it, so a re-run, a resumed run
and a run on N ranks all ask for the same snippets.
"""
from __future__ import annotations

import hashlib
import heapq
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from megatron_snow import records
from megatron_snow.languages import canonical_language
from megatron_snow.synthesis.prompts import LANGUAGE_NAMES

# Why a phase-2 document is not a seed (per language, in select_seeds' counts; funnel reasons of synthesize).
NOT_SEED_REASONS = ("language_not_requested", "unsupported_language", "unscored", "empty", "snippet_too_long",
                    "duplicate_id", "not_a_seed")


@dataclass
class Seed:
    """One generation request's input: a seed document's snippet."""

    index: int  # position in the seed plan (languages sorted, best score first)
    id: str  # the phase-2 document id
    language: str
    score: float
    snippet: str
    start_line: int  # 0-based first line of the snippet in the document
    num_lines: int
    position: int = -1  # the document's position in the dataset (ids may repeat; positions do not)

    def to_dict(self) -> dict:
        return asdict(self)


def document_score(record: records.CodeRecord, scores: dict[str, float] | None = None) -> float | None:
    """The annotator score of a phase-2 record (``meta["annotator"]["score"]``), or from a scores table."""
    if scores is not None:
        return scores.get(record.id)
    ann = record.meta.get("annotator") if isinstance(record.meta, dict) else None
    return ann.get("score") if isinstance(ann, dict) else None


def has_snippet_line(content: str, max_chars: int) -> bool:
    """Whether ``content`` has a non-blank line of at most ``max_chars`` characters (a snippet can be cut)."""
    return any(ln.strip() and len(ln) <= max_chars for ln in content.splitlines())


def snippet(content: str, key: str, min_lines: int = 1, max_lines: int = 15,
            max_chars: int | None = None) -> tuple[int, str]:
    """(start line, text) of ``min_lines``..``max_lines`` consecutive lines at a random position, seeded by ``key``.

    Blank-only windows are avoided when the document has any non-blank line (a snippet of blank lines
    tells the generator nothing). With ``max_chars`` a window is shortened (fewer lines) to fit; a
    minified one-line file has no snippet that fits (``has_snippet_line`` says so beforehand).
    """
    if not 1 <= min_lines <= max_lines:
        raise ValueError(f"snippet lines must satisfy 1 <= min_lines <= max_lines, got {min_lines}..{max_lines}")
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "little"))
    lines = content.splitlines()
    if not lines:
        return 0, ""
    fits = (lambda t: True) if max_chars is None else (lambda t: len(t) <= max_chars)
    for _ in range(16):
        n = min(rng.randint(min_lines, max_lines), len(lines))
        start = rng.randint(0, len(lines) - n)
        while n > 1 and not fits("\n".join(lines[start:start + n])):
            n -= 1
        text = "\n".join(lines[start:start + n])
        if text.strip() and fits(text):
            return start, text
    first = next((i for i, ln in enumerate(lines) if ln.strip() and fits(ln)), 0)
    n = min(max_lines, len(lines) - first)
    while n > 1 and not fits("\n".join(lines[first:first + n])):
        n -= 1
    return first, "\n".join(lines[first:first + n])


def plan_seeds(language_sizes: dict[str, int], synthetic_tokens: int, tokens_per_seed: float,
               python_share: float = 0.5, python_languages: Iterable[str] = ("python",)) -> dict[str, int]:
    """Seeds per language for a phase-3 target: ``synthetic_tokens`` in all, ``python_share`` of them Python.

    The recipe's phase 3 has about 2B synthetic tokens in 5B with Python about half; the other
    languages keep their phase-2 proportions (``language_sizes``: tokens or bytes, only ratios count).
    ``tokens_per_seed`` is what one seed yields after the filters (mean kept file length x share kept):
    measure it on a pilot run. A language without a prompt (``LANGUAGE_NAMES``) gets no seeds.
    """
    if synthetic_tokens < 1 or tokens_per_seed <= 0 or not 0.0 <= python_share <= 1.0:
        raise ValueError("synthetic_tokens >= 1, tokens_per_seed > 0 and 0 <= python_share <= 1 are needed")
    py = {canonical_language(x) for x in python_languages}
    sizes = {canonical_language(k) or k: v for k, v in language_sizes.items() if v > 0}
    sizes = {k: v for k, v in sizes.items() if k in LANGUAGE_NAMES}
    py_total = sum(v for k, v in sizes.items() if k in py)
    other_total = sum(v for k, v in sizes.items() if k not in py)
    share = python_share if other_total else 1.0
    share = share if py_total else 0.0
    plan = {}
    for lang, v in sorted(sizes.items()):
        part = share * v / py_total if lang in py else (1 - share) * v / other_total
        plan[lang] = math.ceil(synthetic_tokens * part / tokens_per_seed) if part > 0 else 0
    return plan


def select_seeds(dataset: str | Path | Callable[[], Iterable[records.CodeRecord]], per_language: int | dict[str, int],
                 languages: list[str] | None = None, scores: dict[str, float] | None = None, random_seed: int = 0,
                 min_lines: int = 1, max_lines: int = 15, max_chars: int | None = None) -> tuple[list[Seed], dict]:
    """The ``per_language`` best-scored documents of each language of ``dataset`` and their snippets.

    ``per_language`` is one number for every language, or a number per language (``plan_seeds``;
    a language it does not name gets none).

    ``dataset`` is a records dataset directory or a function returning a fresh iterator over its
    records (read twice, in the same order). Ties in score go to the earlier document (dataset order).
    Returns (seeds, counts): counts[language] has ``documents``, ``seeds`` and, for every other
    document, the reason it is not a seed (``NOT_SEED_REASONS``): another language than asked for, a
    language without a prompt, no score, no non-blank line, no line of at most ``max_chars``, an id
    already taken by a better seed, or simply not among the best ``per_language``.
    """
    if isinstance(per_language, int) and per_language < 1:
        raise ValueError(f"seeds_per_language must be >= 1, got {per_language}")
    cap = (lambda lang: per_language) if isinstance(per_language, int) else (lambda lang: per_language.get(lang, 0))
    read = dataset if callable(dataset) else (lambda: records.iter_records(dataset))
    wanted = {canonical_language(x) for x in languages} if languages else None
    heaps: dict[str, list] = {}
    counts: dict[str, dict[str, int]] = {}

    def count(lang: str, reason: str) -> None:
        c = counts.setdefault(lang, {"documents": 0, "seeds": 0})
        c["documents"] += 1
        if reason:
            c[reason] = c.get(reason, 0) + 1

    for pos, r in enumerate(read()):
        lang = canonical_language(r.language) or "unknown"
        if wanted is not None and lang not in wanted:
            count(lang, "language_not_requested")
            continue
        if lang not in LANGUAGE_NAMES:
            count(lang, "unsupported_language")
            continue
        score = document_score(r, scores)
        if score is None or not isinstance(score, (int, float)) or score != score:
            count(lang, "unscored")  # absent, not a number, or NaN
            continue
        if not r.content.strip():
            count(lang, "empty")
            continue
        if max_chars is not None and not has_snippet_line(r.content, max_chars):
            count(lang, "snippet_too_long")
            continue
        count(lang, "")
        item = (float(score), -pos, r.id)
        heap = heaps.setdefault(lang, [])
        if len(heap) < cap(lang):
            heapq.heappush(heap, item)
        elif heap and item > heap[0]:
            heapq.heapreplace(heap, item)
    if wanted:
        missing = sorted(wanted - set(counts))
        if missing:
            raise ValueError(f"no documents of language(s) {', '.join(missing)} in {dataset}")
    # Second pass: only the chosen documents' snippets are kept (never whole documents).
    chosen = {-neg_pos for heap in heaps.values() for _, neg_pos, _ in heap}
    snippets: dict[int, tuple[int, str]] = {}
    for pos, r in enumerate(read()):
        if pos in chosen:
            snippets[pos] = snippet(r.content, f"{random_seed}:{r.id}", min_lines, max_lines, max_chars)
    if len(snippets) != len(chosen):
        raise ValueError(f"{dataset} changed while seeds were chosen (read twice, it gave other documents)")
    seeds: list[Seed] = []
    taken: set[str] = set()
    for lang in sorted(heaps):
        best = sorted(heaps[lang], key=lambda t: (-t[0], -t[1]))
        for score, neg_pos, doc_id in best:
            if doc_id in taken:  # two documents with one id would give two outputs with one id
                counts[lang]["duplicate_id"] = counts[lang].get("duplicate_id", 0) + 1
                continue
            taken.add(doc_id)
            start, text = snippets[-neg_pos]
            seeds.append(Seed(len(seeds), doc_id, lang, score, text, start, text.count("\n") + 1, -neg_pos))
            counts[lang]["seeds"] += 1
    for c in counts.values():
        c["not_a_seed"] = c["documents"] - c["seeds"] - sum(c.get(k, 0) for k in NOT_SEED_REASONS if k != "not_a_seed")
    return seeds, counts
