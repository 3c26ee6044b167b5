"""Train the quality annotator: a BERT-style encoder plus a linear classification head.

Recipe (phase 2): Snowflake arctic-embed-m with a linear head, trained like
the FineWeb-Edu classifier: encoder frozen, head only, lr 3e-4, 20 epochs,
batch 256, the checkpoint with the best validation F1 kept. The paper does
not say whether it froze the encoder, so full fine-tuning is the other mode.

Two heads, one logit trained with binary cross-entropy, score = sigmoid(logit):
- ``head=linear`` (the paper's "linear classification head"): one linear layer
  on the encoder's first-token ([CLS]) output. Saved as
  ``AutoModelForTokenClassification`` with one label (a linear layer on every
  position; the score reads position 0), which loads with plain ``transformers``.
- ``head=pooler`` (what the FineWeb-Edu classifier trains): BERT's pooler
  (dense + tanh on [CLS]) then a linear layer, saved as
  ``AutoModelForSequenceClassification`` (``num_labels=1``,
  ``problem_type="multi_label_classification"``), so
  ``pipeline("text-classification")`` returns the scorer's score.
In frozen mode the embeddings and encoder layers are frozen and only the head
(linear; or pooler and linear) trains.

Deterministic: torch runs on ``threads`` threads (default 1) with deterministic
algorithms (``megatron_snow.determinism``), so the same data, settings and seed
give the same bytes whatever the machine's thread count (recorded in metrics.json).

Training sees the first window of each text (``max_length`` positions).
In frozen mode the encoder's [CLS] states are computed once and the head
trains on them for all epochs, which is the same computation as running the
frozen encoder every epoch, 20 times cheaper. Data split: train, validation
(picks the checkpoint by F1) and test (reported; never used for a choice).
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import torch

from megatron_snow.config import Config, ConfigError, setting
from megatron_snow.config import dump_config
from megatron_snow.determinism import fixed_threads
from megatron_snow.funnel import Funnel
from megatron_snow.phase2.metrics import BinaryMetrics, binary_metrics
from megatron_snow.device import resolve_device, resolve_dtype
from megatron_snow.phase2.training_data import Example, TrainingDataConfig, build_training_set

DEFAULT_ENCODER = "Snowflake/snowflake-arctic-embed-m"
LABEL = "high_quality"


@dataclass
class TrainAnnotatorConfig(Config):
    """Settings of ``tools/preprocess/train_annotator.py``."""

    encoder: str = setting(DEFAULT_ENCODER, help="Hugging Face name or local directory of a BERT-style encoder")
    out: str = setting("", help="output directory of the trained annotator")
    mode: Literal["frozen", "full"] = setting(
        "frozen", help="frozen (head only, FineWeb-Edu) | full (fine-tune everything)")
    head: Literal["linear", "pooler"] = setting(
        "pooler", help="linear: the paper's one layer on [CLS] | pooler: FineWeb-Edu's")
    lr: float = setting(0.0, help="0: 3e-4 for frozen, 3e-5 for full", range=">= 0")
    epochs: int = setting(20, help="passes over the training examples", range=">= 1")
    batch_size: int = setting(256, help="examples per optimizer step", range=">= 1")
    micro_batch_size: int = setting(
        32, help="full mode: gradient accumulation down to this many sequences", range=">= 1")
    max_length: int = setting(512, help="tokens per example, special tokens included", range=">= 3")
    weight_decay: float = setting(0.0, help="AdamW weight decay", range=">= 0")
    warmup_fraction: float = setting(
        0.0, help="share of steps with linear warmup, then linear decay to 0", range="[0, 1)")
    val_fraction: float = setting(0.05, help="share of the examples held out for validation", range="(0, 1)")
    test_fraction: float = setting(0.05, help="share of the examples held out for the test", range="[0, 1)")
    threshold: float = setting(0.5, help="score >= threshold counts as positive for P/R/F1", range="[0, 1]")
    seed: int = setting(0, help="seed of the split, the shuffling and the head's initial weights")
    device: str = setting("auto", help="auto (this rank's GPU, else CPU) | cpu | cuda | cuda:N")
    dtype: str = setting("auto", help="autocast precision: auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16")
    threads: int = setting(
        1, help="torch CPU threads, fixed so that the result does not depend on the machine's thread count",
        range=">= 1")
    data: TrainingDataConfig = setting(help="the positives and negatives", factory=TrainingDataConfig)


@dataclass
class TrainResult:
    out: str
    best_epoch: int
    val: BinaryMetrics
    test: BinaryMetrics
    history: list[dict]


def split_examples(examples: list[Example], val_fraction: float, test_fraction: float, seed: int):
    """Stratified random split, so each part keeps the class balance."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in (0, 1):
        idx = [i for i, e in enumerate(examples) if e.label == label]
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        n_test = max(1, int(round(len(idx) * test_fraction)))
        if n_val + n_test >= len(idx):
            raise ValueError(f"too few examples of class {label} ({len(idx)}) for validation and test splits")
        parts[1].extend(examples[i] for i in idx[:n_val])
        parts[2].extend(examples[i] for i in idx[n_val : n_val + n_test])
        parts[0].extend(examples[i] for i in idx[n_val + n_test :])
    for p in parts:
        rng.shuffle(p)
    return parts


