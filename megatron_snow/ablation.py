"""The paper's central ablation: annotator-selected, repeated data against random data of the same size.

``python -m megatron_snow ablation --config examples/tiny/ablation.yaml [key=value ...]``

From one phase-1 checkpoint, continued pretraining runs twice per seed with the
same schedule and the same number of tokens:
  (a) ``annotator``: the top-scored documents per language up to ``budget_tokens``
      (the phase-2 selection), repeated ``repetition`` times;
  (b) ``random``: the same selection code driven by a random annotator (a seeded
      uniform score per document), so the token budget, the per-language mix and
      the repetitions are identical and only *which* documents differs.
Each run is then scored by its loss (mean next-token cross-entropy) on held-out
sets no run trained on: the canonical solutions of HumanEval+ and MBPP+
(prompt + solution, tokenized as documents) and corpus documents that neither
arm selected for any seed. The result, with every seed's number and the spread,
goes to ``OUT/ablation.json`` and into ``python -m megatron_snow report``.

Each part is resumable: selections, indexes, checkpoints and HF conversions that
exist are reused (every step underneath resumes or refuses stale output).
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
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from megatron_snow import records
from megatron_snow.benchmarks import benchmark_path, read_benchmark
from megatron_snow.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]


@dataclass
class AblationConfig:
    corpus: str = ""  # the scored phase-1 records dataset (annotate's scores in CORPUS/scores)
    tokenizer: str = ""  # the project's SentencePiece model
    train_config: str = ""  # YAML of the continued pretraining (phase-2 style: re-warm-up, linear to 0)
    load_from: str = ""  # the phase-1 checkpoint both arms start from
    out: str = ""  # everything of the ablation goes here
    budget_tokens: int = 200_000  # unique tokens per arm (paper: 12.5B at 10B-token ablation scale)
    repetition: int = 4  # epochs over the selection (paper: 4)
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3])  # training seed; the random arm's selection seed too
    nproc: int = 2  # training processes (torchrun)
    heldout_docs: int = 40  # corpus documents selected by no arm, used as held-out set
    benchmarks: list[str] = field(default_factory=lambda: ["humanevalplus", "mbppplus"])  # held-out solutions
    benchmarks_dir: str = ""  # default: megatron_snow.benchmarks resolution
    overrides: list[str] = field(default_factory=list)  # extra key=value for every training run

    def __post_init__(self):
        if self.budget_tokens <= 0:
            raise ConfigError(f"budget_tokens: must be > 0, got {self.budget_tokens}")
        if self.repetition < 1:
            raise ConfigError(f"repetition: must be >= 1, got {self.repetition}")
        if len(self.seeds) < 1 or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds: must be distinct and at least one, got {self.seeds}")
        if self.nproc < 1 or self.heldout_docs < 0:
            raise ConfigError("nproc must be >= 1 and heldout_docs >= 0")


def _run(cmd: list[str], log) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=REPO, text=True, capture_output=True)
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


def heldout_sets(cfg: AblationConfig, selections: list[Path]) -> dict[str, list[str]]:
    """Texts no arm trained on: benchmark solutions, and corpus documents outside every selection."""
    sets: dict[str, list[str]] = {}
    for stem in cfg.benchmarks:
        path = benchmark_path(cfg.benchmarks_dir or None, stem)
        if path is None:
            raise FileNotFoundError(f"ablation: benchmark {stem!r} not found")
        sets[stem] = [r["prompt"].rstrip("\n") + "\n" + r["canonical_solution"] for r in read_benchmark(path)]
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


def heldout_loss(hf_dir: Path, tokenizer_path: str, texts: list[str], seq_length: int, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over all tokens of ``texts`` (each cut into windows of ``seq_length``).

    Windows are sorted by length and run in padded batches (padding is ignored by the loss), so
    the number is the same as one window at a time, only faster.
    """
    import sentencepiece as spm
    import torch
    from transformers import AutoModelForCausalLM

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
    return total / max(count, 1)


