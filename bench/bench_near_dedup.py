#!/usr/bin/env python
"""Near dedup beside datatrove's MinHash dedup and datasketch: same corpus, same settings, one core each, one run.

  python bench/bench_near_dedup.py --docs 3000 --pairs 400

Corpus: real code nobody here wrote (Python files of the standard library and of installed
packages, C headers from /usr/include), plus planted pairs: a standard-library module and an
edited copy of it (identifiers replaced at random) whose true 5-gram shingle Jaccard spreads
over 0.3-1.0. All three tools use 5-gram shingles of the same code tokens ([A-Za-z_0-9]+;
datatrove first applies its own text normalisation, as it always does), 252 permutations in
42 bands x 6 rows (our default for threshold 0.7). Each runs end to end in this process:
  ours        megatron_snow.phase1.clusters.near_duplicates: shingles, signatures, band buckets,
              exact Jaccard check of candidate pairs, union-find (what the near_dedup stage runs)
  datatrove   MinhashDedupSignature -> MinhashDedupBuckets (42 tasks) -> MinhashDedupCluster ->
              MinhashDedupFilter, on local folders; a shared band is a duplicate (its design)
  datasketch  MinHash.update_batch + MinHashLSH(params=(42, 6)) insert + query, union-find
Rates are documents per CPU-second of this one process (= per core). "Recall" is the share of
planted pairs of true Jaccard >= 0.7 that end in one cluster; "false" the share of planted pairs
below 0.6 that do; "justified" the share of removed files with true Jaccard >= 0.7 to another
member of their cluster.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sysconfig  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import xxhash  # noqa: E402

from megatron_snow.phase1 import clusters  # noqa: E402
from megatron_snow.phase1.minhash import NearDedupConfig, ShingleHasher, exact_jaccard, lsh_params  # noqa: E402

TOKEN = re.compile(r"[A-Za-z_0-9]+")
SKIP_DIRS = {"encodings", "test", "tests", "idle_test"}


def real_code(n: int, seed: int = 0) -> list[str]:
    """n files: stdlib and site-packages Python, /usr/include headers (1 KB - 200 KB each)."""
    paths = [p for root in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
             for p in Path(root).rglob("*.py")]
    paths += list(Path("/usr/include").rglob("*.h"))
    paths = sorted({p for p in paths if p.is_file() and 1_000 < p.stat().st_size < 200_000})
    return [p.read_text(errors="replace") for p in random.Random(seed).sample(paths, min(n, len(paths)))]


def planted_pairs(n: int, exclude: set[str], seed: int = 1) -> list[tuple[str, str, float]]:
    """(module, edited copy, true Jaccard) for n stdlib modules not in ``exclude``, J spread over 0.3-1.0."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    paths = sorted(p for p in stdlib.rglob("*.py") if not (SKIP_DIRS | {"site-packages"}) & set(p.parts)
                   and 3_000 < p.stat().st_size < 60_000)
    rng, h = random.Random(seed), ShingleHasher()
    texts = [t for t in (p.read_text(errors="replace") for p in rng.sample(paths, min(len(paths), 2 * n)))
             if t not in exclude]
    related = clusters.near_duplicates(texts, NearDedupConfig(threshold=0.3))  # bases unlike each other
    texts = [t for i, t in enumerate(texts) if i not in related and i not in set(related.values())][:n]
    out = []
    for t in texts:
        j = rng.uniform(0.3, 1.0)
        frac = 1 - (2 * j / (1 + j)) ** 0.2
        e = TOKEN.sub(lambda m, frac=frac: f"zq{rng.getrandbits(40):x}" if rng.random() < frac else m.group(0), t)
        out.append((t, e, exact_jaccard(h.shingles(t, 5), h.shingles(e, 5))))
    return out


# -- the three tools: each returns cluster id per document (its own id when alone) -------------------

def run_ours(docs: list[str], cfg: NearDedupConfig) -> list[int]:
    drop = clusters.near_duplicates(docs, cfg)
    return [drop.get(i, i) for i in range(len(docs))]


