"""Score every document of a corpus with a trained annotator (recipe, phase 2).

Documents are longer than the encoder's window (512 positions for
arctic-embed-m), so a long document is scored on three windows, its top,
middle and bottom, and the three scores are averaged. A document that fits
in one window is scored once.

Windows: with ``w`` content tokens per window (the model's positions minus
its special tokens, [CLS] and [SEP] for BERT) and ``n`` tokens in the
document, the windows are ``[0, w)``, ``[(n - w) // 2, (n - w) // 2 + w)`` and
``[n - w, n)``. For a very long document only three character slices are
tokenized (head, the slice around the middle character, tail), never the
whole text, so the middle window is then centred on the middle character.

At scale: windows of many documents are batched together sorted by length
(little padding), the model runs in bf16 on GPU, corpus shards are shared
round-robin over ranks (MPI through megatron_snow.dist, or torchrun's RANK /
WORLD_SIZE), and each corpus shard gives one score shard written atomically
beside the corpus: a killed run re-run with the same command skips the
shards already scored.

Score shard records: ``{"id", "language", "bytes", "score", "window_scores",
"dropped"}``; ``dropped`` names why a document has no score (``no_tokens``).
"""
from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from megatron_snow import records
from megatron_snow.phase2.score_store import FUNNEL_FILE, default_scores_dir, read_score_shard, scores_funnel

# Characters tokenized per window when only slices of a long text are tokenized.
# BERT WordPiece averages 3-5 characters per token on code; 12 leaves a wide margin,
# and a slice that still gives too few tokens falls back to tokenizing everything.
CHARS_PER_TOKEN_SLICE = 12


@dataclass
class AnnotateConfig:
    """Settings of ``tools/preprocess/annotate.py``."""

    corpus: str = ""  # a records dataset (phase-1 output)
    model: str = ""  # annotator directory (transformers format, from train_annotator)
    out: str = ""  # default: <corpus>/scores
    batch_size: int = 64  # windows per forward pass
    max_length: int = 512  # positions per window, special tokens included (capped by the model)
    docs_per_chunk: int = 1024  # documents read and windowed at a time
    device: str = "auto"  # auto | cpu | cuda
    dtype: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16


def window_spans(n_tokens: int, window: int) -> list[tuple[int, int]]:
    """Top, middle and bottom windows of a sequence (one window if it fits)."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if n_tokens <= window:
        return [(0, n_tokens)] if n_tokens > 0 else []
    mid = (n_tokens - window) // 2
    return [(0, window), (mid, mid + window), (n_tokens - window, n_tokens)]


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count())
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}") from None


def local_rank() -> int:
    for var in ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


@dataclass
class DocScore:
    score: float | None
    window_scores: list[float] = field(default_factory=list)


def special_affixes(backend) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single text ([CLS] and [SEP] for BERT)."""
    plain = backend.encode("a", add_special_tokens=False).ids
    full = backend.encode("a", add_special_tokens=True).ids
    for k in range(len(full) - len(plain) + 1):
        if full[k : k + len(plain)] == plain:
            return full[:k], full[k + len(plain) :]
    raise ValueError("cannot locate the special tokens the tokenizer adds around a text")


