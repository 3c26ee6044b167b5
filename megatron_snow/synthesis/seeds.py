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
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from megatron_snow import records
from megatron_snow.languages import canonical_language


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

    def to_dict(self) -> dict:
        return asdict(self)


def document_score(record: records.CodeRecord, scores: dict[str, float] | None = None) -> float | None:
    """The annotator score of a phase-2 record (``meta["annotator"]["score"]``), or from a scores table."""
    if scores is not None:
        return scores.get(record.id)
    ann = record.meta.get("annotator") if isinstance(record.meta, dict) else None
    return ann.get("score") if isinstance(ann, dict) else None


def snippet(content: str, key: str, min_lines: int = 1, max_lines: int = 15) -> tuple[int, str]:
    """(start line, text) of ``min_lines``..``max_lines`` consecutive lines at a random position, seeded by ``key``.

    Blank-only windows are avoided when the document has any non-blank line (a snippet of blank lines
    tells the generator nothing).
    """
    if not 1 <= min_lines <= max_lines:
        raise ValueError(f"snippet lines must satisfy 1 <= min_lines <= max_lines, got {min_lines}..{max_lines}")
    rng = random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little"))
    lines = content.splitlines()
    if not lines:
        return 0, ""
    for _ in range(16):
        n = min(rng.randint(min_lines, max_lines), len(lines))
        start = rng.randint(0, len(lines) - n)
        text = "\n".join(lines[start:start + n])
        if text.strip():
            return start, text
    first = next((i for i, ln in enumerate(lines) if ln.strip()), 0)
    n = min(max_lines, len(lines) - first)
    return first, "\n".join(lines[first:first + n])


def select_seeds(dataset: str | Path, per_language: int, languages: list[str] | None = None,
                 scores: dict[str, float] | None = None, random_seed: int = 0,
                 min_lines: int = 1, max_lines: int = 15) -> tuple[list[Seed], dict]:
    """The ``per_language`` best-scored documents of each language of ``dataset`` and their snippets.

    Ties in score go to the earlier document (dataset order). Documents without a score or without
    a non-blank line are never seeds. Returns (seeds, counts) where counts tells, per language,
    the documents seen, unscored and empty.
    """
    if per_language < 1:
        raise ValueError(f"seeds_per_language must be >= 1, got {per_language}")
    wanted = {canonical_language(x) for x in languages} if languages else None
    heaps: dict[str, list] = {}
    counts: dict[str, dict[str, int]] = {}
    for pos, r in enumerate(records.iter_records(dataset)):
        lang = canonical_language(r.language) or "unknown"
        if wanted is not None and lang not in wanted:
            continue
        c = counts.setdefault(lang, {"documents": 0, "unscored": 0, "empty": 0, "seeds": 0})
        c["documents"] += 1
        score = document_score(r, scores)
        if score is None:
            c["unscored"] += 1
            continue
        if not r.content.strip():
            c["empty"] += 1
            continue
        item = (float(score), -pos, r.id)
        heap = heaps.setdefault(lang, [])
        if len(heap) < per_language:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
    if wanted:
        missing = sorted(wanted - set(counts))
        if missing:
            raise ValueError(f"no documents of language(s) {', '.join(missing)} in {dataset}")
    # Second pass: only the chosen documents' snippets are kept (never whole documents).
    chosen = {-neg_pos for heap in heaps.values() for _, neg_pos, _ in heap}
    snippets: dict[int, tuple[int, str]] = {}
    for pos, r in enumerate(records.iter_records(dataset)):
        if pos in chosen:
            snippets[pos] = snippet(r.content, f"{random_seed}:{r.id}", min_lines, max_lines)
    seeds: list[Seed] = []
    for lang in sorted(heaps):
        best = sorted(heaps[lang], key=lambda t: (-t[0], -t[1]))
        counts[lang]["seeds"] = len(best)
        for score, neg_pos, doc_id in best:
            start, text = snippets[-neg_pos]
            seeds.append(Seed(len(seeds), doc_id, lang, score, text, start, text.count("\n") + 1))
    return seeds, counts