def run_datasketch(docs: list[str], cfg: NearDedupConfig) -> list[int]:
    from datasketch import MinHash, MinHashLSH

    b, r = lsh_params(cfg)
    lsh = MinHashLSH(num_perm=cfg.num_perm, params=(b, r))
    mhs = []
    for i, d in enumerate(docs):
        toks = TOKEN.findall(d)
        sh = {" ".join(toks[k:k + cfg.ngram]).encode() for k in range(max(1, len(toks) - cfg.ngram + 1))}
        m = MinHash(num_perm=cfg.num_perm, seed=cfg.seed)
        m.update_batch(list(sh))
        lsh.insert(i, m)
        mhs.append(m)
    edges = {(min(i, j), max(i, j)) for i, m in enumerate(mhs) for j in lsh.query(m) if j != i}
    roots = clusters.union_find_roots(np.array(sorted(edges), dtype=np.uint64).reshape(-1, 2))
    return [roots.get(i, i) for i in range(len(docs))]


def run_datatrove(docs: list[str], cfg: NearDedupConfig, work: Path) -> list[int]:
    from datatrove.data import Document
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature,
    )
    from datatrove.utils.word_tokenizers import WordTokenizer

    class CodeTokens(WordTokenizer):  # the same code tokens as ours (its English tokenizers need spaCy/NLTK)
        def word_tokenize(self, text: str) -> list[str]:
            return TOKEN.findall(text)

        def sent_tokenize(self, text: str) -> list[str]:
            return [text]

        def span_tokenize(self, text: str) -> list[tuple[int, int]]:
            return [(0, len(text))]

    b, r = lsh_params(cfg)
    mc = MinhashConfig(n_grams=cfg.ngram, num_buckets=b, hashes_per_bucket=r, seed=cfg.seed)
    sig, buckets, clus = work / "sigs", work / "buckets", work / "clusters"
    stage1 = MinhashDedupSignature(output_folder=str(sig), config=mc, language=CodeTokens())
    if int(xxhash.VERSION.split(".")[0]) >= 4:  # xxhash 4 takes bytes only; datatrove 0.10.1 passes str
        stage1._hash_func = lambda s: xxhash.xxh64_intdigest(s.encode())
    list(stage1.run((Document(text=d, id=str(i)) for i, d in enumerate(docs)), rank=0, world_size=1) or [])
    stage2 = MinhashDedupBuckets(input_folder=str(sig), output_folder=str(buckets), config=mc)
    for rank in range(b):  # one task per band, as datatrove requires; run one after another on this core
        stage2.run(rank=rank, world_size=b)
    MinhashDedupCluster(input_folder=str(buckets), output_folder=str(clus), config=mc, save_cluster_id=True).run()
    stage4 = MinhashDedupFilter(input_folder=str(clus), load_cluster_ids=True)
    cluster_of = list(range(len(docs)))
    first: dict[int, int] = {}
    kept = 0
    for doc in stage4.run((Document(text=d, id=str(i)) for i, d in enumerate(docs)), rank=0, world_size=1):
        kept += 1
        c = doc.metadata.get("minhash_cluster_id", -1)
        if c >= 0:
            first.setdefault(c, int(doc.id))
            cluster_of[int(doc.id)] = first[c]
    # removed documents: datatrove does not yield them; read their cluster ids from its .clusters file
    raw = np.fromfile(clus / "000000.clusters", dtype="<u4").reshape(-1, 2) if (clus / "000000.clusters").exists() \
        else np.empty((0, 2), np.uint32)
    by_cluster: dict[int, list[int]] = {}
    for doc_i, c in raw.tolist():
        by_cluster.setdefault(c, []).append(doc_i)
    for members in by_cluster.values():
        root = min(members)
        for m in members:
            cluster_of[m] = root
    assert kept == len(docs) - sum(len(m) - 1 for m in by_cluster.values())
    return cluster_of


