"""The paper's ablations, as commands: which data selection (Tables 4 and 6) and which grouping (Table 3).

``python -m megatron_snow ablation --config examples/tiny/ablation.yaml [key=value ...]``
``python -m megatron_snow ablation --config examples/tiny/ablation_grouping.yaml``

``kind=selection``: from one phase-1 checkpoint, continued pretraining per arm
and seed, with the same schedule and the same number of training tokens:
  ``none``          the starting checkpoint itself (the paper's "none (alpha)" row, Table 4);
  ``random``        the selection code driven by a random annotator (a seeded uniform
                    score per document): ``budget_tokens`` in the per-language mix,
                    repeated ``repetition`` times (Table 4's "random" row);
  ``annotator``     the annotator's top documents per language, the same budget and
                    repetitions: only *which* documents differ from ``random`` (Table 4,
                    the annotator rows);
  ``annotator_1x``  the annotator's top ``budget_tokens x repetition`` tokens seen once:
                    the same training tokens with no repetition (Table 6, "1 x 50B"
                    against "4 x 12.5B").
``kind=grouping``: from scratch, the same corpus files grouped two ways (Table 3):
``language_repo`` (the recipe: by language, then repository) and ``repo``
(repository only, languages mixed), ``train_iters`` iterations per seed; a
fixed share of files (``heldout_fraction``, by a hash of their id) is kept out
of both arms' training.

Each run is scored by its held-out loss (mean next-token cross-entropy) on
texts no run trained on: the canonical solutions of HumanEval+ and MBPP+
(prompt + solution) and corpus documents (selection: documents no arm selected
for any seed; grouping: the held-out files). Result, with every seed's number:
``OUT/ablation.json`` (also read by ``python -m megatron_snow report``); ``render_tables``
turns it into docs/ablation.md's tables.

Reproducible: training runs with ``OMP_NUM_THREADS=1`` (recorded), the held-out
loss on a fixed number of threads, and every step underneath is seeded; each part
resumes (selections, indexes, checkpoints and HF conversions that exist are reused).
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import xxhash

from megatron_snow import records
from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.config import Config, ConfigError, load_config, setting

REPO = Path(__file__).resolve().parents[1]
SELECTION_ARMS = ("none", "random", "annotator", "annotator_1x")
GROUPING_ARMS = ("language_repo", "repo")
# what each arm stands for in the paper (shown in the doc's tables)
PAPER_ARM = {
    "none": "Table 4, none (alpha)", "random": "Table 4, random", "annotator": "Table 4, ANN-* rows (4 x)",
    "annotator_1x": "Table 6, 1 x 50B", "language_repo": "Table 3, language then repository",
    "repo": "Table 3, repository only",
}
SET_TITLES = {"humanevalplus": "HumanEval+ solutions", "mbppplus": "MBPP+ solutions",
              "corpus_heldout": "unseen corpus documents"}


@dataclass
class AblationConfig(Config):
    kind: Literal["selection", "grouping"] = setting("selection", help="which ablation: data selection or grouping")
    corpus: str = setting(
        "", help="selection: the scored phase-1 records (annotate's scores in CORPUS/scores); grouping: files")
    tokenizer: str = setting("", help="the project's SentencePiece model")
    train_config: str = setting(
        "", help="YAML of the training runs (selection: phase-2 style; grouping: phase-1 style)")
    load_from: str = setting(
        "", help="selection: the phase-1 checkpoint every arm starts from (grouping: from scratch)")
    out: str = setting("", help="everything of the ablation goes here")
    arms: list[str] = setting(help="default: every arm of the kind", factory=list)
    budget_tokens: int = setting(
        200_000, help="selection: unique tokens per arm (paper: 10B in Table 4, 12.5B in Table 6)", range=">= 1")
    repetition: int = setting(4, help="selection: epochs over the selection (paper: 4)", range=">= 1")
    train_iters: int = setting(100, help="grouping: iterations of every run", range=">= 1")
    heldout_fraction: float = setting(
        0.1, help="grouping: share of files (by id hash) no arm trains on", range="(0, 1)")
    seeds: list[int] = setting(help="training seed; the random arm's selection seed too", factory=lambda: [1, 2, 3])
    nproc: int = setting(2, help="training processes (torchrun)", range=">= 1")
    threads: int = setting(
        1, help="CPU threads of every step (training via OMP_NUM_THREADS): fixed, so results are the same bytes",
        range=">= 1")
    heldout_docs: int = setting(
        40, help="selection: corpus documents selected by no arm, used as held-out set", range=">= 0")
    benchmarks: list[str] = setting(help="held-out solutions", factory=lambda: ["humanevalplus", "mbppplus"])
    benchmarks_dir: str = setting("", help="default: megatron_snow.benchmarks resolution")
    overrides: list[str] = setting(help="extra key=value for every training run", factory=list)

    def validate(self) -> None:
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: must be distinct and at least one, got {self.seeds}")
        known = SELECTION_ARMS if self.kind == "selection" else GROUPING_ARMS
        if not self.arms:
            self.arms = list(known)
        bad = [a for a in self.arms if a not in known]
        if bad or len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"arms: {self.kind} arms are {', '.join(known)} (each once), got {self.arms}")


def _run(cmd: list[str], log, threads: int = 1) -> None:
    log("$ " + " ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True, env=env)
    if proc.returncode != 0:
        # torchrun wraps a one-line error in pages of its own log lines: keep the child's lines
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                 if ln.strip() and not re.match(r"^[WEI]\d{4} |^\s|^Traceback|^=+$|^-+$|torch.distributed", ln)]
        tail = "\n".join(lines[-12:])
        raise RuntimeError(f"ablation: step failed ({proc.returncode}): {' '.join(cmd[:4])} ...\n{tail}")


def random_scores(scores_dir: Path, out: Path, seed: int) -> Path:
    """A copy of annotate's scores where every document's score is a seeded uniform number.

    Same rows, ids, languages and order, so the selection code runs unchanged and
    keeps the language mix and the token budget; only the ranking is random.
    """
    done = out / records.MANIFEST
    if done.is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for shard in records.list_shards(scores_dir):
        with gzip.open(shard, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        with gzip.open(tmp / shard.name, "wt", encoding="utf-8") as f:
            for j, row in enumerate(rows):
                h = xxhash.xxh64_intdigest(f"{seed}\0{shard.name}\0{j}\0{row.get('id')}".encode())
                row["score"] = h / 2.0**64
                row["window_scores"] = [row["score"]]
                f.write(json.dumps(row) + "\n")
    manifest = json.loads((scores_dir / records.MANIFEST).read_text())
    manifest.update({"model": f"random(seed={seed})", "kind": "random-scores"})
    for name in os.listdir(scores_dir):  # funnel etc. (the manifest last)
        if name != records.MANIFEST and (scores_dir / name).is_file() and not (tmp / name).exists():
            shutil.copyfile(scores_dir / name, tmp / name)
    (tmp / records.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def _selected_ids(selection_dir: Path) -> set[str]:
    ids = set()
    for shard in records.list_shards(selection_dir):
        for rec in records.read_shard(shard):
            ids.add(rec.meta.get("source_id", rec.id) if rec.meta else rec.id)
            ids.add(rec.id)
    return ids


def benchmark_sets(cfg: AblationConfig) -> dict[str, list[str]]:
    sets: dict[str, list[str]] = {}
    for stem in cfg.benchmarks:
        path = benchmark_path(cfg.benchmarks_dir or None, stem)
        if path is None:
            raise FileNotFoundError(f"ablation: benchmark {stem!r} not found")
        sets[stem] = [r["prompt"].rstrip("\n") + "\n" + r["canonical_solution"] for r in read_benchmark(path)]
    return sets


def heldout_sets(cfg: AblationConfig, selections: list[Path]) -> dict[str, list[str]]:
    """Texts no arm trained on: benchmark solutions, and corpus documents outside every selection."""
    sets = benchmark_sets(cfg)
    used: set[str] = set()
    for s in selections:
        used |= _selected_ids(s)
    docs = []
    for shard in records.list_shards(cfg.corpus):
        for rec in records.read_shard(shard):
            if rec.id not in used:
                docs.append((xxhash.xxh64_intdigest(rec.id.encode()), rec.content))
    docs.sort()
    sets["corpus_heldout"] = [c for _, c in docs[: cfg.heldout_docs]]
    if not sets["corpus_heldout"]:
        del sets["corpus_heldout"]
    return sets


def heldout_loss(hf_dir: Path, tokenizer_path: str, texts: list[str], seq_length: int, batch_size: int = 16,
                 threads: int = 1) -> float:
    """Mean next-token cross-entropy over all tokens of ``texts`` (each cut into windows of ``seq_length``).

    Windows are sorted by length and run in padded batches (padding is ignored by the loss), so
    the number is the same as one window at a time, only faster. ``threads`` is fixed so that the
    sums are done in the same order on every machine.
    """
    import sentencepiece as spm
    import torch
    from transformers import AutoModelForCausalLM

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sp = spm.SentencePieceProcessor(model_file=tokenizer_path)
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        windows = []
        for text in texts:
            ids = sp.encode(text)
            for start in range(0, max(len(ids) - 1, 0), seq_length):
                window = ids[start: start + seq_length + 1]
                if len(window) >= 2:
                    windows.append(window)
        windows.sort(key=len)
        total, count = 0.0, 0
        with torch.no_grad():
            for b in range(0, len(windows), batch_size):
                batch = windows[b: b + batch_size]
                width = max(len(w) for w in batch)
                x = torch.zeros(len(batch), width, dtype=torch.long)
                target = torch.full((len(batch), width - 1), -100, dtype=torch.long)
                for i, w in enumerate(batch):
                    x[i, : len(w)] = torch.tensor(w)
                    target[i, : len(w) - 1] = torch.tensor(w[1:])
                # causal attention: padding at the end never influences the real positions before it
                logits = model(x[:, :-1]).logits.float()
                loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                         ignore_index=-100, reduction="sum")
                total += float(loss)
                count += int((target != -100).sum())
    finally:
        torch.set_num_threads(before)
    return total / max(count, 1)


def cached_heldout_loss(hf_dir: Path, tokenizer_path: str, name: str, texts: list[str], seq_length: int,
                        threads: int = 1) -> float:
    """``heldout_loss`` remembered beside the model, keyed by the texts' hash (re-runs with more seeds reuse it)."""
    key = xxhash.xxh64_hexdigest("\0".join(texts).encode() + f"\0{seq_length}\0{threads}".encode())
    cache = Path(hf_dir) / "heldout_loss.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if f"{name}:{key}" not in known:
        known[f"{name}:{key}"] = heldout_loss(hf_dir, tokenizer_path, texts, seq_length, threads=threads)
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, cache)
    return known[f"{name}:{key}"]


