"""How well an annotator's notion of quality matches downstream tasks (the paper's Fig. 2).

For each benchmark: positives are its canonical solutions, negatives are
random corpus documents the annotator never saw in training (the ids in the
annotator's ``negative_ids.txt`` are excluded); the annotator scores both the
same way as annotate does (top/middle/bottom windows) and the ROC-AUC says
how often a benchmark solution outscores a random document. The paper found
this ROC-AUC to track pass@1 of models trained on each annotator's selection.

Benchmark text of a solution (fields differ per benchmark, see
shared/benchmarks/README.md): ``complete_prompt + canonical_solution``
(BigCodeBench), ``prompt + canonical_solution`` (HumanEval(+), MBPP+,
EvoEval: the prompt holds the signature and docstring the solution's body
completes), ``code`` (MBPP). Benchmarks are read for evaluation only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from megatron_snow.config import ConfigError, setting
from megatron_snow.benchmarks import benchmark_path, read_benchmark, resolve_benchmarks_dir
from megatron_snow.phase2.metrics import roc_auc, roc_points
from megatron_snow.phase2.scoring import Scorer, ScorerSettings
from megatron_snow.phase2.training_data import sample_corpus

DEFAULT_BENCHMARKS = ["humaneval", "humanevalplus", "mbpp", "mbppplus", "bigcodebench", "evoeval_difficult",
                      "evoeval_creative", "evoeval_subtle", "evoeval_combine", "evoeval_tool_use"]


@dataclass
class AlignmentConfig(ScorerSettings):
    """Settings of ``tools/preprocess/alignment.py``."""

    corpus: str = setting("", help="the phase-1 records dataset (negatives)")
    benchmarks_dir: str = setting(
        "", help="directory of <name>.jsonl.gz benchmark files; \"\": megatron_snow.benchmarks default")
    benchmarks: list[str] = setting(help="benchmark file stems whose items are the positives",
                                    factory=lambda: list(DEFAULT_BENCHMARKS))
    negatives: int = setting(
        1000, help="held-out random corpus documents (shared by all benchmarks)", range=">= 1")
    max_positives: int = setting(0, help="per benchmark (0: all)", range=">= 0")
    seed: int = setting(1234, help="seed of the negatives' sample")
    out: str = setting("", help="JSON report path (optional)")


def solution_text(record: dict) -> str:
    """The solution of a benchmark record as a code text (the module docstring gives the rule)."""
    sol = record.get("canonical_solution")
    if isinstance(sol, str):
        if isinstance(record.get("complete_prompt"), str):
            return record["complete_prompt"] + sol
        if isinstance(record.get("prompt"), str):
            return record["prompt"] + sol
        return sol
    if isinstance(record.get("code"), str):
        return record["code"]
    raise ValueError(f"benchmark record {record.get('task_id')!r} has no canonical_solution or code field")


def load_solutions(benchmarks_dir: str | Path, name: str, limit: int = 0) -> list[str]:
    path = benchmark_path(benchmarks_dir, name)
    if path is None:
        raise FileNotFoundError(f"benchmark {name!r} not found in {resolve_benchmarks_dir(benchmarks_dir)}")
    texts = [solution_text(r) for r in read_benchmark(path)]
    return texts[:limit] if limit else texts


def read_training_negatives(model_dir: str | Path) -> set[str]:
    p = Path(model_dir) / "negative_ids.txt"
    return set(p.read_text().split("\n")) - {""} if p.is_file() else set()


def alignment(cfg: AlignmentConfig, log=print, scorer: Scorer | None = None) -> dict:
    """ROC-AUC per benchmark: benchmark solutions vs held-out random corpus documents."""
    for key in ("model", "corpus"):
        if not getattr(cfg, key):
            raise ConfigError(f"alignment needs {key}=...")
    scorer = scorer or cfg.scorer()
    seen = read_training_negatives(cfg.model)
    negs = sample_corpus(cfg.corpus, cfg.negatives, cfg.seed, exclude=seen)
    neg_scores = [s.score for s in scorer.score_texts([r.content for r in negs])]
    neg_scores = [s for s in neg_scores if s is not None]
    log(f"[alignment] {len(neg_scores)} held-out corpus documents ({len(seen)} training negatives excluded), "
        f"mean score {sum(neg_scores) / max(1, len(neg_scores)):.4f}")
    results = {}
    for name in cfg.benchmarks:
        texts = load_solutions(cfg.benchmarks_dir, name, cfg.max_positives)
        pos_scores = [s.score for s in scorer.score_texts(texts) if s.score is not None]
        auc = roc_auc([1] * len(pos_scores) + [0] * len(neg_scores), pos_scores + neg_scores)
        results[name] = {"roc_auc": auc, "positives": len(pos_scores), "negatives": len(neg_scores),
                         "mean_positive_score": sum(pos_scores) / len(pos_scores),
                         "roc": roc_points(pos_scores, neg_scores)}
        log(f"[alignment] {name:20s} ROC-AUC {auc:.4f}  ({len(pos_scores)} solutions, mean score "
            f"{results[name]['mean_positive_score']:.4f})")
    report = {"model": cfg.model, "corpus": cfg.corpus, "negatives": len(neg_scores),
              "excluded_training_negatives": len(seen), "benchmarks": results}
    if cfg.out:
        Path(cfg.out).parent.mkdir(parents=True, exist_ok=True)
        Path(cfg.out).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


USAGE = """example:
  python -m megatron_snow alignment model=models/annotator corpus=data/phase1 out=alignment.json"""


def cli_run(cfg, args, comm) -> None:
    """The ``alignment`` command."""
    if comm.is_root:
        alignment(cfg)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow alignment`` / ``tools/preprocess/alignment.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["alignment"].main(argv)
