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
(little padding), the model runs in bf16 on GPU, and the step runs on the
stage runner (``megatron_snow.stages``): corpus shards are shared round-robin
over the ranks, MPI ones (``mpiexec``/``srun``) or torchrun processes (gloo, no
MPI needed), each on its local rank's GPU; each corpus shard gives one score
shard, a killed run re-run with the same command skips the shards already
scored, and scores of another annotator (its files' content, not its path) or
another corpus are refused in one line (``--force`` replaces).

Score shard records (one per corpus document, in corpus order): ``{"id",
"language", "bytes", "score", "window_scores", "dropped"}``; ``dropped`` names
why a document has no score (``no_tokens``, or the reason a line could not be
read).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow import records
from megatron_snow.determinism import fixed_threads
from megatron_snow.device import local_rank, resolve_device, resolve_dtype  # noqa: F401  (local_rank: re-exported)
from megatron_snow.funnel import Funnel
from megatron_snow.phase2.score_store import default_scores_dir
from megatron_snow.stages import Dropped, Step, StepContext, UnitResult, count_bad, set_aside

# Characters tokenized per window when only slices of a long text are tokenized.
# BERT WordPiece averages 3-5 characters per token on code; 12 leaves a wide margin,
# and a slice that still gives too few tokens falls back to tokenizing everything.
CHARS_PER_TOKEN_SLICE = 12


@dataclass
class ScorerSettings(Config):
    """An annotator loaded for scoring: the settings annotate and alignment share (one place, one ``Scorer`` call)."""

    model: str = setting("", help="annotator directory (transformers format, from train_annotator)")
    batch_size: int = setting(64, help="windows per forward pass", range=">= 1")
    max_length: int = setting(
        512, help="positions per window, special tokens included (capped by the model)", range=">= 3")
    device: str = setting("auto", help="auto | cpu | cuda")
    dtype: str = setting("auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16")
    threads: int = setting(
        1, help="torch CPU threads per rank, fixed so that scores do not depend on the machine's thread count",
        range=">= 1")

    def scorer(self) -> Scorer:
        return Scorer(self.model, device=self.device, dtype=self.dtype, batch_size=self.batch_size,
                      max_length=self.max_length, threads=self.threads)


@dataclass
class AnnotateConfig(ScorerSettings):
    """Settings of ``tools/preprocess/annotate.py``."""

    corpus: str = setting("", help="a records dataset (phase-1 output)")
    out: str = setting("", help="default: <corpus>/scores")
    docs_per_chunk: int = setting(1024, help="documents read and windowed at a time", range=">= 1")


def window_spans(n_tokens: int, window: int) -> list[tuple[int, int]]:
    """Top, middle and bottom windows of a sequence (one window if it fits)."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    if n_tokens <= window:
        return [(0, n_tokens)] if n_tokens > 0 else []
    mid = (n_tokens - window) // 2
    return [(0, window), (mid, mid + window), (n_tokens - window, n_tokens)]


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
                 batch_size: int = 64, max_length: int = 512, threads: int = 1):
        from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoModelForTokenClassification,
                                  AutoTokenizer)

        model_dir = str(model_dir)
        if not Path(model_dir, "config.json").is_file():
            raise FileNotFoundError(f"{model_dir} is not an annotator directory (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"{model_dir}: the annotator needs a fast (tokenizer.json) tokenizer")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # head=linear annotators are saved as token classifiers (a linear layer read at position 0)
        archs = AutoConfig.from_pretrained(model_dir).architectures or []
        token_level = any(a.endswith("ForTokenClassification") for a in archs)
        auto = AutoModelForTokenClassification if token_level else AutoModelForSequenceClassification
        # Weights in the scoring dtype (bf16 on GPU). Measured on an H200 (bench/gpu_checks.py):
        # autocast over fp32 weights was 23% slower and no closer to the fp32 scores.
        self.model = auto.from_pretrained(model_dir, dtype=self.dtype)
        self.threads = threads  # fixed: the scores' bytes do not depend on the machine's thread count
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
        """Positive-class probability of each window, batched by similar length. Every batch is
        queued on the device without waiting for its result (one copy back at the end, not one
        sync per batch); a batch without padding runs without an attention mask, so SDPA takes
        its fused kernels."""
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        cuda = self.device.type == "cuda"
        outputs = []
        with fixed_threads(self.threads):  # once for the whole loop: setting torch's threads is not free
            for b in range(0, len(order), self.batch_size):
                idx = order[b : b + self.batch_size]
                seqs = [self.prefix + list(windows[i]) + self.suffix for i in idx]
                lengths = np.array([len(q) for q in seqs])
                longest = int(lengths.max())
                ids = np.full((len(seqs), longest), self.pad_id, dtype=np.int64)
                for r, q in enumerate(seqs):
                    ids[r, : len(q)] = q
                input_ids = torch.from_numpy(ids)
                mask = None
                if lengths.min() < longest:
                    mask = torch.from_numpy((np.arange(longest)[None, :] < lengths[:, None]).astype(np.int64))
                if cuda:
                    input_ids = input_ids.pin_memory().to(self.device, non_blocking=True)
                    mask = mask.pin_memory().to(self.device, non_blocking=True) if mask is not None else None
                logits = self.model(input_ids=input_ids, attention_mask=mask).logits
                outputs.append(self.probabilities(logits[:, 0] if logits.dim() == 3 else logits))
        scores = np.zeros(len(order), dtype=np.float64)
        if outputs:
            scores[order] = torch.cat(outputs).cpu().double().numpy()
        return scores

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.num_labels == 1:
            return torch.sigmoid(logits[:, 0])
        return torch.softmax(logits, dim=-1)[:, self.positive_index]

    def score_texts(self, texts: Sequence[str]) -> list[DocScore]:
        """Average of the top/middle/bottom window scores of each text."""
        wins = self.windows(texts)
        flat_scores, k = self.score_windows([w for ws in wins for w in ws]), 0
        out = []
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


def score_items(scorer: Scorer, items: Sequence[records.CodeRecord | records.BadRecord]) -> list[dict]:
    """One score row per item, in order; an unreadable line (a BadRecord) gets no score and its reason."""
    good = [r for r in items if not isinstance(r, records.BadRecord)]
    scored = iter(scorer.score_texts([r.content for r in good]))
    rows = []
    for r in items:
        if isinstance(r, records.BadRecord):
            rows.append({"id": r.record.id, "language": r.record.language, "bytes": 0, "score": None,
                         "window_scores": [], "dropped": r.reason, "error": f"{r.file}:{r.line}: {r.error}",
                         "count": r.count})  # a damaged gzip's lost tail: the records it stands for
            continue
        res = next(scored)
        rows.append({"id": r.id, "language": r.language, "bytes": len(r.content.encode("utf-8", "surrogatepass")),
                     "score": res.score, "window_scores": res.window_scores,
                     "dropped": None if res.score is not None else "no_tokens"})
    return rows


def score_shard(scorer: Scorer, shard: Path, out_path: Path, docs_per_chunk: int = 1024, progress=None) -> int:
    """Score one corpus shard into one score shard (written atomically); returns the rows written.

    One row per item of the shard in its order, so selection can match rows by
    position: a line that is not a readable record (bad JSON, a truncated gzip)
    gets a row with no score and its reason in ``dropped``.
    """
    rows = []
    for chunk in _chunks(records.read_shard_checked(shard, name=shard.name), docs_per_chunk):
        rows += score_items(scorer, chunk)
        if progress is not None:
            progress.update(len(chunk))
    records.write_shard(out_path, rows)
    return len(rows)


class Annotate(Step):
    """The annotate step on the stage runner: one unit per corpus shard, giving the score shard of the
    same name (one row per document, in corpus order). Fingerprinted by the annotator's files (content),
    the corpus manifest and the window length: scores of another model are refused, not mixed."""

    name = "annotate"
    transforms = True  # the output holds score rows; the kept ones stand for the documents scored

    def __init__(self, cfg: AnnotateConfig, log=print):
        self.settings, self.input_dir, self.log = cfg, Path(cfg.corpus), log
        self._scorer: Scorer | None = None

    def fingerprint_settings(self) -> dict:
        dtype = resolve_dtype(self.settings.dtype, resolve_device(self.settings.device))
        return {"max_length": self.settings.max_length, "dtype": str(dtype)}

    def depends_on(self) -> dict[str, Path]:
        model = Path(self.settings.model)
        return {f"model/{f.relative_to(model)}": f for f in sorted(model.rglob("*")) if f.is_file()}

    def describe(self, unit) -> str:
        return f"{self.input_dir} shard {unit['shard']}"

    def process(self, ctx: StepContext, index: int, unit) -> UnitResult:
        cfg = self.settings
        if self._scorer is None:
            self._scorer = cfg.scorer()
            self.log(f"[annotate rank {ctx.comm.rank}/{ctx.comm.size}] device={self._scorer.device} "
                     f"dtype={self._scorer.dtype} window={self._scorer.window} tokens")
        rows: list[dict] = []
        dropped: list[Dropped] = []
        funnel = Funnel(self.name)
        for chunk in _chunks(ctx.read_input(unit["shard"]), cfg.docs_per_chunk):
            new = score_items(self._scorer, chunk)
            for item, row in zip(chunk, new):
                if isinstance(item, records.BadRecord):
                    count_bad(funnel, dropped, item)
                    continue
                funnel.seen(item.language, row["bytes"])
                if row["score"] is None:
                    set_aside(funnel, dropped, item, row["dropped"], nbytes=row["bytes"])
                else:
                    funnel.kept(item.language, row["bytes"])
            rows += new
        scored = sum(r["score"] is not None for r in rows)
        return UnitResult(rows, dropped, funnel, stats={"documents_scored": scored}, represents=scored)


def annotate_corpus(cfg: AnnotateConfig, log=print, show_progress: bool = True, force: bool = False,
                    comm=None) -> dict:
    """Score the corpus into ``cfg.out`` (default ``<corpus>/scores``) on every rank; returns the manifest.

    Resumable (finished shards are skipped); the ranks (MPI or torchrun, ``megatron_snow.dist``) share the
    shards round-robin (``ranks.json`` says which rank scored which).
    """
    from megatron_snow.stages import run_step

    if not cfg.corpus or not cfg.model:
        raise ConfigError("annotate needs corpus=DIR and model=DIR")
    if not records.list_shards(cfg.corpus):
        raise FileNotFoundError(f"no shards in corpus {cfg.corpus}")
    if not Path(cfg.model, "config.json").is_file():
        raise FileNotFoundError(f"{cfg.model} is not an annotator directory (no config.json)")
    out = Path(cfg.out) if cfg.out else default_scores_dir(cfg.corpus)
    t0 = time.time()
    funnel = run_step(Annotate(cfg, log), out, comm, force=force, progress=show_progress)
    manifest = records.read_manifest(out)
    if comm is None or comm.is_root:
        log(funnel.table())
        log(f"[annotate] {out / records.MANIFEST}: {manifest['records']} documents, "
            f"{funnel.total('kept')[0]} scored ({time.time() - t0:.1f} s)")
    return manifest


USAGE = """Resumable: re-run the same command after a failure and finished shards are skipped. Several GPUs or
nodes: launch with mpiexec -n N, srun (MPI), or torchrun (no MPI needed); shards are shared round-robin and
each process uses its local rank's GPU. Examples:
  mpiexec -n 8 python -m megatron_snow annotate corpus=data/phase1 model=models/annotator batch_size=256
  torchrun --nproc-per-node 8 -m megatron_snow annotate corpus=data/phase1 model=models/annotator batch_size=256"""


def cli_run(cfg, args, comm) -> None:
    """The ``annotate`` command."""
    annotate_corpus(cfg, show_progress=not args.quiet, force=args.force, comm=comm)


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow annotate`` / ``tools/preprocess/annotate.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["annotate"].main(argv)
