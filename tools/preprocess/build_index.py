#!/usr/bin/env python
"""Tokenize documents into a Megatron indexed dataset (PREFIX.bin/.idx + sidecar), or verify one.

Examples:
  python tools/preprocess/build_index.py --input data/grouped --tokenizer tok/code64k.model \\
      --output-prefix data/index/phase1 --workers 8
  mpiexec -n 4 python tools/preprocess/build_index.py --config build.yaml workers=8
  python tools/preprocess/build_index.py --verify data/index/phase1
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
from megatron_snow.tokenization.build_index import BuildIndexConfig, IndexBuildError, build_index, verify_index  # noqa: E402
from megatron_snow.tokenization.inputs import InputError  # noqa: E402
from megatron_snow.tokenization.tokenizer import TokenizerError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML file of BuildIndexConfig fields")
    ap.add_argument("--input", action="append", help="records directory or JSONL file (repeatable)")
    ap.add_argument("--tokenizer", help="SentencePiece .model or Hugging Face tokenizer.json")
    ap.add_argument("--output-prefix", help="writes PREFIX.bin, .idx, .docs.jsonl.gz, .stats.json, .funnel.json")
    ap.add_argument("--workers", type=int, help="worker processes per MPI rank (default 1)")
    ap.add_argument("--dtype", choices=["auto", "uint16", "int32"], help="token dtype (default auto)")
    ap.add_argument("--verify", metavar="PREFIX", help="check an existing index instead of building one")
    ap.add_argument("--sample", type=int, default=16, help="with --verify: documents decoded and compared to source")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of BuildIndexConfig fields")
    args = ap.parse_args(argv)

    try:
        if args.verify:
            report = verify_index(args.verify, tokenizer=args.tokenizer, sample=args.sample)
            print(json.dumps(report, indent=1, default=str))
            print("verify: OK" if report["ok"] else f"verify: FAILED ({len(report['errors'])} problems)")
            return 0 if report["ok"] else 1
        overrides = list(args.overrides)
        if args.input:
            overrides.append(f"inputs={json.dumps(args.input)}")
        for key, val in (("tokenizer", args.tokenizer), ("output_prefix", args.output_prefix),
                         ("workers", args.workers), ("dtype", args.dtype)):
            if val is not None:
                overrides.append(f"{key}={json.dumps(val)}")
        cfg = load_config(BuildIndexConfig, args.config, overrides)
        stats = build_index(cfg)
    except (ConfigError, IndexBuildError, InputError, TokenizerError, FileNotFoundError) as e:
        from megatron_snow.dist import get_comm

        get_comm().fail(f"build_index: error: {e}")  # under MPI: ends every rank
    print(f"{cfg.output_prefix}: {stats['documents']:,} documents, {stats['tokens']:,} tokens ({stats['dtype']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