def _train_settings(cfg: AblationConfig) -> dict:
    from megatron_snow.training.config import TrainConfig

    tc = load_config(TrainConfig, cfg.train_config, cfg.overrides)
    return {"seq_length": tc.data.seq_length, "global_batch_size": tc.training.global_batch_size}


def _train_and_convert(cfg: AblationConfig, index: Path, run_dir: Path, seed: int, iters: int, log,
                       load_from: str | None) -> Path:
    """One training run on ``index`` (resumable: an existing HF model is reused); returns its HF directory."""
    out = Path(cfg.out)
    ckpt, hf = run_dir / "checkpoint", run_dir / "hf"
    if not (hf / "config.json").is_file():
        start = [f"checkpoint.load_from={load_from}"] if load_from else []
        _run(["torchrun", "--standalone", "--nproc-per-node", str(cfg.nproc), "pretrain_gpt.py",
              "--config", cfg.train_config, *cfg.overrides,
              f"data.blend=[[1.0,{index}]]", "data.blend_file=null", "data.split=100,0,0",
              f"data.tokenizer_path={cfg.tokenizer}", f"data.index_cache_dir={out / 'index_cache'}",
              f"training.seed={seed}", f"training.train_iters={iters}", "training.eval_interval=0",
              *start, f"checkpoint.save={ckpt}",
              f"checkpoint.save_interval={iters}", f"logging.metrics_file={ckpt}/metrics.jsonl",
              "logging.tensorboard_dir=null"], log, cfg.threads)
        _convert(cfg, ckpt, hf, log)
    return hf