class Scorer:
    """An annotator loaded for inference: text -> windows -> batched scores."""

    def __init__(self, model_dir: str | Path, device: str = "auto", dtype: str = "auto",
                 batch_size: int = 64, max_length: int = 512):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model_dir = str(model_dir)
        if not Path(model_dir, "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not an annotator directory (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"{model_dir}: the annotator needs a fast (tokenizer.json) tokenizer")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=self.dtype)
        self.model.to(self.device).eval()
        cfg = self.model.config
        positions = getattr(cfg, "max_position_embeddings", max_length)
        # RoBERTa-style models reserve padding_idx + 1 positions.
        if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            positions -= 2
        self.max_length = min(max_length, positions)
        # A copy without the saved truncation/padding settings: windows need every token.
        self._backend = copy.deepcopy(self.tokenizer.backend_tokenizer)
        self._backend.no_truncation()
        self._backend.no_padding()
        self.prefix, self.suffix = special_affixes(self._backend)
        self.window = self.max_length - len(self.prefix) - len(self.suffix)
        self.batch_size = batch_size
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.num_labels = cfg.num_labels
        label2id = {k.lower(): v for k, v in (cfg.label2id or {}).items()}
        self.positive_index = label2id.get("high_quality", 1) if self.num_labels > 1 else 0

    # -- tokens ------------------------------------------------------------
    def _ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]

    def windows(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Token windows (no special tokens) of each text: 0, 1 or 3 per text."""
        w = self.window
        limit = w * CHARS_PER_TOKEN_SLICE
        out: list[list[list[int]] | None] = [None] * len(texts)
        whole: list[int] = []
        sliced: list[int] = []
        for i, t in enumerate(texts):
            (sliced if len(t) > 3 * limit else whole).append(i)
        if sliced:
            pieces = []
            for i in sliced:
                t = texts[i]
                m = len(t) // 2
                pieces += [t[:limit], t[m - limit : m + limit], t[-limit:]]
            ids = self._ids(pieces)
            for k, i in enumerate(sliced):
                head, mid, tail = ids[3 * k : 3 * k + 3]
                if min(len(head), len(tail)) < w or len(mid) < w:
                    whole.append(i)  # whitespace-heavy text: too few tokens in a slice
                    continue
                s = (len(mid) - w) // 2
                out[i] = [head[:w], mid[s : s + w], tail[-w:]]
        if whole:
            for i, ids in zip(whole, self._ids([texts[i] for i in whole])):
                out[i] = [ids[a:b] for a, b in window_spans(len(ids), w)]
        return out  # type: ignore[return-value]

    # -- model -------------------------------------------------------------
    @torch.inference_mode()
    def score_windows(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        """Positive-class probability of each window, batched by similar length."""
        scores = np.zeros(len(windows), dtype=np.float64)
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            seqs = [self.prefix + list(windows[i]) + self.suffix for i in idx]
            longest = max(len(s) for s in seqs)
            input_ids = torch.full((len(seqs), longest), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), longest), dtype=torch.long)
            for r, s in enumerate(seqs):
                input_ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
                mask[r, : len(s)] = 1
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
            scores[idx] = self.probabilities(logits).cpu().numpy()
        return scores

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.num_labels == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=-1)[:, self.positive_index]

    def score_texts(self, texts: Sequence[str]) -> list[DocScore]:
        """Average of the top/middle/bottom window scores of each text."""
        wins = self.windows(texts)
        flat = [w for ws in wins for w in ws]
        flat_scores = self.score_windows(flat) if flat else np.zeros(0)
        out, k = [], 0
        for ws in wins:
            s = [float(x) for x in flat_scores[k : k + len(ws)]]
            k += len(ws)
            out.append(DocScore(score=float(np.mean(s)) if s else None, window_scores=s))
        return out


# -- a whole corpus ---------------------------------------------------------------
def _chunks(it: Iterable, n: int) -> Iterator[list]:
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def score_shard(scorer: Scorer, shard: Path, out_path: Path, docs_per_chunk: int = 1024, progress=None) -> int:
    """Score one corpus shard into one score shard (written atomically); returns documents scored."""
    rows = []
    for chunk in _chunks(records.read_shard(shard), docs_per_chunk):
        results = scorer.score_texts([r.content for r in chunk])
        for r, res in zip(chunk, results):
            rows.append({
                "id": r.id,
                "language": r.language,
                "bytes": len(r.content.encode("utf-8")),
                "score": res.score,
                "window_scores": res.window_scores,
                "dropped": None if res.score is not None else "no_tokens",
            })
        if progress is not None:
            progress.update(len(chunk))
    records.write_shard(out_path, rows)
    return len(rows)


def _rank_world():
    """(rank, size, comm): torchrun's env vars when set, else MPI (or one process)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), None
    from megatron_snow.dist import get_comm

    comm = get_comm()
    return comm.rank, comm.size, comm


def annotate_corpus(cfg: AnnotateConfig, log=print, show_progress: bool = True) -> dict | None:
    """Score this rank's share of the corpus shards, skipping shards already scored.

    Returns the scores manifest once every shard is scored (on the rank that
    writes it), else None.
    """
    from tqdm import tqdm

    if not cfg.corpus or not cfg.model:
        raise ValueError("annotate needs corpus=DIR and model=DIR")
    shards = records.list_shards(cfg.corpus)
    if not shards:
        raise FileNotFoundError(f"no shards in corpus {cfg.corpus}")
    out_dir = Path(cfg.out) if cfg.out else default_scores_dir(cfg.corpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, size, comm = _rank_world()
    mine = list(range(rank, len(shards), size))
    todo = [i for i in mine if not (out_dir / shards[i].name).is_file()]
    log(f"[annotate rank {rank}/{size}] {len(mine)} shards, {len(mine) - len(todo)} already scored, {len(todo)} to do")
    if todo:
        scorer = Scorer(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size,
                        max_length=cfg.max_length)
        log(f"[annotate rank {rank}] device={scorer.device} dtype={scorer.dtype} window={scorer.window} tokens")
        t0, n_docs = time.time(), 0
        bar = tqdm(total=None, unit="doc", desc=f"annotate r{rank}", disable=not show_progress)
        for i in todo:
            n_docs += score_shard(scorer, shards[i], out_dir / shards[i].name, cfg.docs_per_chunk, progress=bar)
            log(f"[annotate rank {rank}] scored {shards[i].name}")
        bar.close()
        dt = max(time.time() - t0, 1e-9)
        log(f"[annotate rank {rank}] {n_docs} documents in {dt:.1f} s ({n_docs / dt:.1f} docs/s)")
    if comm is not None:
        comm.barrier()
        if not comm.is_root:
            return None
    missing = [s.name for s in shards if not (out_dir / s.name).is_file()]
    if missing:
        log(f"[annotate rank {rank}] {len(missing)} shards not scored yet (other ranks); manifest not written")
        return None
    return finalize_scores(out_dir, shards, cfg, log)


def finalize_scores(out_dir: Path, shards: list[Path], cfg: AnnotateConfig, log=print) -> dict:
    """Funnel and manifest of a fully scored corpus (idempotent)."""
    entries = [{"name": s.name, "records": len(read_score_shard(out_dir / s.name)), "content_bytes": 0}
               for s in shards]
    funnel = scores_funnel(out_dir)
    funnel.write(out_dir / FUNNEL_FILE)
    log(funnel.table())
    manifest = records.write_manifest(out_dir, entries, kind="annotator-scores", corpus=str(Path(cfg.corpus)),
                                      model=str(Path(cfg.model)), max_length=cfg.max_length)
    log(f"[annotate] wrote {out_dir / records.MANIFEST}: {manifest['records']} documents scored")
    return manifest