def load_encoder_for_classification(encoder: str, head: str = "pooler"):
    """(model, tokenizer): the encoder with a fresh 1-logit head (``linear`` or ``pooler``, see above)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoder)
    if head == "linear":
        model = AutoModelForTokenClassification.from_pretrained(encoder, num_labels=1, id2label={0: LABEL},
                                                                label2id={LABEL: 0})
    elif head == "pooler":
        model = AutoModelForSequenceClassification.from_pretrained(
            encoder, num_labels=1, problem_type="multi_label_classification",
            id2label={0: LABEL}, label2id={LABEL: 0})
    else:
        raise ConfigError(f"head must be linear or pooler, got {head!r}")
    return model, tok


def first_logit(model, logits: torch.Tensor) -> torch.Tensor:
    """The one logit per text: a token-classification (linear) head's at position 0, else the model's."""
    return logits[:, 0, 0] if logits.dim() == 3 else logits[:, 0]


def head_parameters(model) -> list[str]:
    """Names of the parameters that train in frozen mode: everything but embeddings and encoder layers."""
    base = model.base_model_prefix
    frozen_prefixes = (f"{base}.embeddings.", f"{base}.encoder.")
    return [n for n, _ in model.named_parameters() if not n.startswith(frozen_prefixes)]


def _pad(batch_ids: list[list[int]], pad_id: int):
    longest = max(len(s) for s in batch_ids)
    ids = torch.full((len(batch_ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch_ids), longest), dtype=torch.long)
    for r, s in enumerate(batch_ids):
        ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[r, : len(s)] = 1
    return ids, mask


class _Head(torch.nn.Module):
    """What follows the encoder in a BERT-style classifier, fed the cached [CLS] state; returns (B, 1) logits."""

    def __init__(self, model):
        super().__init__()
        base = model.base_model
        self.pooler = getattr(base, "pooler", None)
        self.dropout = getattr(model, "dropout", None)
        self.classifier = model.classifier
        self.token_level = type(model).__name__.endswith("ForTokenClassification")  # head=linear
        self.pooled = (not self.token_level and self.pooler is not None and self.dropout is not None
                       and isinstance(self.classifier, torch.nn.Linear))

    def forward(self, cls_state: torch.Tensor) -> torch.Tensor:
        h = cls_state[:, None, :]  # (B, 1, H): poolers and RoBERTa heads read position 0
        if self.token_level:
            return self.classifier(self.dropout(h))[:, 0]
        if self.pooled:
            return self.classifier(self.dropout(self.pooler(h)))
        return self.classifier(h)


def _lr_lambda(total_steps: int, warmup_fraction: float):
    warmup = int(total_steps * warmup_fraction)

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return f


class AnnotatorTrainer:
    def __init__(self, cfg: TrainAnnotatorConfig, log=print):
        if cfg.mode not in ("frozen", "full"):
            raise ValueError(f"mode must be frozen or full, got {cfg.mode!r}")
        if cfg.head not in ("linear", "pooler"):
            raise ValueError(f"head must be linear or pooler, got {cfg.head!r}")
        self.cfg = cfg
        self.log = log
        self.device = resolve_device(cfg.device)
        self.lr = cfg.lr or (3e-4 if cfg.mode == "frozen" else 3e-5)
        torch.manual_seed(cfg.seed)
        self.model, self.tokenizer = load_encoder_for_classification(cfg.encoder, cfg.head)
        self.model.to(self.device)
        positions = getattr(self.model.config, "max_position_embeddings", cfg.max_length)
        self.max_length = min(cfg.max_length, positions)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.amp_dtype = resolve_dtype(cfg.dtype, self.device)
        self.amp = self.amp_dtype != torch.float32

    def tokenize(self, examples: list[Example]) -> list[list[int]]:
        enc = self.tokenizer([e.text for e in examples], truncation=True, max_length=self.max_length)
        return enc["input_ids"]

    # -- scores ------------------------------------------------------------
    @torch.inference_mode()
    def _cls_states(self, ids: list[list[int]], batch: int = 64) -> torch.Tensor:
        """[CLS] states of the (frozen) encoder, computed once."""
        self.model.eval()
        out = []
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            x, m = _pad([ids[i] for i in idx], self.pad_id)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                h = self.model.base_model(input_ids=x.to(self.device), attention_mask=m.to(self.device))[0][:, 0]
            out.append((idx, h.float()))
        states = torch.zeros((len(ids), self.model.config.hidden_size), device=self.device)
        for idx, h in out:
            states[idx] = h
        return states

    @torch.inference_mode()
    def _scores_full(self, ids: list[list[int]], batch: int = 64) -> np.ndarray:
        self.model.eval()
        scores = np.zeros(len(ids))
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            x, m = _pad([ids[i] for i in idx], self.pad_id)
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                logits = self.model(input_ids=x.to(self.device), attention_mask=m.to(self.device)).logits
            scores[idx] = torch.sigmoid(first_logit(self.model, logits.float())).cpu().numpy()
        return scores

    # -- training ----------------------------------------------------------
    def train(self, train: list[Example], val: list[Example], test: list[Example]) -> TrainResult:
        cfg = self.cfg
        y_train = torch.tensor([e.label for e in train], dtype=torch.float32)
        y_val = [e.label for e in val]
        y_test = [e.label for e in test]
        ids_train, ids_val, ids_test = self.tokenize(train), self.tokenize(val), self.tokenize(test)
        head_names = set(head_parameters(self.model))
        for n, p in self.model.named_parameters():
            p.requires_grad = cfg.mode == "full" or n in head_names
        params = [p for p in self.model.parameters() if p.requires_grad]
        n_train = sum(p.numel() for p in params)
        self.log(f"[train_annotator] mode={cfg.mode} lr={self.lr} trainable params={n_train:,} "
                 f"train/val/test={len(train)}/{len(val)}/{len(test)} device={self.device}")
        steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total, cfg.warmup_fraction))
        gen = torch.Generator().manual_seed(cfg.seed)

        if cfg.mode == "frozen":
            t0 = time.time()
            head = _Head(self.model)
            x_train, x_val, x_test = self._cls_states(ids_train), self._cls_states(ids_val), self._cls_states(ids_test)
            self.log(f"[train_annotator] encoder states of {len(ids_train) + len(ids_val) + len(ids_test)} texts "
                     f"in {time.time() - t0:.1f} s")

            def val_scores(x):
                head.eval()
                with torch.inference_mode():
                    return torch.sigmoid(head(x)[:, 0]).cpu().numpy()
        else:
            head = None

        best_f1, best_epoch, best_state, history = -1.0, -1, None, []
        loss_fn = torch.nn.BCEWithLogitsLoss()
        for epoch in range(1, cfg.epochs + 1):
            perm = torch.randperm(len(train), generator=gen).tolist()
            total_loss = 0.0
            self.model.train()
            for b in range(0, len(perm), cfg.batch_size):
                idx = perm[b : b + cfg.batch_size]
                opt.zero_grad(set_to_none=True)
                if head is not None:
                    logits = head(x_train[idx])[:, 0]
                    loss = loss_fn(logits, y_train[idx].to(self.device))
                    loss.backward()
                    total_loss += loss.item() * len(idx)
                else:
                    micro = cfg.micro_batch_size or cfg.batch_size
                    for mb in range(0, len(idx), micro):
                        sub = idx[mb : mb + micro]
                        x, m = _pad([ids_train[i] for i in sub], self.pad_id)
                        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
                            logits = self.model(input_ids=x.to(self.device), attention_mask=m.to(self.device)).logits
                        loss = loss_fn(first_logit(self.model, logits.float()), y_train[sub].to(self.device))
                        (loss * len(sub) / len(idx)).backward()
                        total_loss += loss.item() * len(sub)
                opt.step()
                sched.step()
            s_val = val_scores(x_val) if head is not None else self._scores_full(ids_val)
            m_val = binary_metrics(y_val, s_val, cfg.threshold)
            history.append({"epoch": epoch, "train_loss": total_loss / len(train), **m_val.to_dict()})
            self.log(f"[train_annotator] epoch {epoch}/{cfg.epochs} loss={total_loss / len(train):.4f} "
                     f"val {m_val.line()}")
            if m_val.f1 > best_f1:
                best_f1, best_epoch = m_val.f1, epoch
                best_state = {n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad}
        # Restore the checkpoint with the best validation F1, then report on the untouched test split.
        with torch.no_grad():
            named = dict(self.model.named_parameters())
            for n, v in best_state.items():
                named[n].copy_(v)
        s_val = val_scores(x_val) if head is not None else self._scores_full(ids_val)
        s_test = val_scores(x_test) if head is not None else self._scores_full(ids_test)
        m_val = binary_metrics(y_val, s_val, cfg.threshold)
        m_test = binary_metrics(y_test, s_test, cfg.threshold)
        self.log(f"[train_annotator] best epoch {best_epoch} by validation F1; test {m_test.line()}")
        return TrainResult(out=cfg.out, best_epoch=best_epoch, val=m_val, test=m_test, history=history)

    def save(self, out: str | Path, result: TrainResult, extra: dict | None = None) -> None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for p in self.model.parameters():
            p.requires_grad = True
        model = copy.deepcopy(self.model).to("cpu").float()
        model.save_pretrained(out)
        self.tokenizer.model_max_length = self.max_length
        self.tokenizer.save_pretrained(out)
        metrics = {
            "mode": self.cfg.mode,
            "head": self.cfg.head,
            "lr": self.lr,
            "best_epoch": result.best_epoch,
            "validation": result.val.to_dict(),
            "test": result.test.to_dict(),
            "history": result.history,
            **(extra or {}),
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def train_annotator(cfg: TrainAnnotatorConfig, log=print, examples: list[Example] | None = None) -> TrainResult:
    """Build the training set, train, keep the best-F1 checkpoint, save it with its metrics."""
    if not cfg.out:
        raise ConfigError("train_annotator needs out=DIR")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    funnel = Funnel("annotator-training-data")
    if examples is None:
        examples = build_training_set(cfg.data, funnel)
    n_pos = sum(e.label for e in examples)
    log(f"[train_annotator] {n_pos} positives, {len(examples) - n_pos} negatives")
    train, val, test = split_examples(examples, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    with fixed_threads(cfg.threads) as determinism:
        trainer = AnnotatorTrainer(cfg, log)
        result = trainer.train(train, val, test)
        trainer.save(out, result, extra={"positives": n_pos, "negatives": len(examples) - n_pos, **determinism})
    # Corpus documents the annotator has seen: alignment must not use them as held-out negatives.
    neg_ids = sorted(e.id for e in examples if e.label == 0)
    (out / "negative_ids.txt").write_text("".join(i + "\n" for i in neg_ids))
    if funnel.counts:
        funnel.write(out / "training_data_funnel.json")
        log(funnel.table())
    dump_config(cfg, out / "train_config.yaml")
    return result


USAGE = """example:
  python -m megatron_snow train-annotator data.corpus=data/phase1 out=models/annotator mode=frozen"""


def cli_run(cfg, args, comm) -> None:
    """The ``train-annotator`` command."""
    if comm.is_root:
        result = train_annotator(cfg)
        print(f"saved {cfg.out}: best epoch {result.best_epoch}; test {result.test.line()}")


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow train-annotator`` / ``tools/preprocess/train_annotator.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["train-annotator"].main(argv)
