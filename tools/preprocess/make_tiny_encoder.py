#!/usr/bin/env python
"""Make a small BERT encoder from scratch (WordPiece vocabulary trained on a corpus, random-init weights).

For offline runs and small ablations in place of the recipe's arctic-embed-m download:
  python tools/preprocess/make_tiny_encoder.py --corpus data/phase1/06_pii --out models/tiny_encoder
  python tools/preprocess/train_annotator.py encoder=models/tiny_encoder ...
"""
from __future__ import annotations

import os
import sys

# tools/preprocess/ holds select.py, which would shadow the stdlib module: drop this directory first.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import itertools  # noqa: E402

from megatron_snow import records  # noqa: E402
from megatron_snow.phase2.tiny_encoder import make_tiny_encoder  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", required=True, action="append", help="records dataset(s) to learn the vocabulary on")
    ap.add_argument("--out", required=True, help="output directory (Hugging Face format)")
    ap.add_argument("--max-docs", type=int, default=20000, help="documents read per corpus (default 20000)")
    ap.add_argument("--vocab-size", type=int, default=2000)
    ap.add_argument("--hidden-size", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--max-positions", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        texts = [r.content for c in args.corpus for r in itertools.islice(records.iter_records(c), args.max_docs)]
    except FileNotFoundError as e:
        print(f"make_tiny_encoder: error: {e}", file=sys.stderr)
        return 2
    if not texts:
        print("make_tiny_encoder: error: the corpus has no documents", file=sys.stderr)
        return 2
    out = make_tiny_encoder(texts, args.out, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                            num_layers=args.layers, num_heads=args.heads, max_positions=args.max_positions,
                            seed=args.seed)
    print(f"wrote {out}: BERT {args.layers} layers x {args.hidden_size}, {args.max_positions} positions, "
          f"WordPiece vocabulary learned on {len(texts):,} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())
