#!/usr/bin/env python
"""Phase-1 speed, side by side with a reference on the same input, in one run, as ratios.

  python bench/bench_phase1.py --files 800

Input: real Python standard-library files plus edited copies of a fifth of
them (so near dedup has clusters to find). One process, one thread: the
rates are documents per second per core.
  filtering       ours (StarCoder per-file rules). No installed library implements these
                  rules (datatrove 0.10.1's filters are web-text rules: C4, Gopher, FineWeb,
                  language, URL, ...; bigcode's scripts are not a library), so the rate is absolute.
  MinHash         ours (numpy, all 256 perms at once) vs datasketch MinHash.update_batch
  near dedup      ours (defaults: 42 bands x 6 rows, exact Jaccard check of candidates, union-find)
                  vs datasketch MinHash + MinHashLSH(threshold 0.7: its own 25 x 10) + union-find
bench/bench_near_dedup.py compares near dedup with datatrove and datasketch at equal settings.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import sysconfig  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megatron_snow.phase1 import clusters  # noqa: E402
from megatron_snow.phase1.filters import FilterThresholds, filter_reason  # noqa: E402
from megatron_snow.phase1.minhash import NearDedupConfig, ShingleHasher, signature  # noqa: E402

NON_ALNUM = re.compile(r"[^A-Za-z_0-9]")


def load_docs(n: int, seed: int = 0) -> list[str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and p.stat().st_size < 200_000)
    rng = random.Random(seed)
    texts = [p.read_text(errors="replace") for p in rng.sample(paths, min(n, len(paths)))]
    copies = []
    for t in texts[: len(texts) // 5]:
        lines = t.split("\n")
        copies.append("\n".join(line + "  # x" if rng.random() < 0.05 else line for line in lines))
    return texts + copies


def rate(fn, docs, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()  # CPU time: robust to other load on a shared machine
        fn(docs)
        best = min(best, time.process_time() - t0)
    return len(docs) / best


def ours_signatures(docs):
    h = ShingleHasher()
    return [signature(h.shingles(d, 5), 256, 42) for d in docs]


def ref_minhashes(docs):
    from datasketch import MinHash

    out = []
    for d in docs:
        toks = [t for t in NON_ALNUM.split(d) if t]
        shingles = {" ".join(toks[i:i + 5]).encode() for i in range(max(1, len(toks) - 4))}
        m = MinHash(num_perm=256, seed=42)
        m.update_batch(list(shingles))
        out.append(m)
    return out


def ours_near_dedup(docs) -> set[int]:
    return set(clusters.near_duplicates(docs, NearDedupConfig()))


def ref_near_dedup(docs) -> set[int]:
    from datasketch import MinHashLSH

    mhs = ref_minhashes(docs)
    lsh = MinHashLSH(threshold=0.7, num_perm=256)
    for i, m in enumerate(mhs):
        lsh.insert(i, m)
    edges = np.array([(min(i, j), max(i, j)) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i],
                     dtype=np.uint64).reshape(-1, 2)
    roots = clusters.union_find_roots(np.unique(edges, axis=0) if len(edges) else edges)
    return {k for k, r in roots.items() if k != r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=800, help="real stdlib files (plus 20%% edited copies)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N timings")
    args = ap.parse_args()
    docs = load_docs(args.files)
    mb = sum(len(d) for d in docs) / 1e6
    t = FilterThresholds()
    assert [filter_reason(d, "x.py", t) in (None, "auto_generated", "max_line_length", "avg_line_length",
                                             "alphanum_fraction", "empty", "minified", "xml") for d in docs]
    print(f"input: {len(docs)} documents, {mb:.1f} MB of Python (1 process, 1 thread, CPU time: docs/s = docs/s/core)")
    rows = []
    ours = rate(lambda ds: [filter_reason(d, "x.py", t) for d in ds], docs, args.repeat)
    rows.append(("filtering (StarCoder rules)", ours, "none exists (absolute)", None))
    ours = rate(ours_signatures, docs, args.repeat)
    ref = rate(ref_minhashes, docs, args.repeat)
    rows.append(("MinHash signatures (256 perms)", ours, "datasketch MinHash", ref))
    ours = rate(ours_near_dedup, docs, 1)
    ref = rate(ref_near_dedup, docs, 1)
    rows.append(("near dedup end to end", ours, "datasketch MinHashLSH", ref))
    print(f"{'task':34s} {'ours docs/s':>12s}  {'reference':24s} {'ref docs/s':>11s}  {'ours/ref':>8s}")
    for name, o, refname, r in rows:
        if r is None:
            print(f"{name:34s} {o:12.0f}  {refname:24s} {'-':>11s}  {'-':>8s}")
        else:
            print(f"{name:34s} {o:12.0f}  {refname:24s} {r:11.0f}  {o / r:7.2f}x")
    a, b = ours_near_dedup(docs), ref_near_dedup(docs)
    print(f"near dedup agreement: ours drops {len(a)}, datasketch drops {len(b)}, both {len(a & b)}"
          f" (planted edited copies: {len(docs) - args.files if len(docs) > args.files else 0})")


if __name__ == "__main__":
    main()
