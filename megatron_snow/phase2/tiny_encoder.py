"""A small BERT-style encoder made from scratch: WordPiece vocabulary + random-init BERT.

The recipe's annotator starts from Snowflake arctic-embed-m (downloaded from
the Hugging Face hub). Offline runs (tests, the tiny example, ablations on a
laptop) need an encoder that exists without a download: this one trains a
WordPiece vocabulary on local text and saves a randomly initialised BERT in
Hugging Face format, which every phase-2 command loads like any other encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from megatron_snow.config import Config, ConfigError, setting


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
class TinyEncoderConfig(Config):
    """Settings of ``make-tiny-encoder``."""

    corpus: list[str] = setting(help="records dataset(s) to learn the vocabulary on", factory=list)
    out: str = setting("", help="output directory (Hugging Face format)")
    max_docs: int = setting(20000, help="documents read per corpus", range=">= 1")
    vocab_size: int = setting(2000, help="WordPiece vocabulary size", range=">= 100")
    hidden_size: int = setting(64, help="encoder width", range=">= 1")
    layers: int = setting(2, help="transformer layers", range=">= 1")
    heads: int = setting(2, help="attention heads", range=">= 1")
    max_positions: int = setting(128, help="the encoder's window (special tokens included)", range=">= 3")
    seed: int = setting(0, help="seed of the random initial weights")


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
