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

A step of the stage runner (``megatron_snow.stages``), three passes, each
resumable: (1) per corpus shard, a table of (id, language, score, tokens),
sharded over ranks; (2) on rank 0, the per-language cut-offs, written to
``plan.json``; (3) per corpus shard, the selected records (with their
annotator scores in ``meta["annotator"]``), sharded over ranks. Work files
live under ``OUT/_work/``; the runner fingerprints the content they come from
(the corpus and scores manifests, the tokenizer's bytes) and the budget, so a
re-scored corpus or another tokenizer is refused in one line rather than
mixed with stale tables (``--force`` replaces). Documents are matched to their scores by
position, so duplicate ids cannot swap scores. Outputs: the records dataset in
OUT, ``blend.json`` (the index prefix build_index is to write, its unique tokens
and repetition: ``pretrain_gpt.py data.blend_file=OUT/blend.json`` trains on it
for exactly that many repetitions), ``selection_report.json`` and ``funnel.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow import records
from megatron_snow.atomic import atomic_write_json
from megatron_snow.funnel import Funnel
from megatron_snow.indexed import BlendEntry, write_blend_file
from megatron_snow.phase2.score_store import default_scores_dir, read_score_shard
from megatron_snow.stages import Step, StepContext, UnitResult

PLAN = "plan.json"
BLEND = "blend.json"
REPORT = "selection_report.json"
FUNNEL_FILE = "funnel.json"


class SelectionError(records.RecordError):
    """The inputs cannot give a selection (scores missing or of another corpus): bad input, exit code 2."""


@dataclass
class SelectConfig(Config):
    """Settings of ``select`` (``tools/preprocess/select_data.py``)."""

    corpus: str = setting("", help="the phase-1 records dataset (a finished one: with its manifest.json)")
    scores: str = setting("", help="annotate's output (default: <corpus>/scores)")
    tokenizer: str = setting("", help="the project's tokenizer (.model or tokenizer.json)")
    out: str = setting("", help="the phase-2 records dataset")
    budget_tokens: int = setting(12_500_000_000, help="unique tokens selected (paper: 12.5B)", range=">= 1")
    repetition: int = setting(4, help="times the selection is repeated in training (paper: 4 -> 50B)", range=">= 1")
    index_prefix: str = setting(
        "", help="where build_index is to write the selection's index; blend.json names it (default: OUT/index/phase2)")
    tokenize_batch: int = setting(256, help="documents per encode_batch call", range=">= 1")


def _scores_dir(cfg: SelectConfig) -> Path:
    return Path(cfg.scores) if cfg.scores else default_scores_dir(cfg.corpus)


def _aligned(items: list, where: str, scores_path: Path) -> list[tuple[records.CodeRecord | records.BadRecord, dict]]:
    """The corpus shard's items (records, or stand-ins for unreadable lines), each with its score row.

    Score shards hold one row per corpus item in corpus order (annotate reads
    with the same reader), so rows are matched by position, not by id: two
    documents with the same id keep their own scores. Any disagreement means
    the scores belong to another corpus and stops the run.
    """
    if not scores_path.is_file():
        raise SelectionError(f"no scores for corpus shard {where} (expected {scores_path}): run annotate first")
    rows = read_score_shard(scores_path)
    if len(items) != len(rows):
        raise SelectionError(f"{scores_path} has {len(rows)} rows for the {len(items)} documents of {where}: "
                             "the scores are not of this corpus; score it again")
    for j, (item, row) in enumerate(zip(items, rows)):
        item_id = item.record.id if isinstance(item, records.BadRecord) else item.id
        if row.get("id") != item_id:
            raise SelectionError(f"{scores_path} row {j} scores {row.get('id')!r} but document {j} of {where} is "
                                 f"{item_id!r}: the scores are not of this corpus; score it again")
    return list(zip(items, rows))


# -- pass 1: token and score table ------------------------------------------------
def build_table(items: list, where: str, scores_path: Path, tokenizer, out_path: Path, batch: int = 256) -> None:
    """(id, language, score, tokens, bytes, dropped) of every document of one corpus shard, in its order.

    A document without a score (set aside by annotate, or unreadable) keeps annotate's reason in ``dropped``.
    """
    rows: list[dict] = []
    pending: list[tuple[int, str]] = []

    def flush():
        for (k, _), ids in zip(pending, tokenizer.encode_batch([t for _, t in pending])):
            rows[k]["tokens"] = len(ids) + 1  # + EOD, as build_index stores it
        pending.clear()

    for item, srow in _aligned(items, where, scores_path):
        if isinstance(item, records.BadRecord):
            rows.append({"id": item.record.id, "language": item.record.language or "unknown", "score": None,
                         "tokens": 0, "bytes": 0, "dropped": srow.get("dropped") or item.reason, "count": item.count})
            continue
        rows.append({"id": item.id, "language": item.language or "unknown", "score": srow["score"], "tokens": 0,
                     "bytes": len(item.content.encode("utf-8", "surrogatepass")),
                     "dropped": None if srow["score"] is not None else (srow.get("dropped") or "unscored")})
        pending.append((len(rows) - 1, item.content))
        if len(pending) >= batch:
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


class Select(Step):
    """The select step on the stage runner. ``prepare`` runs passes 1 (tables, each rank its shards) and
    2 (cut-offs, rank 0); each unit is pass 3 for one corpus shard: its selected documents, in order."""

    name = "select"

    def __init__(self, cfg: SelectConfig, log=print):
        self.settings, self.input_dir, self.log = cfg, Path(cfg.corpus), log
        self.scores_dir = _scores_dir(cfg)
        self.plan: dict | None = None

    def fingerprint_settings(self) -> dict:
        return {"budget_tokens": self.settings.budget_tokens}  # the rest only shapes blend.json, rewritten each run

    def depends_on(self) -> dict[str, Path]:
        return {"scores": self.scores_dir, "tokenizer": Path(self.settings.tokenizer)}

    def describe(self, unit) -> str:
        return f"{self.input_dir} shard {unit['shard']}"

    def _table(self, ctx: StepContext, i: int) -> Path:
        return ctx.work / "tables" / records.shard_name(i)

    def _scores(self, i: int) -> Path:
        return self.scores_dir / records.shard_name(i)

    def prepare(self, ctx: StepContext, units: list) -> None:
        from megatron_snow.tokenization.tokenizer import load_tokenizer

        n = len(units)
        mine = ctx.my_items(n)
        self.log(f"[select rank {ctx.comm.rank}/{ctx.comm.size}] {len(mine)} of {n} corpus shards")

        def pass1():
            (ctx.work / "tables").mkdir(parents=True, exist_ok=True)
            tok = None
            for i in ctx.bar([i for i in mine if not self._table(ctx, i).is_file()], "count tokens", "shard"):
                tok = tok or load_tokenizer(self.settings.tokenizer)
                build_table(list(ctx.read_input(i)), f"{self.input_dir} shard {i}", self._scores(i), tok,
                            self._table(ctx, i), self.settings.tokenize_batch)

        ctx.agree(pass1, "select: ")

        def pass2():
            path = ctx.work / PLAN
            if not path.is_file():
                read = lambda i: read_score_shard(self._table(ctx, i))  # noqa: E731
                atomic_write_json(path, plan_selection(read, n, self.settings.budget_tokens))
            return json.loads(path.read_text())

        self.plan = ctx.root_then_share(pass2, "select: ")

    def process(self, ctx: StepContext, index: int, unit) -> UnitResult:
        i = unit["shard"]
        table = read_score_shard(self._table(ctx, i))
        kept, funnel = [], Funnel(self.name)
        for j, (item, srow) in enumerate(_aligned(list(ctx.read_input(i)), f"{self.input_dir} shard {i}",
                                                  self._scores(i))):
            row = table[j]
            funnel.seen(row["language"], row["bytes"], row.get("count", 1))
            if row["score"] is None:
                funnel.dropped(row["language"], row["bytes"], row.get("dropped") or "unscored", row.get("count", 1))
            elif is_selected(row, i, j, self.plan):
                item.meta = {**item.meta, "annotator": {"score": srow["score"], "window_scores": srow["window_scores"]}}
                kept.append(item)
                funnel.kept(row["language"], row["bytes"])
            else:
                funnel.dropped(row["language"], row["bytes"], "below_cutoff")
        return UnitResult(kept, [], funnel)


def select(cfg: SelectConfig, log=print, show_progress: bool = True, force: bool = False, comm=None) -> dict:
    """Run the step on every rank (passes shared over ranks), then write blend.json and the report."""
    from megatron_snow.dist import get_comm
    from megatron_snow.stages import run_step

    for key in ("corpus", "tokenizer", "out"):
        if not getattr(cfg, key):
            raise ConfigError(f"select needs {key}=...")
    comm = comm or get_comm()
    if not records.list_shards(cfg.corpus):
        raise FileNotFoundError(f"no shards in corpus {cfg.corpus}")
    scores_dir = _scores_dir(cfg)
    if not (scores_dir / records.MANIFEST).is_file():
        raise FileNotFoundError(f"{scores_dir} has no {records.MANIFEST}: annotate has not finished scoring the corpus")
    if not Path(cfg.tokenizer).is_file():
        raise FileNotFoundError(f"tokenizer {cfg.tokenizer}: no such file")
    out = Path(cfg.out)
    funnel = run_step(Select(cfg, log), out, comm, force=force, progress=show_progress, keep_dropped=False)
    plan = json.loads((out / "_work" / PLAN).read_text())
    unique = plan["selected_tokens"]
    report = {**plan, "repetition": cfg.repetition, "training_tokens": unique * cfg.repetition}
    if comm.is_root:
        index_prefix = Path(cfg.index_prefix) if cfg.index_prefix else out / "index" / "phase2"
        write_blend_file(out / BLEND, [BlendEntry(os.path.relpath(os.path.abspath(index_prefix), os.path.abspath(out)),
                                                  unique, float(cfg.repetition))],
                         phase=2, records=str(out), note="the paper: 12.5B unique tokens x 4 repetitions = 50B")
        atomic_write_json(out / REPORT, report)
        log(report_table(plan, cfg.repetition))
        log(funnel.table())
        log(f"next: build-index --input {out} --output-prefix {index_prefix}; then train with "
            f"data.blend_file={out / BLEND} training.train_iters=0 ({cfg.repetition} repetitions)")
    return report


USAGE = """example:
  mpiexec -n 4 python -m megatron_snow select corpus=data/phase1 tokenizer=tok/code.model out=data/phase2 \\
      budget_tokens=12500000000 repetition=4 index_prefix=data/index/phase2"""


def cli_run(cfg, args, comm) -> None:
    """The ``select`` command."""
    select(cfg, show_progress=not args.quiet, force=args.force, comm=comm)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow select`` / ``tools/preprocess/select_data.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["select"].main(argv)
