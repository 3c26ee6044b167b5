"""Select the phase-2 dataset: the top-scored documents of each language up to a token budget.

Recipe (phase 2): rank the annotated phase-1 corpus per language, take the
top percentile until the token budget is met, keep phase 1's language mix;
the paper takes 12.5B tokens and repeats them 4 times (50B tokens).

- Language mix: the share of each language in the corpus's tokens, counted
  with the project's tokenizer (``CodeTokenizer``) as the index builder will
  store them (ids plus one end-of-document token per document).
- Per language: budget = total budget x share; documents sorted by score
  (ties broken by corpus position) are taken until their tokens reach the budget, so each
  language overshoots by less than one document. The score cut-off is the
  last taken document's score.
- A document without a score (set aside by annotate) is never selected
  (funnel reason ``unscored``); the others not taken are ``below_cutoff``.

Three passes, each resumable: (1) per corpus shard, a table of (id,
language, score, tokens), sharded over ranks; (2) on rank 0, the per-language
cut-offs, written to ``plan.json``; (3) per corpus shard, the selected records
(with their annotator scores in ``meta["annotator"]``), sharded over ranks.
Work files live under ``OUT/selection_work/``. Outputs: the records dataset
in OUT, ``blend.json`` (the dataset with its repetition factor),
``selection_report.json`` and ``funnel.json``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from megatron_snow import records
from megatron_snow.funnel import Funnel
from megatron_snow.phase2.score_store import default_scores_dir, read_score_shard

WORK = "selection_work"
PLAN = "plan.json"
BLEND = "blend.json"
REPORT = "selection_report.json"
FUNNEL_FILE = "funnel.json"


@dataclass
class SelectConfig:
    """Settings of ``tools/preprocess/select.py``."""

    corpus: str = ""  # the phase-1 records dataset
    scores: str = ""  # annotate's output (default: <corpus>/scores)
    tokenizer: str = ""  # the project's tokenizer (.model or tokenizer.json)
    out: str = ""  # the phase-2 records dataset
    budget_tokens: int = 12_500_000_000  # unique tokens selected (paper: 12.5B)
    repetition: int = 4  # times the selection is repeated in training (paper: 4 -> 50B)
    tokenize_batch: int = 256  # documents per encode_batch call


def _fingerprint(cfg: SelectConfig) -> str:
    key = json.dumps({"corpus": str(Path(cfg.corpus).resolve()), "scores": str(Path(_scores_dir(cfg)).resolve()),
                      "tokenizer": str(Path(cfg.tokenizer).resolve()), "budget_tokens": cfg.budget_tokens},
                     sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _scores_dir(cfg: SelectConfig) -> Path:
    return Path(cfg.scores) if cfg.scores else default_scores_dir(cfg.corpus)


def _load_scores(path: Path, shard: Path) -> dict[str, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"no scores for corpus shard {shard.name} (expected {path}): run annotate first")
    return {row["id"]: row for row in read_score_shard(path)}


# -- pass 1: token and score table ------------------------------------------------
def build_table(shard: Path, scores_path: Path, tokenizer, out_path: Path, batch: int = 256) -> None:
    """(id, language, score, tokens) of every document of one corpus shard."""
    scores = _load_scores(scores_path, shard)
    rows, buf = [], []

    def flush():
        ids = tokenizer.encode_batch([r.content for r in buf])
        for r, t in zip(buf, ids):
            if r.id not in scores:
                raise ValueError(f"document {r.id!r} of {shard.name} has no score in {scores_path}")
            rows.append({"id": r.id, "language": r.language or "unknown", "score": scores[r.id]["score"],
                         "tokens": len(t) + 1, "bytes": len(r.content.encode("utf-8"))})
        buf.clear()

    for r in records.read_shard(shard):
        buf.append(r)
        if len(buf) >= batch:
            flush()
    flush()
    records.write_shard(out_path, rows)


# -- pass 2: per-language cut-offs ---------------------------------------------------
def plan_selection(read_table: Callable[[int], list[dict]], n_tables: int, budget_tokens: int) -> dict:
    """Per-language budget, cut-off and totals, from the pass-1 tables (table i = corpus shard i).

    Only numbers are held per document (score, tokens, shard, position), so
    rank 0 can plan a corpus of tens of millions of documents. Ties in score
    are broken by corpus position (shard, then row).
    """
    if budget_tokens <= 0:
        raise ValueError(f"budget_tokens must be positive, got {budget_tokens}")
    parts: dict[str, list[np.ndarray]] = {}
    for i in range(n_tables):
        by_lang: dict[str, list[tuple[float, int, int, int]]] = {}
        for j, r in enumerate(read_table(i)):
            score = np.nan if r["score"] is None else r["score"]
            by_lang.setdefault(r["language"], []).append((score, r["tokens"], i, j))
        for lang, items in by_lang.items():
            parts.setdefault(lang, []).append(np.array(items, dtype=np.float64))
    cols = {lang: np.concatenate(p) for lang, p in parts.items()}  # columns: score, tokens, shard, row
    corpus_tokens = {lang: int(c[:, 1].sum()) for lang, c in cols.items()}
    total = sum(corpus_tokens.values())
    if total == 0:
        raise ValueError("the corpus has no tokens")
    if budget_tokens > total:
        raise ValueError(f"budget_tokens {budget_tokens:,} exceeds the corpus's {total:,} tokens")
    langs = {}
    for lang in sorted(cols):
        c = cols[lang]
        share = corpus_tokens[lang] / total
        budget = budget_tokens * share
        scored = c[~np.isnan(c[:, 0])]
        scored = scored[np.lexsort((scored[:, 3], scored[:, 2], -scored[:, 0]))]  # best first
        running = np.cumsum(scored[:, 1])
        # First position where the running total reaches the budget: take up to and including it.
        k = min(int(np.searchsorted(running, budget, side="left")) + 1, len(scored))
        last = scored[k - 1] if k else None
        langs[lang] = {
            "share": share,
            "corpus_tokens": corpus_tokens[lang],
            "corpus_docs": len(c),
            "scored_docs": len(scored),
            "budget_tokens": budget,
            "selected_tokens": int(running[k - 1]) if k else 0,
            "selected_docs": k,
            "top_percent_docs": 100.0 * k / len(c),
            "score_cutoff": float(last[0]) if k else None,
            "cutoff_shard": int(last[2]) if k else None,
            "cutoff_row": int(last[3]) if k else None,
            "cutoff_id": read_table(int(last[2]))[int(last[3])]["id"] if k else None,
        }
        langs[lang]["short_of_budget"] = langs[lang]["selected_tokens"] < budget
    selected = sum(v["selected_tokens"] for v in langs.values())
    for v in langs.values():
        v["selected_share"] = v["selected_tokens"] / selected if selected else 0.0
    return {"budget_tokens": budget_tokens, "corpus_tokens": total, "selected_tokens": selected, "languages": langs}


def is_selected(row: dict, shard: int, position: int, plan: dict) -> bool:
    """Whether the document at ``position`` of corpus shard ``shard`` ranks within its language's cut-off."""
    lang = plan["languages"].get(row["language"])
    if row["score"] is None or lang is None or lang["score_cutoff"] is None:
        return False
    return (-row["score"], shard, position) <= (-lang["score_cutoff"], lang["cutoff_shard"], lang["cutoff_row"])


