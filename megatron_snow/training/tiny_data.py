"""A small byte-level indexed dataset from local source files, for the tiny
example and smoke runs: every byte is a token (ids 0-255), 256 ends a document.
No tokenizer needed; the model's vocabulary is 257.

    python -m megatron_snow.training.tiny_data --out examples/tiny/work/data/code [SRC_DIR ...]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from megatron_snow.indexed import write_indexed_dataset

BYTE_VOCAB = 257
BYTE_EOD = 256


def byte_documents(roots: list[str | Path], suffixes=(".py", ".md", ".yaml", ".sh")):
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and path.suffix in suffixes and ".git" not in path.parts:
                data = path.read_bytes()
                if data:
                    yield list(data) + [BYTE_EOD]


def build_byte_dataset(out_prefix: str | Path, roots: list[str | Path]) -> int:
    """Write every matching file under ``roots`` as one document; returns the count."""
    return write_indexed_dataset(out_prefix, byte_documents(roots), BYTE_VOCAB)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output prefix (writes PREFIX.bin / PREFIX.idx)")
    ap.add_argument("roots", nargs="*", default=[str(Path(__file__).resolve().parents[2])],
                    help="source directories (default: this repository)")
    a = ap.parse_args(argv)
    n = build_byte_dataset(a.out, a.roots)
    print(f"wrote {n} documents to {a.out}.bin/.idx (vocab {BYTE_VOCAB}, eod {BYTE_EOD})")


if __name__ == "__main__":
    main()