def evaluate(cluster_of: list[int], docs: list[str], pairs_at: list[tuple[int, int, float]], shingles) -> dict:
    def same(a, b):
        return cluster_of[a] == cluster_of[b]

    hi = [(a, b) for a, b, j in pairs_at if j >= 0.7]
    lo = [(a, b) for a, b, j in pairs_at if j < 0.6]
    members: dict[int, list[int]] = {}
    for i, c in enumerate(cluster_of):
        members.setdefault(c, []).append(i)
    removed = justified = 0
    for ms in members.values():
        for m in ms[1:]:  # one member of each cluster is kept
            removed += 1
            justified += max(exact_jaccard(shingles(m), shingles(o)) for o in ms if o != m) >= 0.7
    return {"recall": sum(same(a, b) for a, b in hi) / max(1, len(hi)),
            "false": sum(same(a, b) for a, b in lo) / max(1, len(lo)),
            "removed": removed, "justified": justified / max(1, removed)}


def timed(fn):
    t0 = time.process_time()  # CPU time of this process: robust to other load on a shared machine
    out = fn()
    return out, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=3000, help="real code files")
    ap.add_argument("--pairs", type=int, default=400, help="planted (module, edited copy) pairs")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--skip", nargs="*", default=[], choices=["datatrove", "datasketch"], help="tools to leave out")
    args = ap.parse_args()

    if "datatrove" not in args.skip:
        from datatrove.utils.logging import logger
        logger.remove()  # datatrove logs every step at INFO

    real = real_code(args.docs)
    planted = planted_pairs(args.pairs, set(real))
    docs = real + [t for a, b, _ in planted for t in (a, b)]
    pairs_at = [(len(real) + 2 * k, len(real) + 2 * k + 1, j) for k, (_, _, j) in enumerate(planted)]
    cfg = NearDedupConfig(num_perm=252, threshold=args.threshold)  # 42 x 6 uses 252 permutations
    b, r = lsh_params(cfg)
    mb = sum(len(d.encode()) for d in docs) / 1e6
    js = np.array([j for _, _, j in planted])
    print(f"corpus: {len(real)} real files + {len(planted)} planted pairs ({(js >= 0.7).sum()} with J >= 0.7, "
          f"{(js < 0.6).sum()} below 0.6) = {len(docs)} documents, {mb:.1f} MB")
    print(f"settings: {cfg.ngram}-gram shingles, {cfg.num_perm} permutations, {b} bands x {r} rows, "
          f"threshold {cfg.threshold}; one process, one thread, CPU seconds")
    h = ShingleHasher()
    cache: dict[int, np.ndarray] = {}

    def shingles(i):
        if i not in cache:
            cache[i] = h.shingles(docs[i], cfg.ngram)
        return cache[i]

    rows = []
    res, sec = timed(lambda: run_ours(docs, cfg))
    rows.append(("ours (exact check)", len(docs) / sec, evaluate(res, docs, pairs_at, shingles)))
    if "datatrove" not in args.skip:
        with tempfile.TemporaryDirectory(prefix="bench_dt_") as d:
            res, sec = timed(lambda: run_datatrove(docs, cfg, Path(d)))
        rows.append(("datatrove 4 stages", len(docs) / sec, evaluate(res, docs, pairs_at, shingles)))
    if "datasketch" not in args.skip:
        res, sec = timed(lambda: run_datasketch(docs, cfg))
        rows.append(("datasketch MinHashLSH", len(docs) / sec, evaluate(res, docs, pairs_at, shingles)))
    ours = rows[0][1]
    print(f"{'tool':24s} {'docs/s/core':>11s} {'ours/tool':>9s} {'recall J>=0.7':>13s} {'pairs J<0.6 merged':>18s}"
          f" {'removed':>8s} {'justified':>9s}")
    for name, rate, m in rows:
        print(f"{name:24s} {rate:11.0f} {ours / rate:8.2f}x {m['recall']:13.3f} {m['false']:18.3f}"
              f" {m['removed']:8d} {m['justified']:9.3f}")


if __name__ == "__main__":
    main()
