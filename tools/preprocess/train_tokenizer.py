#!/usr/bin/env python
"""Train a SentencePiece BPE tokenizer for code on a seeded, byte-bounded sample of documents.

Examples:
  python tools/preprocess/train_tokenizer.py --input data/grouped --output tok/code64k.model
  python tools/preprocess/train_tokenizer.py --input corpus.jsonl --output tok/small.model vocab_size=8000 sample_bytes=200000000
"""
from __future__ import annotations

import os
import sys

# tools/preprocess/ holds select.py, which would shadow the stdlib module of that name for
# every import in this process (multiprocessing -> socket -> selectors -> select): drop the
# script directory from sys.path before importing anything else.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402

from megatron_snow.config import ConfigError, load_config  # noqa: E402
from megatron_snow.tokenization.inputs import InputError  # noqa: E402
from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML file of TrainTokenizerConfig fields")
    ap.add_argument("--input", action="append", help="records directory or JSONL file (repeatable)")
    ap.add_argument("--output", help="path of the .model to write (.vocab and .json report beside it)")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. vocab_size=32000 seed=7")
    args = ap.parse_args(argv)
    overrides = list(args.overrides)
    if args.input:
        overrides.append(f"inputs={json.dumps(args.input)}")
    if args.output:
        overrides.append(f"output={json.dumps(args.output)}")
    try:
        cfg = load_config(TrainTokenizerConfig, args.config, overrides)
        report = train_tokenizer(cfg)
    except (ConfigError, InputError, ValueError, FileNotFoundError) as e:
        print(f"train_tokenizer: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {report['model']}: vocab {report['vocab_size']}, sample {report['sample_documents']:,} documents "
          f"/ {report['sample_bytes']:,} bytes, sha256 {report['sha256'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