def _convert(cfg: AblationConfig, ckpt: Path, hf: Path, log) -> None:
    partial = hf.with_name(hf.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    _run([sys.executable, "-m", "megatron_snow", "convert-to-hf", "--load", str(ckpt), "--save", str(partial),
          "--tokenizer", cfg.tokenizer, "--no-progress"], log, cfg.threads)
    shutil.rmtree(hf, ignore_errors=True)
    os.replace(partial, hf)


def _build_index(cfg: AblationConfig, data: Path, prefix: Path, log) -> None:
    if not Path(str(prefix) + ".idx").is_file():
        _run([sys.executable, "-m", "megatron_snow", "build-index", "--input", str(data), "--tokenizer",
              cfg.tokenizer, "--output-prefix", str(prefix), "--workers", "1"], log, cfg.threads)


def _select(cfg: AblationConfig, scores: Path, sel: Path, budget: int, repetition: int, log) -> None:
    if not (sel / records.MANIFEST).is_file():
        _run([sys.executable, "-m", "megatron_snow", "select", f"corpus={cfg.corpus}", f"scores={scores}",
              f"tokenizer={cfg.tokenizer}", f"out={sel}", f"budget_tokens={budget}",
              f"repetition={repetition}"], log, cfg.threads)
    _build_index(cfg, sel, sel.parent / "index", log)


def _summary(losses: dict[str, dict[str, list[float]]]) -> dict:
    return {name: {arm: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                         "values": v} for arm, v in arms.items()} for name, arms in losses.items()}