# -- pass 3: the phase-2 dataset -----------------------------------------------------
def write_selected(shard: Path, index: int, scores_path: Path, table: list[dict], plan: dict, out_path: Path) -> None:
    chosen = {row["id"] for j, row in enumerate(table) if is_selected(row, index, j, plan)}
    scores = _load_scores(scores_path, shard) if chosen else {}
    kept = []
    for r in records.read_shard(shard):
        if r.id in chosen:
            s = scores[r.id]
            r.meta = {**r.meta, "annotator": {"score": s["score"], "window_scores": s["window_scores"]}}
            kept.append(r)
    records.write_shard(out_path, kept)


def report_table(plan: dict, repetition: int) -> str:
    cols = ["language", "corpus_tok", "share%", "budget_tok", "selected_tok", "sel_share%", "docs", "top%", "cutoff"]
    rows = []
    for lang, v in plan["languages"].items():
        cutoff = f"{v['score_cutoff']:.4f}" if v["score_cutoff"] is not None else "-"
        rows.append([lang, f"{v['corpus_tokens']:,}", f"{100 * v['share']:.2f}", f"{v['budget_tokens']:,.0f}",
                     f"{v['selected_tokens']:,}", f"{100 * v['selected_share']:.2f}",
                     f"{v['selected_docs']}/{v['corpus_docs']}", f"{v['top_percent_docs']:.2f}", cutoff])
    rows.append(["TOTAL", f"{plan['corpus_tokens']:,}", "100.00", f"{plan['budget_tokens']:,}",
                 f"{plan['selected_tokens']:,}", "100.00", "", "", ""])
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    fmt = lambda cells: "  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    lines = ["== phase-2 selection ==", fmt(cols), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]
    lines.append(f"selected {plan['selected_tokens']:,} unique tokens x {repetition} repetitions = "
                 f"{plan['selected_tokens'] * repetition:,} training tokens")
    return "\n".join(lines)


