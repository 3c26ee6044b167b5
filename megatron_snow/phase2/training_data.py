"""Training examples for the quality annotator: positives vs random corpus documents.

The recipe's final annotator ("ANN-HQINS") learns high-quality code against
random code: positives are 220k files of ``yuxiang630/hqcode`` plus 80k
instruction records from Magicoder OSS-Instruct and StarCoder2-Instruct
(self-oss-instruct); negatives are documents sampled uniformly at random from
the phase-1 corpus, as many as positives (balanced). The paper does not say
how the 80k instructions split between the two sources: the default takes
40k from each.

Positive sources are Hugging Face datasets (``hf:NAME`` or
``hf:NAME:CONFIG``, split from the source) or local files: ``.jsonl``,
``.jsonl.gz``, ``.json``, ``.parquet``, a records dataset directory, or a
directory of source files (each file one positive).

Rendering records to text (one rule for every source):

- an instruction record, i.e. one with an instruction field (``instruction``,
  ``problem``, ``prompt`` or ``question``) and a response field
  (``response``, ``solution``, ``output`` or ``answer``), becomes
  ``instruction.strip() + "\\n\\n" + response.strip()``. No role markers are
  added: a marker that corpus documents never contain would let the
  classifier separate the classes by the marker alone, and it scores plain
  code files later;
- any other record uses its first text field among ``content``, ``code``,
  ``text``, ``solution`` (``kind=code`` forces this even when instruction
  fields exist);
- empty texts are set aside (funnel reason ``empty``).

Negatives are drawn by index from the corpus manifest's per-shard record
counts, so sampling reads each shard once and holds only the chosen
documents. Their ids are written next to the trained annotator so that the
alignment analysis can use held-out documents only.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow import records
from megatron_snow.funnel import Funnel

INSTRUCTION_FIELDS = ("instruction", "problem", "prompt", "question")
RESPONSE_FIELDS = ("response", "solution", "output", "answer")
CODE_FIELDS = ("content", "code", "text", "solution")
LANGUAGE_FIELDS = ("language", "lang")
# Files of a positive-source directory: suffix -> language (the recipe's languages).
SOURCE_SUFFIXES = {".py": "python", ".c": "c", ".h": "c", ".cc": "c++", ".cpp": "c++", ".hpp": "c++",
                   ".java": "java", ".js": "javascript", ".ts": "typescript", ".go": "go", ".rs": "rust",
                   ".rb": "ruby", ".php": "php", ".cs": "c#", ".scala": "scala", ".kt": "kotlin", ".swift": "swift",
                   ".dart": "dart", ".sh": "shell", ".sql": "sql", ".ipynb": "jupyter notebook"}


@dataclass
class PositiveSource(Config):
    path: str = setting(help="hf:NAME[:CONFIG] or a local file / directory")
    limit: int = setting(0, help="at most this many positives from the source (0: all)")
    split: str = setting("train", help="Hugging Face split")
    kind: str = setting("auto", help="auto | code | instruction")


def recipe_positive_sources() -> list[PositiveSource]:
    return [
        PositiveSource("hf:yuxiang630/hqcode", limit=220_000, kind="code"),
        PositiveSource("hf:ise-uiuc/Magicoder-OSS-Instruct-75K", limit=40_000, kind="instruction"),
        PositiveSource("hf:bigcode/self-oss-instruct-sc2-exec-filter-50k", limit=40_000, kind="instruction"),
    ]


@dataclass
class TrainingDataConfig(Config):
    positives: list[PositiveSource] = setting(
        help="where positives come from (default: the recipe's three), each:", factory=recipe_positive_sources)
    corpus: str = setting("", help="the phase-1 records dataset, for negatives")
    negatives_per_positive: float = setting(1.0, help="1.0 = balanced", range="> 0")
    max_chars: int = setting(32_768, help="texts are cut here (training sees the first window only)", range=">= 1")
    seed: int = setting(0, help="seed of the negatives' sample")


@dataclass
class Example:
    text: str
    label: int  # 1 positive, 0 negative
    source: str
    id: str = ""


def render_record(d: dict, kind: str = "auto") -> str:
    """The text of a positive record (the module docstring states the rule)."""
    if kind not in ("auto", "code", "instruction"):
        raise ValueError(f"kind must be auto, code or instruction, got {kind!r}")
    if kind != "code":
        instr = next((d[k] for k in INSTRUCTION_FIELDS if isinstance(d.get(k), str) and d[k].strip()), None)
        resp = next((d[k] for k in RESPONSE_FIELDS if isinstance(d.get(k), str) and d[k].strip()), None)
        if instr is not None and resp is not None:
            return instr.strip() + "\n\n" + resp.strip()
        if kind == "instruction":
            return ""
    for k in CODE_FIELDS:
        if isinstance(d.get(k), str) and d[k].strip():
            return d[k]
    return ""


def _record_language(d: dict) -> str:
    for k in LANGUAGE_FIELDS:
        if isinstance(d.get(k), str) and d[k]:
            return d[k].lower()
    return ""


def iter_source_rows(src: PositiveSource) -> Iterator[dict]:
    """Raw dict rows of a positive source."""
    p = src.path
    if p.startswith("hf:"):
        import datasets

        name, _, config = p[3:].partition(":")
        ds = datasets.load_dataset(name, config or None, split=src.split, streaming=src.limit > 0)
        yield from ds
        return
    path = Path(p)
    if not path.exists():
        raise FileNotFoundError(f"positive source not found: {p} (use hf:NAME for a Hugging Face dataset)")
    if path.is_dir():
        if (path / records.MANIFEST).is_file() or any(path.glob(records.SHARD_GLOB)):
            for r in records.iter_records(path):
                yield {"content": r.content, "language": r.language, "id": r.id}
            return
        for f in sorted(path.rglob("*")):
            if f.is_file() and f.suffix in SOURCE_SUFFIXES:
                yield {"content": f.read_text(encoding="utf-8", errors="replace"), "id": str(f),
                       "language": SOURCE_SUFFIXES[f.suffix]}
        return
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    elif name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}:{n}: not JSON: {e}") from None
    elif name.endswith(".json"):
        data = json.loads(path.read_text())
        if not isinstance(data, list):
            raise ValueError(f"{path}: a .json positive source must hold a list of records")
        yield from data
    else:
        raise ValueError(f"{path}: unknown positive source format (jsonl, jsonl.gz, json, parquet, or a directory)")


def load_positives(sources: list[PositiveSource], max_chars: int, funnel: Funnel) -> list[Example]:
    out: list[Example] = []
    for src in sources:
        n = 0
        for i, row in enumerate(iter_source_rows(src)):
            if src.limit and n >= src.limit:
                break
            text = render_record(row, src.kind)
            lang = _record_language(row) or "positive"
            nbytes = len(text.encode("utf-8"))
            funnel.seen(lang, nbytes)
            if not text.strip():
                funnel.dropped(lang, nbytes, "empty")
                continue
            funnel.kept(lang, nbytes)
            out.append(Example(text[:max_chars], 1, src.path, str(row.get("id", f"{src.path}#{i}"))))
            n += 1
    return out


def corpus_shard_counts(corpus: str | Path) -> list[tuple[Path, int]]:
    """(shard, records) of a dataset, from its manifest (or by counting)."""
    d = Path(corpus)
    if (d / records.MANIFEST).is_file():
        m = records.read_manifest(d)
        return [(d / s["name"], int(s["records"])) for s in m["shards"]]
    shards = records.list_shards(d)
    if not shards:
        raise FileNotFoundError(f"no shards in corpus {corpus}")
    return [(s, sum(1 for _ in records.read_shard(s))) for s in shards]


def sample_corpus(corpus: str | Path, n: int, seed: int, exclude: set[str] | None = None,
                  max_chars: int = 0) -> list[records.CodeRecord]:
    """``n`` documents drawn uniformly without replacement (skipping ``exclude`` ids)."""
    counts = corpus_shard_counts(corpus)
    total = sum(c for _, c in counts)
    exclude = exclude or set()
    if n > total:
        raise ValueError(f"asked for {n} random documents but the corpus {corpus} has {total}")
    # Each excluded id can cost at most one draw, so n + |exclude| draws always leave n.
    rng = np.random.default_rng(seed)
    k = min(total, n + len(exclude))
    picks = np.sort(rng.choice(total, size=k, replace=False))
    got: list[tuple[int, records.CodeRecord]] = []
    base = 0
    for shard, c in counts:
        lo, hi = np.searchsorted(picks, [base, base + c])
        if hi > lo:
            want = set((picks[lo:hi] - base).tolist())
            for j, r in enumerate(records.read_shard(shard)):
                if j in want and r.id not in exclude:
                    if max_chars:
                        r.content = r.content[:max_chars]
                    got.append((base + j, r))
        base += c
    if len(got) < n:
        raise ValueError(f"asked for {n} random documents but only {len(got)} of {corpus} are not excluded")
    order = rng.permutation(len(got))[:n]
    return [got[i][1] for i in order]


def build_training_set(cfg: TrainingDataConfig, funnel: Funnel | None = None) -> list[Example]:
    """Positives from the sources, then as many random corpus negatives (balanced)."""
    if not cfg.corpus:
        raise ConfigError("training data needs data.corpus=DIR (the phase-1 records dataset, for negatives)")
    funnel = funnel or Funnel("annotator-training-data")
    pos = load_positives(cfg.positives, cfg.max_chars, funnel)
    if not pos:
        raise ValueError("no positives loaded: check data.positives")
    n_neg = int(round(len(pos) * cfg.negatives_per_positive))
    neg_docs = sample_corpus(cfg.corpus, n_neg, cfg.seed, max_chars=cfg.max_chars)
    neg = []
    for r in neg_docs:
        lang = f"negative:{r.language or 'unknown'}"
        nbytes = len(r.content.encode("utf-8"))
        funnel.seen(lang, nbytes)
        if not r.content.strip():
            funnel.dropped(lang, nbytes, "empty")
            continue
        funnel.kept(lang, nbytes)
        neg.append(Example(r.content, 0, "corpus", r.id))
    return pos + neg