def _evaluate(cfg: AblationConfig, runs: list[tuple[str, int | None, Path]], sets: dict[str, list[str]],
              seq_length: int, log) -> dict:
    losses: dict[str, dict[str, list[float]]] = {name: {arm: [] for arm in cfg.arms} for name in sets}
    for arm, seed, hf in runs:
        for name, texts in sets.items():
            loss = cached_heldout_loss(hf, cfg.tokenizer, name, texts, seq_length, cfg.threads)
            losses[name][arm].append(loss)
            log(f"  {arm:<13} seed {seed}  {name:<16} loss {loss:.4f}")
    return _summary(losses)


def run_selection(cfg: AblationConfig, log=print) -> dict:
    for key in ("corpus", "tokenizer", "train_config", "load_from", "out"):
        if not getattr(cfg, key):
            raise ConfigError(f"ablation kind=selection needs {key}=...")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = _train_settings(cfg)
    tokens_per_iter = ts["seq_length"] * ts["global_batch_size"]
    iters = max(1, math.ceil(cfg.budget_tokens * cfg.repetition / tokens_per_iter))
    scores = Path(cfg.corpus) / "scores"
    selections, runs = [], []
    for arm in cfg.arms:
        if arm == "none":  # the starting point, evaluated once: no seed enters it
            hf = out / "none" / "hf"
            if not (hf / "config.json").is_file():
                _convert(cfg, Path(cfg.load_from), hf, log)
            runs.append((arm, None, hf))
            continue
        for seed in cfg.seeds:
            if arm == "random":
                arm_dir = out / "random" / f"selection_seed{seed}"
                _select(cfg, random_scores(scores, arm_dir / "scores", seed), arm_dir / "data", cfg.budget_tokens,
                        cfg.repetition, log)
            else:  # the annotator's selection does not depend on the seed
                arm_dir = out / arm
                once = arm == "annotator_1x"
                _select(cfg, scores, arm_dir / "data", cfg.budget_tokens * (cfg.repetition if once else 1),
                        1 if once else cfg.repetition, log)
            if arm_dir / "data" not in selections:
                selections.append(arm_dir / "data")
            hf = _train_and_convert(cfg, arm_dir / "index", out / arm / f"seed{seed}", seed, iters, log, cfg.load_from)
            runs.append((arm, seed, hf))
    sets = heldout_sets(cfg, selections)
    summary = _evaluate(cfg, runs, sets, ts["seq_length"], log)
    best = {name: min((a for a in arms if arms[a]["values"]), key=lambda a: arms[a]["mean"])
            for name, arms in summary.items()}
    return {
        "kind": "selection",
        "description": (f"From {cfg.load_from}: {iters} iterations of {tokens_per_iter} tokens per trained run "
                        f"({cfg.budget_tokens} unique tokens x {cfg.repetition}; annotator_1x: "
                        f"{cfg.budget_tokens * cfg.repetition} unique tokens x 1); seeds {cfg.seeds}; "
                        f"held-out sets: {', '.join(f'{k} ({len(v)} texts)' for k, v in sets.items())}."),
        "iterations": iters, "tokens_per_run": iters * tokens_per_iter,
        "heldout_texts": {k: len(v) for k, v in sets.items()},
        "summary": summary,
        "conclusion": "Lowest mean held-out loss: " + "; ".join(f"{SET_TITLES.get(k, k)}: {v}" for k, v in best.items())
                      + ".",
    }


def grouped_dataset(corpus: Path, out: Path, by: str, heldout_fraction: float) -> tuple[Path, list[str]]:
    """The corpus's files (minus the held-out share) grouped ``by``; returns (dataset, held-out file texts)."""
    from megatron_snow.phase1.grouping import GroupingConfig, build_documents

    cut = int(heldout_fraction * 2**64)
    train, heldout = [], []
    for rec in records.iter_records(corpus):
        (heldout if xxhash.xxh64_intdigest(rec.id.encode()) < cut else train).append(rec)
    heldout.sort(key=lambda r: r.id)
    if not (out / records.MANIFEST).is_file():
        docs = build_documents(train, GroupingConfig(by=by))
        entry = records.write_shard(out / records.shard_name(0), docs)
        records.write_manifest(out, [entry], kind="grouped", grouping=by, files=len(train))
    return out, [r.content for r in heldout]


