"""The section builders: each reads what the steps wrote under a run directory and returns a Section
of plain blocks (``blocks.py``), or None when the run has nothing for it. Both renderers draw the same
sections (criterion: one set of builders, two renderers).

Files are found by convention of names, so any run laid out like ``examples/tiny/work`` works:
``**/funnel.json`` and ``**/*.funnel.json`` (a step's funnel) with ``dropped/`` (its set-aside records,
``meta["dropped"]`` = stage, reason and details) and ``step.json`` (its settings) beside them;
``**/*.stats.json`` (tokens per language of an index); ``**/metrics.jsonl`` (training);
``**/annotator/metrics.json``, ``**/scores/`` (annotator scores), ``**/selection_report.json`` and
``**/alignment.json``; ``**/synthetic/`` and ``**/mix_report.json``; ``**/results.json`` (evaluate)
and ``**/ablation.json``.

At paper scale nothing is read whole: set-aside records, scores and synthetic files are read shard by
shard until the report has its few examples or a read cap is hit, and every example is cut to its
first lines, so the report stays a few MB whatever the run's size.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from megatron_snow.records import CodeRecord, iter_json_lines, list_shards
from megatron_snow.report import evidence
from megatron_snow.report.blocks import Example, Examples, Heading, Section, Table, Text
from megatron_snow.report.plots import figure, plt

EXAMPLES_PER_REASON = 3
MAX_RECORDS_READ = 20_000  # set-aside records read per stage, looking for examples of each reason
MAX_SHARDS_READ = 16
MAX_SCORE_ROWS = 1_000_000  # annotator score rows read for the histograms (evenly spaced shards)
# characters of all example texts together (escaped at most ~4x longer: the HTML stays under 10 MB)
EXAMPLE_CHARS_BUDGET = 1_500_000
MAX_PLOT_LANGUAGES = 12

# Pipeline order of the steps (a funnel's "stage"); steps that follow a dataset (build_index,
# train_tokenizer) are placed right after the step that wrote their input.
STAGE_RANK = {"ingest": 1, "filter": 2, "exact_dedup": 3, "near_dedup": 4, "decontaminate": 5, "pii": 6,
              "group": 7, "annotate": 8, "select": 9, "synthesize": 10, "mix": 11}
FOLLOWERS = {"train_tokenizer": 0.3, "build_index": 0.5}
SECTION_STAGES = {"synthesize"}  # their examples are in their own section (seeds beside the files)
NO_COPY_HINTS = {"select": "; the scores below each language's cutoff are in the annotator section",
                 "mix": "; what the mix left out and why is in the synthesis and mix section"}


# -- the run directory --------------------------------------------------------------
class Run:
    """A run directory and what the builders share: file discovery and the budget of example text."""

    def __init__(self, root: Path, example_budget: int = EXAMPLE_CHARS_BUDGET):
        self.root = Path(root)
        self.budget = example_budget
        self.files = sorted(Path(d) / f for d, _, names in os.walk(self.root) for f in names)  # one walk
        self._ablations = {p.parent for p in self.files if p.name == "ablation.json"}
        self._funnels: list[StageFunnel] | None = None

    def rglob(self, pattern: str, ablations: bool = False) -> list[Path]:
        """Files whose path ends like ``pattern``, sorted; without ablation directories (their own section)."""
        return [p for p in self.files if p.match(pattern) and (ablations or not self._ablations & set(p.parents))]

    def rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def example(self, ex: Example) -> Example | None:
        """``ex`` if the budget of example text allows it (else None: the report says examples were cut)."""
        n = len(ex.text) + len(ex.side[1] if ex.side else "") + sum(len(k) + len(v) for k, v in ex.evidence)
        if n > self.budget:
            return None
        self.budget -= n
        return ex


def load(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_lines(path: Path, limit: int | None = None) -> Iterator[dict]:
    """JSON objects of a .jsonl(.gz) file; damaged lines are skipped (the steps count them, not the report)."""
    for n, item in enumerate(iter_json_lines(path)):
        if limit is not None and n >= limit:
            return
        if isinstance(item, tuple):
            yield item[1]


def read_records(directory: Path, max_records: int = MAX_RECORDS_READ,
                 max_shards: int = MAX_SHARDS_READ) -> Iterator[CodeRecord]:
    """Records of a dataset in shard order, at most ``max_records`` from the first ``max_shards`` shards."""
    n = 0
    for shard in list_shards(directory)[:max_shards]:
        for d in read_lines(shard):
            try:
                yield CodeRecord.from_dict(d)
            except (TypeError, KeyError):
                continue
            n += 1
            if n >= max_records:
                return


def _n(x: int | float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.1f}"


# -- funnels ------------------------------------------------------------------------
@dataclass
class StageFunnel:
    stage: str
    output: str  # what the step wrote (relative to the run)
    folder: Path  # the step's directory: funnel.json, step.json, dropped/
    funnel: dict
    rank: float = 100.0
    _reasons: dict | None = None

    def languages(self) -> dict[str, dict[str, list[int]]]:
        return self.funnel.get("languages", {})

    def total(self, name: str) -> int:
        return sum(per.get(name, [0, 0])[0] for per in self.languages().values())

    def reasons(self) -> dict[str, dict[str, int]]:
        """reason -> language -> documents (most documents first)."""
        if self._reasons is None:
            self._reasons = self._count_reasons()
        return self._reasons

    def _count_reasons(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = defaultdict(dict)
        for lang, per in self.languages().items():
            for k, v in per.items():
                if k.startswith("dropped:") and v[0]:
                    out[k.split(":", 1)[1]][lang] = v[0]
        return dict(sorted(out.items(), key=lambda kv: -sum(kv[1].values())))

    def settings(self) -> dict:
        step = load(self.folder / "step.json")
        return (step or {}).get("settings") or {}


def _input_hash(folder: Path) -> str | None:
    step = load(folder / "step.json")
    return ((step or {}).get("inputs") or {}).get("input")


def funnels(run: Run) -> list[StageFunnel]:
    """Every step's funnel, in pipeline order; the runner's copies and scratch folders left out."""
    if run._funnels is None:
        run._funnels = _find_funnels(run)
    return run._funnels


def _find_funnels(run: Run) -> list[StageFunnel]:
    from megatron_snow.stages.runner import content_hash

    found: list[StageFunnel] = []
    for p in run.rglob("funnel.json") + run.rglob("*.funnel.json"):
        if "_work" in p.parts or "dropped" in p.parts:
            continue
        d = load(p)
        if not isinstance(d, dict) or not isinstance(d.get("languages"), dict):
            continue  # e.g. phase1/funnel.json, the summary of every phase-1 stage
        stage = str(d.get("stage") or p.parent.name)
        if p.name == "funnel.json":
            folder = p.parent
            if folder.suffix == ".step":
                if folder.with_name(folder.stem + ".funnel.json").is_file():
                    continue  # the runner's copy of an artefact's funnel, which sits beside it as PREFIX.funnel.json
                output = run.rel(folder.with_suffix(""))
            elif stage == "annotate":
                output = f"annotator scores of {run.rel(folder.parent)}"
            else:
                output = run.rel(folder)
        else:  # PREFIX.funnel.json beside an artefact (an index); its step directory is PREFIX.step
            output = run.rel(p.with_name(p.name.removesuffix(".funnel.json")))
            folder = p.with_name(p.name.removesuffix(".funnel.json") + ".step")
        found.append(StageFunnel(stage, output, folder, d, STAGE_RANK.get(stage, 100.0)))
    producers = {}
    for f in found:
        if f.stage not in FOLLOWERS and (f.folder / "manifest.json").is_file():
            producers[content_hash(f.folder)] = f.rank
    for f in found:
        if f.stage in FOLLOWERS:
            f.rank = producers.get(_input_hash(f.folder), 99.0) + FOLLOWERS[f.stage]
    return sorted(found, key=lambda f: (f.rank, f.output))


def _drop_cell(f: StageFunnel) -> str:
    parts = []
    for reason, per in f.reasons().items():
        langs = ", ".join(f"{lang} {n}" for lang, n in sorted(per.items(), key=lambda kv: -kv[1]))
        parts.append(f"{reason} {sum(per.values())} ({langs})")
    return "; ".join(parts) or "-"


def funnel_section(run: Run) -> Section | None:
    stages = funnels(run)
    if not stages:
        return None
    blocks: list = [Text("Documents per step in pipeline order: in = kept + set aside (by reason, with the languages "
                         "of what was set aside). A step's set-aside records are in its folder under dropped/.")]
    blocks.append(Table(["step", "output", "in", "kept", "set aside by reason"],
                        [[f.stage, f.output, _n(f.total("in")), _n(f.total("kept")), _drop_cell(f)] for f in stages]))
    # languages with something kept somewhere (a language only ever set aside, e.g. "unknown", is in the reasons)
    langs = sorted({lang for f in stages for lang, per in f.languages().items() if per.get("kept", [0])[0]})
    blocks.append(Heading("Kept documents per language"))
    blocks.append(Table(["step"] + langs,
                        [[f"{f.stage} ({f.output})"] + [_n(f.languages().get(lang, {}).get("kept", [0])[0])
                                                        for lang in langs] for f in stages]))
    p = plt()
    fig, ax = p.subplots(figsize=(max(6.0, len(stages) * 0.8), 4))
    bottom = [0] * len(stages)
    for lang in langs:
        vals = [f.languages().get(lang, {}).get("kept", [0])[0] for f in stages]
        ax.bar(range(len(stages)), vals, bottom=bottom, label=lang)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(stages)), [f"{f.stage}\n{Path(f.output).name}" if f.stage in FOLLOWERS else f.stage
                                       for f in stages], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("documents kept")
    ax.set_title("Documents kept per step (pipeline order) and language")
    if langs:
        ax.legend(fontsize=7, ncol=2)
    blocks.append(figure(fig, "funnel.png", "documents kept per step and language"))
    return Section("funnel", "Data funnel", blocks)


# -- what each step set aside: examples with their evidence ----------------------------
def _details(d: dict) -> list[tuple[str, str]]:
    names = {"match": "matched text", "duplicate_of": "kept partner", "of": "kept seed"}
    return [(names.get(k, k), str(v)[:400]) for k, v in d.items() if k not in ("stage", "reason")]


def _title(rec: CodeRecord) -> str:
    if rec.repo and rec.path:
        return f"{rec.repo}/{rec.path}"
    return rec.path or rec.id


def _sample_dropped(folder: Path, reasons: list[str], k: int = EXAMPLES_PER_REASON) -> dict[str, list[CodeRecord]]:
    """Up to ``k`` set-aside records per reason, spread over languages, from the first shards of ``dropped/``."""
    pool: dict[str, list[CodeRecord]] = defaultdict(list)
    want = set(reasons)
    d = folder / "dropped"
    if not (d / "manifest.json").is_file():
        return {}
    for rec in read_records(d):
        reason = (rec.meta.get("dropped") or {}).get("reason")
        if reason in want and len(pool[reason]) < 4 * k:
            pool[reason].append(rec)
            if all(len(pool[r]) >= 4 * k for r in want):
                break
    out = {}
    for reason, recs in pool.items():
        by_lang: dict[str, list[CodeRecord]] = defaultdict(list)
        for r in recs:
            by_lang[r.language].append(r)
        picked: list[CodeRecord] = []
        while len(picked) < k and any(by_lang.values()):  # round robin over languages
            for lang in sorted(by_lang):
                if by_lang[lang] and len(picked) < k:
                    picked.append(by_lang[lang].pop(0))
        out[reason] = picked
    return out


def _find_records(directory: Path, ids: set[str], shards: list[int] | None = None) -> dict[str, CodeRecord]:
    """Records of ``directory`` by id: in the given shards, else in the first shards (capped)."""
    found: dict[str, CodeRecord] = {}
    all_shards = list_shards(directory) if (directory / "manifest.json").is_file() else []
    chosen = [all_shards[i] for i in sorted(set(shards)) if 0 <= i < len(all_shards)] if shards else \
        all_shards[:MAX_SHARDS_READ]
    for shard in chosen:
        for d in read_lines(shard):
            if d.get("id") in ids:
                found[d["id"]] = CodeRecord.from_dict(d)
                if len(found) == len(ids):
                    return found
    return found


def _stage_examples(run: Run, f: StageFunnel) -> list:
    reasons = list(f.reasons())
    if not reasons:
        return []
    sampled = _sample_dropped(f.folder, reasons)
    settings = f.settings()
    partners: dict[str, CodeRecord] = {}
    if f.stage in ("exact_dedup", "near_dedup"):
        recs = [r for rs in sampled.values() for r in rs]
        ids = {r.meta["dropped"].get("duplicate_of") for r in recs} - {None}
        shards = [r.meta["dropped"]["kept_in_shard"] for r in recs
                  if isinstance(r.meta["dropped"].get("kept_in_shard"), int)]
        partners = _find_records(f.folder, ids, shards or None)
    out: list = []
    for reason in reasons:
        count = sum(f.reasons()[reason].values())
        items = []
        for rec in sampled.get(reason, []):
            details = dict(rec.meta.get("dropped") or {})
            ev = _details({k: v for k, v in details.items() if k != "kept_in_shard"})
            side = None
            if f.stage == "filter":
                lang_t = {**(settings.get("filter") or {}).get("default", {}),
                          **((settings.get("filter") or {}).get("per_language") or {}).get(rec.language, {})}
                ev = evidence.filter_evidence(reason, rec.content, rec.path, lang_t) + ev
            partner = partners.get(details.get("duplicate_of", ""))
            if partner is not None:
                if f.stage == "near_dedup":
                    nd = settings.get("near_dedup") or {}
                    ngram = int(nd.get("ngram") or 5)
                    j = evidence.jaccard(rec.content, partner.content, ngram)
                    ev.append(("Jaccard with the kept partner",
                               f"{j:.3f} (word {ngram}-gram shingles; threshold {nd.get('threshold', '?')})"))
                    side = (f"kept partner: {_title(partner)}", evidence.first_lines(partner.content))
                else:
                    ev.append(("kept partner's bytes", "identical" if partner.content == rec.content else "differ"))
            elif details.get("duplicate_of"):
                ev.append(("kept partner", f"{details['duplicate_of']} (not found in the shards read)"))
            unread = not rec.content and isinstance(rec.meta.get("bytes"), int)  # set aside before it was read
            if unread:
                ev.append(("bytes", str(rec.meta["bytes"])))
            text = evidence.first_lines(rec.content) if rec.content else \
                "(not read as text)" if unread else "(empty)"
            label = "first lines"
            around = evidence.lines_around(rec.content, str(details["match"])) if details.get("match") else None
            if around is not None:  # where the benchmark text sits in the file
                label, text = f"from line {around[0]} (the match)", around[1]
            ex = run.example(Example(_title(rec), rec.language or "unknown", ev, text, label, side))
            if ex is not None:
                items.append(ex)
        note = ""
        if not items:
            kept_none = not ((load(f.folder / "dropped" / "manifest.json") or {}).get("records"))
            note = ("the step keeps no copy of what it sets aside (keep_dropped: false, or a step that writes none)"
                    + NO_COPY_HINTS.get(f.stage, "") if kept_none else
                    f"no example among the first {MAX_RECORDS_READ:,} set-aside records read (or the report's "
                    "example budget was spent)")
        out.append(Examples(f"{f.stage}: {reason} ({_n(count)} set aside)", items, note))
    return out


def _pii_examples(run: Run, f: StageFunnel) -> list:
    """Files PII redaction changed (kept, shown as redacted): the kinds and counts, the lines with placeholders."""
    pii = f.settings().get("pii") or {}
    holders = [pii.get(k) for k in ("email_placeholder", "ip_placeholder", "key_placeholder")]
    holders = [h for h in holders if h] or ["<EMAIL>", "<IP_ADDRESS>", "<KEY>"]
    if not (f.folder / "manifest.json").is_file():
        return []
    by_kind: dict[str, list[CodeRecord]] = defaultdict(list)
    for rec in read_records(f.folder):
        kinds = rec.meta.get("pii")
        if isinstance(kinds, dict):
            for kind in kinds:
                if len(by_kind[kind]) < EXAMPLES_PER_REASON:
                    by_kind[kind].append(rec)
        if by_kind and all(len(v) >= EXAMPLES_PER_REASON for v in by_kind.values()) and len(by_kind) >= 3:
            break
    out = []
    seen: set[str] = set()
    for kind, recs in sorted(by_kind.items()):
        items = []
        for rec in recs:
            if rec.id in seen:
                continue
            seen.add(rec.id)
            ev = [("redacted", ", ".join(f"{k} {v}" for k, v in sorted(rec.meta["pii"].items())))]
            ex = run.example(Example(_title(rec), rec.language, ev, evidence.lines_with(rec.content, holders),
                                     text_label="lines with a placeholder (as kept)"))
            if ex is not None:
                items.append(ex)
        if items:
            out.append(Examples(f"pii: {kind} redacted (kept, shown redacted)", items))
    return out


def examples_section(run: Run) -> Section | None:
    blocks: list = []
    for f in funnels(run):
        if f.stage in SECTION_STAGES:
            continue
        blocks += _stage_examples(run, f)
        if f.stage == "pii":
            blocks += _pii_examples(run, f)
    if not blocks:
        return None
    intro = Text(f"For each reason a step set documents aside, up to {EXAMPLES_PER_REASON} examples (path, language, "
                 "first lines) with the evidence the step recorded. Filter values and near-duplicate Jaccard are "
                 "measured again here with the step's own code and settings (its step.json).")
    return Section("dropped", "What each step set aside", [intro] + blocks)


# -- tokens -------------------------------------------------------------------------
def tokens_section(run: Run) -> Section | None:
    stats = [(p, load(p)) for p in run.rglob("*.stats.json")]
    stats = [(p, d) for p, d in stats if isinstance(d, dict) and "languages" in d and "index_cache" not in str(p)]
    if not stats:
        return None
    langs = sorted({lang for _, d in stats for lang in d["languages"]})
    rows = []
    for p, d in stats:
        per = d["languages"]
        total = sum(v.get("tokens", 0) for v in per.values())
        rows.append([run.rel(p).removesuffix(".stats.json"), _n(d.get("documents", 0)), _n(total)]
                    + [f"{100 * per.get(lang, {}).get('tokens', 0) / max(total, 1):.1f}%" for lang in langs])
    blocks: list = [Table(["dataset", "documents", "tokens"] + langs, rows, "Tokens per indexed dataset and language")]
    for b in run.rglob("blend*.json"):
        d = load(b)
        if not isinstance(d, dict) or not isinstance(d.get("datasets"), list):
            continue
        rows = [[str(x.get("prefix", "")), _n(x.get("unique_tokens", 0)), f"{x.get('repetition', 0):.2f}",
                 f"{x.get('weight', 0):.3f}", _n(x.get("tokens", 0))] for x in d["datasets"] if isinstance(x, dict)]
        blocks += [Heading(f"Blend {run.rel(b)}")]
        if d.get("note"):
            blocks.append(Text(str(d["note"])))
        blocks.append(Table(["dataset", "unique tokens", "repetition", "weight", "tokens trained on"], rows))
    return Section("tokens", "Tokens per indexed dataset and language", blocks)


# -- annotator ------------------------------------------------------------------------
def _score_rows(scores_dir: Path) -> tuple[list[tuple[int, int, dict]], int, int]:
    """(shard, position, row) of scored documents from evenly spaced shards (capped), shards read, shards."""
    shards = list_shards(scores_dir)
    if not shards:
        return [], 0, 0
    rows: list[tuple[int, int, dict]] = []
    order = list(range(len(shards)))
    stride = max(1, len(shards) // MAX_SHARDS_READ)
    picked = order[::stride][:MAX_SHARDS_READ] if len(shards) > MAX_SHARDS_READ else order
    read = 0
    for i in picked:
        read += 1
        for j, d in enumerate(read_lines(shards[i])):
            if isinstance(d.get("score"), (int, float)):
                rows.append((i, j, d))
        if len(rows) >= MAX_SCORE_ROWS:
            break
    return rows, read, len(shards)


def _corpus_records(corpus: Path, wanted: dict[int, set[int]]) -> dict[tuple[int, int], CodeRecord]:
    """Records of the corpus at (shard, position): a score shard is in its corpus shard's order."""
    shards = list_shards(corpus)
    out = {}
    for i, positions in wanted.items():
        if i >= len(shards):
            continue
        for j, item in enumerate(iter_json_lines(shards[i])):
            if j > max(positions):
                break
            if j in positions and isinstance(item, tuple):
                out[(i, j)] = CodeRecord.from_dict(item[1])
    return out