def select(cfg: SelectConfig, log=print, show_progress: bool = True) -> dict | None:
    """Run the three passes (this rank's share of them); returns the report on rank 0."""
    from tqdm import tqdm

    from megatron_snow.dist import get_comm
    from megatron_snow.tokenization.tokenizer import load_tokenizer

    for key in ("corpus", "tokenizer", "out"):
        if not getattr(cfg, key):
            raise ValueError(f"select needs {key}=...")
    if cfg.repetition < 1:
        raise ValueError(f"repetition must be >= 1, got {cfg.repetition}")
    comm = get_comm()
    shards = records.list_shards(cfg.corpus)
    if not shards:
        raise FileNotFoundError(f"no shards in corpus {cfg.corpus}")
    scores_dir = _scores_dir(cfg)
    out = Path(cfg.out)
    work = out / WORK
    tables_dir = work / "tables"
    tables_dir.mkdir(parents=True, exist_ok=True)
    fp = _fingerprint(cfg)
    if comm.is_root:
        stamp = work / "settings.json"
        if stamp.is_file() and json.loads(stamp.read_text())["fingerprint"] != fp:
            raise ValueError(f"{out} holds a selection made with other settings (see {stamp}); use a new out=DIR")
        stamp.write_text(json.dumps({"fingerprint": fp, "corpus": cfg.corpus, "scores": str(scores_dir),
                                     "tokenizer": cfg.tokenizer, "budget_tokens": cfg.budget_tokens}, indent=2) + "\n")
    comm.barrier()
    mine = list(range(comm.rank, len(shards), comm.size))

    # Pass 1.
    todo = [i for i in mine if not (tables_dir / shards[i].name).is_file()]
    if todo:
        tok = load_tokenizer(cfg.tokenizer)
        for i in tqdm(todo, desc=f"select: count tokens r{comm.rank}", unit="shard", disable=not show_progress):
            build_table(shards[i], scores_dir / shards[i].name, tok, tables_dir / shards[i].name, cfg.tokenize_batch)
    comm.barrier()

    # Pass 2.
    def read_table(i):
        return read_score_shard(tables_dir / shards[i].name)

    plan_path = work / PLAN
    if comm.is_root and not plan_path.is_file():
        plan = plan_selection(read_table, len(shards), cfg.budget_tokens)
        records._atomic_write_bytes(plan_path, (json.dumps(plan, indent=2, sort_keys=True) + "\n").encode())
    comm.barrier()
    plan = json.loads(plan_path.read_text())

    # Pass 3.
    todo = [i for i in mine if not (out / shards[i].name).is_file()]
    for i in tqdm(todo, desc=f"select: write r{comm.rank}", unit="shard", disable=not show_progress):
        write_selected(shards[i], i, scores_dir / shards[i].name, read_table(i), plan, out / shards[i].name)
    comm.barrier()
    if not comm.is_root:
        return None

    funnel = Funnel("select")
    for i in range(len(shards)):
        for j, row in enumerate(read_table(i)):
            funnel.seen(row["language"], row["bytes"])
            if row["score"] is None:
                funnel.dropped(row["language"], row["bytes"], "unscored")
            elif is_selected(row, i, j, plan):
                funnel.kept(row["language"], row["bytes"])
            else:
                funnel.dropped(row["language"], row["bytes"], "below_cutoff")
    funnel.write(out / FUNNEL_FILE)
    entries = [records.shard_entry(out / s.name) for s in shards]
    unique = plan["selected_tokens"]
    records.write_manifest(out, entries, kind="phase2-selection", corpus=cfg.corpus, scores=str(scores_dir),
                           tokenizer=cfg.tokenizer, selected_tokens=unique, repetition=cfg.repetition)
    blend = {
        "phase": 2,
        "datasets": [{"path": str(out), "weight": 1.0, "unique_tokens": unique, "repetition": cfg.repetition,
                      "tokens": unique * cfg.repetition}],
        "total_tokens": unique * cfg.repetition,
        "note": "the paper: 12.5B unique tokens x 4 repetitions = 50B",
    }
    (out / BLEND).write_text(json.dumps(blend, indent=2) + "\n")
    report = {**plan, "repetition": cfg.repetition, "training_tokens": unique * cfg.repetition}
    (out / REPORT).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    log(report_table(plan, cfg.repetition))
    log(funnel.table())
    return report