def run_grouping(cfg: AblationConfig, log=print) -> dict:
    for key in ("corpus", "tokenizer", "train_config", "out"):
        if not getattr(cfg, key):
            raise ConfigError(f"ablation kind=grouping needs {key}=...")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = _train_settings(cfg)
    runs, documents, heldout = [], {}, []
    for arm in cfg.arms:
        data, heldout = grouped_dataset(Path(cfg.corpus), out / arm / "data", arm, cfg.heldout_fraction)
        documents[arm] = records.read_manifest(data)["records"]
        _build_index(cfg, data, out / arm / "index", log)
        for seed in cfg.seeds:
            runs.append((arm, seed, _train_and_convert(cfg, out / arm / "index", out / arm / f"seed{seed}", seed,
                                                       cfg.train_iters, log, None)))
    sets = benchmark_sets(cfg)
    sets["corpus_heldout"] = heldout
    summary = _evaluate(cfg, runs, sets, ts["seq_length"], log)
    best = {name: min(arms, key=lambda a: arms[a]["mean"]) for name, arms in summary.items()}
    tokens_per_iter = ts["seq_length"] * ts["global_batch_size"]
    return {
        "kind": "grouping",
        "description": (f"From scratch: {cfg.train_iters} iterations of {tokens_per_iter} tokens per run; "
                        f"documents per arm {documents}; seeds {cfg.seeds}; held-out sets: "
                        f"{', '.join(f'{k} ({len(v)} texts)' for k, v in sets.items())}."),
        "iterations": cfg.train_iters, "tokens_per_run": cfg.train_iters * tokens_per_iter,
        "documents": documents, "heldout_texts": {k: len(v) for k, v in sets.items()},
        "summary": summary,
        "conclusion": "Lowest mean held-out loss: " + "; ".join(f"{SET_TITLES.get(k, k)}: {v}" for k, v in best.items())
                      + ".",
    }


def run_ablation(cfg: AblationConfig, log=print) -> dict:
    result = run_selection(cfg, log) if cfg.kind == "selection" else run_grouping(cfg, log)
    result["config"] = {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}
    result["environment"] = {"OMP_NUM_THREADS": cfg.threads, "heldout_loss_threads": cfg.threads}
    path = Path(cfg.out) / "ablation.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return result


PAIRS = {"selection": [("annotator", "random"), ("annotator", "annotator_1x")], "grouping": [("language_repo", "repo")]}


def render_tables(result: dict) -> str:
    """docs/ablation.md's text for one result JSON: what ran, the loss table, the per-seed comparisons.

    A test rebuilds the doc's tables from the committed JSON with this, so the numbers shown are the
    numbers measured.
    """
    summary = result["summary"]
    arms = list(result["config"]["arms"])
    lines = [result["description"], "",
             "Mean held-out loss (lower is better; in brackets: std over seeds; the value per seed "
             f"{', '.join(str(s) for s in result['config']['seeds'])}). Bold: the lowest mean.", "",
             "| held-out set | " + " | ".join(f"{a} ({PAPER_ARM[a]})" for a in arms) + " |",
             "|---|" + "---|" * len(arms)]
    for name, by_arm in summary.items():
        best = min((a for a in arms if by_arm[a]["values"]), key=lambda a: by_arm[a]["mean"])
        cells = []
        for a in arms:
            v = by_arm[a]
            cell = f"{v['mean']:.3f}"
            cell = f"**{cell}**" if a == best else cell
            if len(v["values"]) > 1:
                cell += f" ({v['std']:.3f}; " + ", ".join(f"{x:.3f}" for x in v["values"]) + ")"
            cells.append(cell)
        lines.append(f"| {SET_TITLES.get(name, name)} | " + " | ".join(cells) + " |")
    lines.append("")
    for a, b in PAIRS[result["kind"]]:
        if a not in arms or b not in arms:
            continue
        parts = []
        for name, by_arm in summary.items():
            va, vb = by_arm[a]["values"], by_arm[b]["values"]
            wins = sum(x < y for x, y in zip(va, vb))
            parts.append(f"{SET_TITLES.get(name, name)} {wins} of {len(va)}")
        lines.append(f"- `{a}` below `{b}`, seed by seed: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def cli_run(cfg: AblationConfig, args, comm) -> None:
    """The ``ablation`` command."""
    result = run_ablation(cfg)
    print(result["conclusion"])
    print(f"wrote {Path(cfg.out) / 'ablation.json'}")


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow ablation``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["ablation"].main(argv)


if __name__ == "__main__":
    sys.exit(main())
