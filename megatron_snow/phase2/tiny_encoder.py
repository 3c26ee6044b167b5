"""A small BERT-style encoder made from scratch: WordPiece vocabulary + random-init BERT.

The recipe's annotator starts from Snowflake arctic-embed-m (downloaded from
the Hugging Face hub). Offline runs (tests, the tiny example, ablations on a
laptop) need an encoder that exists without a download: this one trains a
WordPiece vocabulary on local text and saves a randomly initialised BERT in
Hugging Face format, which every phase-2 command loads like any other encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Iterable

from megatron_snow.config import ConfigError


def make_tiny_encoder(texts: Iterable[str], out: str | Path, vocab_size: int = 2000, hidden_size: int = 64,
                      num_layers: int = 2, num_heads: int = 2, max_positions: int = 128, seed: int = 0) -> Path:
    """Train a WordPiece vocabulary on ``texts`` and save a random-init BERT beside it; returns ``out``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = Path(out)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, show_progress=False,
                                        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(texts, trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                             sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions,
                             do_lower_case=False)
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=2 * hidden_size,
                        max_position_embeddings=max_positions)
    BertModel(config).save_pretrained(out)
    return out


@dataclass
class TinyEncoderConfig:
    """Settings of ``make-tiny-encoder``."""

    corpus: list[str] = field(default_factory=list)  # records dataset(s) to learn the vocabulary on
    out: str = ""  # output directory (Hugging Face format)
    max_docs: int = 20000  # documents read per corpus
    vocab_size: int = 2000  # WordPiece vocabulary size
    hidden_size: int = 64
    layers: int = 2
    heads: int = 2
    max_positions: int = 128  # the encoder's window (special tokens included)
    seed: int = 0

    RANGES: ClassVar[dict[str, str]] = {"max_docs": ">= 1", "vocab_size": ">= 100", "hidden_size": ">= 1",
                                        "layers": ">= 1", "heads": ">= 1", "max_positions": ">= 3"}


USAGE = """For offline runs and small ablations in place of the recipe's arctic-embed-m download:
  python -m megatron_snow make-tiny-encoder corpus=[data/phase1/06_pii] out=models/tiny_encoder
  python -m megatron_snow train-annotator encoder=models/tiny_encoder ..."""


def cli_run(cfg, args, comm) -> None:
    """The ``make-tiny-encoder`` command."""
    import itertools

    from megatron_snow import records

    if not cfg.corpus or not cfg.out:
        raise ConfigError("make-tiny-encoder needs corpus=[DIR, ...] and out=DIR")
    texts = [r.content for c in cfg.corpus for r in itertools.islice(records.iter_records(c), cfg.max_docs)]
    if not texts:
        raise ConfigError("the corpus has no documents")
    if comm.is_root:
        out = make_tiny_encoder(texts, cfg.out, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                                num_layers=cfg.layers, num_heads=cfg.heads, max_positions=cfg.max_positions,
                                seed=cfg.seed)
        print(f"wrote {out}: BERT {cfg.layers} layers x {cfg.hidden_size}, {cfg.max_positions} positions, "
              f"WordPiece vocabulary learned on {len(texts):,} documents")


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow make-tiny-encoder`` / ``tools/preprocess/make_tiny_encoder.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["make-tiny-encoder"].main(argv)