def cached_heldout_loss(hf_dir: Path, tokenizer_path: str, name: str, texts: list[str], seq_length: int) -> float:
    """``heldout_loss`` remembered beside the model, keyed by the texts' hash (re-runs with more seeds reuse it)."""
    key = xxhash.xxh64_hexdigest("\0".join(texts).encode() + f"\0{seq_length}".encode())
    cache = Path(hf_dir) / "heldout_loss.json"
    known = json.loads(cache.read_text()) if cache.is_file() else {}
    if f"{name}:{key}" not in known:
        known[f"{name}:{key}"] = heldout_loss(hf_dir, tokenizer_path, texts, seq_length)
        tmp = cache.with_name(cache.name + ".tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, cache)
    return known[f"{name}:{key}"]


def _train_settings(cfg: AblationConfig) -> dict:
    from megatron_snow.training.config import TrainConfig

    tc = load_config(TrainConfig, cfg.train_config, cfg.overrides)
    return {"seq_length": tc.data.seq_length, "global_batch_size": tc.training.global_batch_size}


def run_ablation(cfg: AblationConfig, log=print) -> dict:
    for key in ("corpus", "tokenizer", "train_config", "load_from", "out"):
        if not getattr(cfg, key):
            raise ConfigError(f"ablation needs {key}=...")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ts = _train_settings(cfg)
    tokens_per_iter = ts["seq_length"] * ts["global_batch_size"]
    iters = max(1, math.ceil(cfg.budget_tokens * cfg.repetition / tokens_per_iter))
    scores = Path(cfg.corpus) / "scores"
    py = sys.executable
    selections, runs = [], []
    for seed in cfg.seeds:
        for arm in ("annotator", "random"):
            if arm == "annotator" and seed != cfg.seeds[0]:
                sel = out / "annotator" / "data"  # the annotator's selection does not depend on the seed
            else:
                arm_dir = out / arm if arm == "annotator" else out / arm / f"selection_seed{seed}"
                sel = arm_dir / "data"
                arm_scores = scores if arm == "annotator" else random_scores(scores, arm_dir / "scores", seed)
                if not (sel / records.MANIFEST).is_file():
                    _run([py, "-m", "megatron_snow", "select", f"corpus={cfg.corpus}", f"scores={arm_scores}",
                          f"tokenizer={cfg.tokenizer}", f"out={sel}", f"budget_tokens={cfg.budget_tokens}",
                          f"repetition={cfg.repetition}"], log)
                    _run([py, "-m", "megatron_snow", "build-index", "--input", str(sel), "--tokenizer",
                          cfg.tokenizer, "--output-prefix", str(sel.parent / "index"), "--workers", "1"], log)
                selections.append(sel)
            ckpt = out / arm / f"seed{seed}" / "checkpoint"
            hf = out / arm / f"seed{seed}" / "hf"
            if not (hf / "config.json").is_file():
                _run(["torchrun", "--standalone", "--nproc-per-node", str(cfg.nproc), "pretrain_gpt.py",
                      "--config", cfg.train_config, *cfg.overrides,
                      f"data.blend=[[1.0,{sel.parent / 'index'}]]", "data.blend_file=null", "data.split=100,0,0",
                      f"data.tokenizer_path={cfg.tokenizer}", f"data.index_cache_dir={out / 'index_cache'}",
                      f"training.seed={seed}", f"training.train_iters={iters}",
                      f"checkpoint.load_from={cfg.load_from}", f"checkpoint.save={ckpt}",
                      f"checkpoint.save_interval={iters}", f"logging.metrics_file={ckpt}/metrics.jsonl",
                      "logging.tensorboard_dir=null"], log)
                _run([py, "-m", "megatron_snow", "convert-to-hf", "--load", str(ckpt), "--save", str(hf),
                      "--tokenizer", cfg.tokenizer], log)
            runs.append((arm, seed, hf))
    sets = heldout_sets(cfg, selections)
    losses: dict[str, dict[str, list[float]]] = {name: {"annotator": [], "random": []} for name in sets}
    for arm, seed, hf in runs:
        for name, texts in sets.items():
            loss = cached_heldout_loss(hf, cfg.tokenizer, name, texts, ts["seq_length"])
            losses[name][arm].append(loss)
            log(f"  {arm:<9} seed {seed}  {name:<16} loss {loss:.4f}")
    summary = {name: {arm: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                            "values": v} for arm, v in arms.items()} for name, arms in losses.items()}
    wins = [name for name, arms in summary.items() if arms["annotator"]["mean"] < arms["random"]["mean"]]
    result = {
        "description": (f"From {cfg.load_from}: {iters} iterations of {tokens_per_iter} tokens "
                        f"({cfg.budget_tokens} unique tokens x {cfg.repetition}) per run; seeds {cfg.seeds}; "
                        f"held-out sets: {', '.join(f'{k} ({len(v)} texts)' for k, v in sets.items())}."),
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
        "iterations": iters, "tokens_per_run": iters * tokens_per_iter,
        "summary": summary,
        "conclusion": (f"The annotator's selection gave the lower mean held-out loss on {len(wins)} of "
                       f"{len(summary)} sets ({', '.join(wins) or 'none'})."),
    }
    (out / "ablation.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m megatron_snow ablation", description=__doc__.split("\n\n")[0],
                                epilog="Settings (key=value): " + ", ".join(AblationConfig.__dataclass_fields__))
    p.add_argument("--config", default=None, help="YAML file of AblationConfig settings")
    p.add_argument("overrides", nargs="*", help="key=value settings")
    a = p.parse_args(argv)
    try:
        cfg = load_config(AblationConfig, a.config, a.overrides)
        result = run_ablation(cfg)
    except (ConfigError, FileNotFoundError) as e:
        print(f"ablation: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(result["conclusion"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