def _histograms(run: Run, scores_dir: Path, selection: dict | None) -> list:
    rows, read, total = _score_rows(scores_dir)
    if not rows:
        return []
    by_lang: dict[str, list[tuple[int, int, dict]]] = defaultdict(list)
    for r in rows:
        by_lang[r[2].get("language") or "unknown"].append(r)
    sel_langs = (selection or {}).get("languages") or {}
    langs = sorted(by_lang, key=lambda lang: -len(by_lang[lang]))
    shown = langs[:MAX_PLOT_LANGUAGES]
    p = plt()
    ncol = min(3, len(shown))
    nrow = (len(shown) + ncol - 1) // ncol
    fig, axes = p.subplots(nrow, ncol, figsize=(4 * ncol, 2.6 * nrow), squeeze=False)
    for ax, lang in zip(axes.flat, shown):
        scores = [r[2]["score"] for r in by_lang[lang]]
        ax.hist(scores, bins=30, color="#4c72b0")
        cut = (sel_langs.get(lang) or {}).get("score_cutoff")
        if isinstance(cut, (int, float)):
            ax.axvline(cut, color="#c44e52", lw=2, label=f"selection cutoff {cut:.3f}")
            ax.legend(fontsize=7)
        ax.set_title(f"{lang} ({len(scores):,} documents)", fontsize=9)
        ax.set_xlabel("annotator score", fontsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    fig.suptitle("Annotator scores per language; the red line is the phase-2 selection cutoff", fontsize=10)
    blocks: list = [Heading("Scores per language"),
                    Text(f"{run.rel(scores_dir)}: {len(rows):,} scored documents from {read} of {total} score shards"
                         + (f"; the {len(shown)} languages with most documents are plotted"
                            if len(langs) > len(shown) else "")
                         + ". Everything at or right of the cutoff was selected for phase 2 (ties: corpus order)."),
                    figure(fig, "scores.png", "annotator score histograms per language with the selection cutoff")]
    table = []
    for lang in langs:
        s = sel_langs.get(lang) or {}
        cut = s.get("score_cutoff")
        table.append([lang, _n(len(by_lang[lang])), _n(s.get("selected_docs", 0)) if s else "-",
                      f"{cut:.4f}" if isinstance(cut, (int, float)) else "-",
                      _n(s.get("selected_tokens", 0)) if s else "-"])
    blocks.append(Table(["language", "documents scored (read)", "selected documents", "score cutoff",
                         "selected tokens"], table))
    # top, median and bottom documents of each language (among the rows read)
    picks: dict[str, list[tuple[str, tuple[int, int], float]]] = {}
    for lang in langs:
        ranked = sorted(by_lang[lang], key=lambda r: -r[2]["score"])
        pos: dict[int, str] = {}
        for name, k in (("top", 0), ("median", len(ranked) // 2), ("bottom", len(ranked) - 1)):
            pos.setdefault(k, name)  # a language of one or two documents shows each once
        picks[lang] = [(name, (ranked[k][0], ranked[k][1]), ranked[k][2]["score"]) for k, name in sorted(pos.items())]
    wanted: dict[int, set[int]] = defaultdict(set)
    for lang in langs[:MAX_PLOT_LANGUAGES]:
        for _, (i, j), _ in picks[lang]:
            wanted[i].add(j)
    recs = _corpus_records(scores_dir.parent, wanted)
    for lang in langs[:MAX_PLOT_LANGUAGES]:
        items = []
        cut = (sel_langs.get(lang) or {}).get("score_cutoff")
        for name, key, score in picks[lang]:
            rec = recs.get(key)
            if rec is None:
                continue
            ev = [("position", name), ("score", f"{score:.4f}")]
            if isinstance(cut, (int, float)):
                ev.append(("selected for phase 2", "yes" if score >= cut else "no"))
            ex = run.example(Example(_title(rec), lang, ev, evidence.first_lines(rec.content, max_lines=16)))
            if ex is not None:
                items.append(ex)
        if items:
            blocks.append(Examples(f"{lang}: the top, median and bottom scored documents", items))
    return blocks


def _alignment(run: Run, path: Path, a: dict) -> list:
    bench = a.get("benchmarks") or {}
    if not bench:
        return []
    blocks: list = [Heading("Alignment with the benchmarks (the paper's Fig. 2)"),
                    Text(f"{run.rel(path)}: ROC-AUC of the annotator's scores of benchmark solutions against "
                         f"{a.get('negatives', '?')} held-out corpus files (0.5: no preference)."),
                    Table(["benchmark", "positives", "ROC-AUC"],
                          [[name, str(b.get("positives", "")), f"{b.get('roc_auc', float('nan')):.3f}"]
                           for name, b in sorted(bench.items())])]
    p = plt()
    curves = {n: b["roc"] for n, b in bench.items() if isinstance(b.get("roc"), dict) and b["roc"].get("fpr")}
    if curves:
        fig, ax = p.subplots(figsize=(5.5, 4.5))
        for name in sorted(curves):
            ax.plot(curves[name]["fpr"], curves[name]["tpr"], label=f"{name} (AUC {bench[name].get('roc_auc', 0):.3f})")
        ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
        ax.set_xlabel("false positive rate (corpus files)")
        ax.set_ylabel("true positive rate (benchmark solutions)")
        ax.legend(fontsize=7)
    else:
        fig, ax = p.subplots(figsize=(7, 3.5))
        names = sorted(bench)
        ax.barh(names, [bench[n].get("roc_auc", 0) for n in names])
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("ROC-AUC (benchmark solutions vs corpus files)")
    ax.set_title("Annotator alignment with downstream benchmarks")
    blocks.append(figure(fig, "alignment.png", "annotator alignment per benchmark"))
    return blocks


def annotator_section(run: Run) -> Section | None:
    blocks: list = []
    for p in run.rglob("annotator/metrics.json"):
        m = load(p)
        if not isinstance(m, dict):
            continue
        for split in ("validation", "test"):
            s = m.get(split) or {}
            if s:
                nan = float("nan")
                blocks.append(Text(f"{split} ({s.get('n', '?')} held-out files): ROC-AUC {s.get('roc_auc', nan):.3f}, "
                                   f"F1 {s.get('f1', nan):.3f}, accuracy {s.get('accuracy', nan):.3f}"))
    selections = [load(p) for p in run.rglob("selection_report.json")]
    selection = next((s for s in selections if isinstance(s, dict)), None)
    for manifest in run.rglob("scores/manifest.json"):
        blocks += _histograms(run, manifest.parent, selection)
    for p in run.rglob("alignment.json"):
        a = load(p)
        if isinstance(a, dict):
            blocks += _alignment(run, p, a)
    if not blocks:
        return None
    return Section("annotator", "Quality annotator: what it calls high quality", blocks)


# -- synthesis and the phase-3 mix -------------------------------------------------------
def _seed_snippets(folder: Path, ids: set[str]) -> dict[str, str]:
    """Seed snippets by seed id, from the step's record of its seeds (``_work/seeds.jsonl.gz``)."""
    out: dict[str, str] = {}
    path = folder / "_work" / "seeds.jsonl.gz"
    if not path.is_file() or not ids:
        return out
    for d in read_lines(path):
        if d.get("id") in ids and isinstance(d.get("snippet"), str):
            out[d["id"]] = d["snippet"]
            if len(out) == len(ids):
                break
    return out


def _synthetic_example(run: Run, rec: CodeRecord, snippets: dict[str, str],
                       extra: list[tuple[str, str]]) -> Example | None:
    syn = rec.meta.get("synthesis") or {}
    named = {k for k, _ in extra}
    ev = list(extra) + [(k, str(syn[k])) for k in ("seed_id", "seed_score", "finish_reason", "completion_tokens",
                                                   "parser") if k in syn and k not in named]
    snippet = snippets.get(syn.get("seed_id", ""))
    side = ("seed snippet", evidence.first_lines(snippet, max_lines=16)) if snippet else None
    return run.example(Example(rec.path or rec.id, rec.language, ev, evidence.first_lines(rec.content, max_lines=16),
                               text_label="generated", side=side))


def synthesis_section(run: Run) -> Section | None:
    blocks: list = []
    for f in funnels(run):
        if f.stage != "synthesize":
            continue
        has_kept = (f.folder / "manifest.json").is_file()
        kept = list(read_records(f.folder, max_records=6, max_shards=4)) if has_kept else []
        reasons = list(f.reasons())
        sampled = _sample_dropped(f.folder, reasons)
        recs = kept + [r for v in sampled.values() for r in v]
        seeds = {(r.meta.get("synthesis") or {}).get("seed_id") for r in recs}
        snippets = _seed_snippets(f.folder, seeds - {None})
        blocks.append(Text(f"{f.output}: {_n(f.total('in'))} phase-2 documents in, {_n(f.total('kept'))} synthetic "
                           "files kept. The seeds are the top-scored phase-2 documents of each language; each "
                           "generated file is shown beside the seed snippet it was asked to continue from."))
        items = [ex for ex in (_synthetic_example(run, r, snippets, []) for r in kept) if ex]
        blocks.append(Examples("kept synthetic files beside their seeds", items,
                               "" if items else "no synthetic file was kept"))
        for reason in reasons:
            count = sum(f.reasons()[reason].values())
            recs = sampled.get(reason, [])
            items = [ex for ex in (_synthetic_example(run, r, snippets, _details(r.meta.get("dropped") or {}))
                                   for r in recs if (r.meta.get("synthesis") or r.content)) if ex]
            note = "" if items else "documents that were not seeds (counted, not generated from)" \
                if not recs or not any(r.meta.get("synthesis") for r in recs) else ""
            blocks.append(Examples(f"synthesize: {reason} ({_n(count)} set aside)", items, note))
    for p in run.rglob("mix_report.json"):
        m = load(p)
        if not isinstance(m, dict) or not isinstance(m.get("languages"), dict):
            continue
        blocks += _mix(run, p, m)
    if not blocks:
        return None
    return Section("synthesis", "Synthesis and the phase-3 mix", blocks)


def _mix(run: Run, path: Path, m: dict) -> list:
    langs = m["languages"]

    def num(v: dict, k: str) -> float:
        return v.get(k) if isinstance(v.get(k), (int, float)) else 0

    order = sorted(langs, key=lambda lang: -num(langs[lang], "planned_tokens"))
    syn = [num(langs[lang], "synthetic_planned_tokens") for lang in order]
    ph2 = [num(langs[lang], "planned_tokens") - s for lang, s in zip(order, syn)]
    rows = [[lang, _n(int(num(v, "synthetic_tokens"))), _n(int(s)), _n(int(num(v, "phase2_tokens"))), _n(int(p)),
             f"{num(v, 'phase2_repetition'):.2f}", _n(int(num(v, "planned_tokens"))),
             f"{100 * num(v, 'planned_share'):.1f}%"]
            for lang, v, s, p in zip(order, (langs[x] for x in order), syn, ph2)]
    share = m.get("python_share")
    blocks: list = [Heading("The phase-3 mix"),
                    Text(f"{run.rel(path)}: budget {_n(int(m.get('budget_tokens', 0)))} tokens, planned "
                         f"{_n(int(m.get('planned_tokens', 0)))}, of which synthetic "
                         f"{_n(int(m.get('synthetic_planned_tokens', 0)))}"
                         + (f"; Python share {100 * share:.1f}%" if isinstance(share, (int, float)) else "")
                         + f"; synthetic documents in the blend: {m.get('synthetic_documents', '?')}."
                         + (f" {m['note']}" if m.get("note") else "")),
                    Table(["language", "synthetic tokens", "synthetic planned", "phase-2 tokens", "phase-2 planned",
                           "phase-2 repetition", "planned tokens", "share"], rows)]
    left = m.get("left_out") or []
    if left:
        blocks.append(Table(["left out", "source", "documents", "tokens", "why"],
                            [[str(x.get("language", "")), str(x.get("source", "")), str(x.get("documents", "")),
                              str(x.get("tokens", "")), str(x.get("reason", ""))] for x in left[:50]]))
    p = plt()
    fig, ax = p.subplots(figsize=(max(6.5, 0.7 * len(order)), 3.5))
    ax.bar(order, ph2, label="phase-2 data", color="#4c72b0")
    ax.bar(order, syn, bottom=ph2, label="synthetic", color="#dd8452")
    ax.set_ylabel("tokens planned")
    ax.set_title("Phase-3 mix per language: synthetic vs phase-2 data", fontsize=10)
    ax.legend(fontsize=7)
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    blocks.append(figure(fig, "mix.png", "phase-3 mix per language"))
    return blocks


# -- training, evaluation, ablation ----------------------------------------------------
def _metrics(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict):
            rows.append(d)
    return rows


def training_section(run: Run) -> Section | None:
    phases = [(p.parent.name, _metrics(p)) for p in run.rglob("metrics.jsonl")]
    phases = [(n, r) for n, r in phases if any(x.get("split") == "train" and "loss" in x for x in r)]
    if not phases:
        return None
    rows = []
    p = plt()
    fig, (ax_loss, ax_lr) = p.subplots(2, 1, figsize=(8, 6), sharex=True)
    offset = 0
    for name, metrics in phases:
        train = [r for r in metrics if r.get("split") == "train" and "loss" in r]
        valid = [r for r in metrics if r.get("split") == "valid" and "loss" in r]
        last_it = max(r["iteration"] for r in train)
        rows.append([name, str(last_it), f"{train[0]['loss']:.3f}", f"{train[-1]['loss']:.3f}",
                     f"{valid[-1]['loss']:.3f}" if valid else "-"])
        line, = ax_loss.plot([offset + r["iteration"] for r in train], [r["loss"] for r in train],
                             label=f"{name} train")
        if valid:
            ax_loss.plot([offset + r["iteration"] for r in valid], [r["loss"] for r in valid], "o--",
                         color=line.get_color(), label=f"{name} validation")
        ax_lr.plot([offset + r["iteration"] for r in train if "lr" in r], [r["lr"] for r in train if "lr" in r],
                   color=line.get_color(), label=name)
        ax_loss.axvline(offset, color="grey", lw=0.5)
        offset += last_it
    ax_loss.set_ylabel("loss")
    ax_loss.legend(fontsize=7)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("iteration (phases one after another)")
    ax_loss.set_title("Loss and learning rate per phase")
    return Section("training", "Training", [
        Table(["phase", "iterations", "first train loss", "last train loss", "last validation loss"], rows),
        figure(fig, "training.png", "loss and learning rate per phase")])


def eval_section(run: Run) -> Section | None:
    """``evaluate``'s results.json: our row beside the paper's rows it carries (evaluate/paper.py)."""
    results = [(p, load(p)) for p in run.rglob("results.json")]
    results = [(p, r) for p, r in results if isinstance(r, dict) and isinstance(r.get("table"), dict)]
    if not results:
        return None
    blocks: list = []
    for p, r in results:
        table = r["table"]
        cols = table.get("columns") or list(table.get("ours", {}))
        model = r.get("model") or {}
        subset = (r.get("settings") or {}).get("subset")
        source = table.get("paper_source") or "the paper's main results table"
        blocks.append(Text(f"{run.rel(p)}: model {model.get('name', '?')}; paper rows from {source}"
                           + (f"; {subset}: not comparable with the paper's numbers" if subset else "")))

        def cells(row: dict, cols=cols) -> list[str]:
            return [f"{row[c]:.1f}" if isinstance(row.get(c), (int, float)) else "-" for c in cols]

        rows = [[f"{model.get('name', 'this run')} (this run)"] + cells(table.get("ours", {}))]
        from megatron_snow.evaluate.paper import PAPER_TABLE, TABLE, paper_cell

        def paper_cells(name: str, row: dict, cols=cols) -> list[str]:
            return [paper_cell(name, c, row[c]) if isinstance(row.get(c), (int, float)) and name in PAPER_TABLE
                    else f"{row[c]:.1f}" if isinstance(row.get(c), (int, float)) else "-" for c in cols]

        rows += [[f"{name} (paper, {TABLE})"] + paper_cells(name, paper)
                 for name, paper in (table.get("paper") or {}).items() if "Arctic-SnowCoder" in name]
        blocks.append(Table(["model"] + list(cols), rows))
    return Section("evaluation", "Evaluation (greedy pass@1, %)", blocks)


def ablation_section(run: Run) -> Section | None:
    blocks: list = []
    for p in run.rglob("ablation.json", ablations=True):
        a = load(p)
        if not isinstance(a, dict) or "summary" not in a:
            continue
        title = {"grouping": "grouping of files into documents (from scratch, same tokens)"}.get(
            a.get("kind"), "data selection (same tokens, same schedule)")
        blocks.append(Heading(title.capitalize()))
        rows = [[held, arm, f"{s['mean']:.4f}", f"{s['std']:.4f}", ", ".join(f"{x:.4f}" for x in s["values"])]
                for held, arms in a["summary"].items() for arm, s in arms.items()]
        blocks += [Text(a.get("description", "")),
                   Table(["held-out set", "arm", "mean loss", "std", "per seed"], rows)]
        if a.get("conclusion"):
            blocks.append(Text(a["conclusion"]))
    if not blocks:
        return None
    return Section("ablation", "Ablations (the paper's Tables 3, 4 and 6, at tiny scale)", blocks)


BUILDERS = (funnel_section, examples_section, tokens_section, annotator_section, synthesis_section,
            training_section, eval_section, ablation_section)


def build_sections(root: Path, example_budget: int = EXAMPLE_CHARS_BUDGET) -> list[Section]:
    run = Run(root, example_budget)
    return [s for s in (b(run) for b in BUILDERS) if s is not None]

