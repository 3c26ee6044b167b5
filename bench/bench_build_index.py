#!/usr/bin/env python
"""Tokens per second of build_index against the tokenizer's own batch encoding, same cores, same input, one run.

The reference is the practical limit: ``CodeTokenizer.encode_batch`` over all
documents already in memory, with as many threads as build_index has worker
processes. build_index is timed end to end (read gzip JSONL, tokenize, write
partial indexes, merge, sidecar, stats). The two are run alternately
``--repeats`` times. Reported: the best wall-clock rate of each, the median of
the per-repeat ratios, and the ratio of tokens per CPU-second (robust to other
load on a shared machine). Goal: ratio >= 0.8.

  python bench/bench_build_index.py --workers 2 --mb 12 --repeats 5
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from megatron_snow.records import CodeRecord, ShardedWriter, iter_records  # noqa: E402
from megatron_snow.tokenization import load_tokenizer  # noqa: E402
from megatron_snow.tokenization.build_index import BuildIndexConfig, build_index  # noqa: E402
from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer  # noqa: E402


def local_code() -> list[tuple[str, str, str]]:
    """(path, language, text) of real source files on this machine."""
    import torch

    found = []
    sources = [
        (glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "**", "*.py"), recursive=True), "python"),
        (glob.glob(os.path.join(sysconfig.get_paths()["include"], "**", "*.h"), recursive=True), "c"),
        (glob.glob(str(Path(torch.__file__).parent / "include" / "**" / "*.h"), recursive=True), "c++"),
        (glob.glob("/usr/include/**/*.h", recursive=True), "c"),
    ]
    for paths, lang in sources:
        for p in sorted(paths):
            try:
                text = Path(p).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if text:
                found.append((p, lang, text))
    return found


def make_corpus(directory: Path, mb: int) -> None:
    """A records dataset of about ``mb`` MB of real code (files repeated as needed)."""
    if (directory / "manifest.json").is_file():
        return
    files = local_code()
    w = ShardedWriter(directory, records_per_shard=100)
    total, k = 0, 0
    while total < mb * 1e6:
        path, lang, text = files[k % len(files)]
        w.add(CodeRecord(id=f"{k}:{path}", content=text, language=lang, path=path))
        total += len(text.encode("utf-8"))
        k += 1
    w.close()


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (build_index's workers are reaped before it returns)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="build_index workers = reference threads")
    ap.add_argument("--mb", type=int, default=12, help="corpus size in MB of code")
    ap.add_argument("--tokenizer", help="tokenizer to use (default: train a SentencePiece model on the corpus)")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workdir", default="/tmp/bench_build_index")
    args = ap.parse_args()

    work = Path(args.workdir)
    corpus = work / f"corpus-{args.mb}mb"
    make_corpus(corpus, args.mb)
    tok_path = args.tokenizer
    if not tok_path:
        tok_path = str(work / f"code{args.vocab_size}.model")
        if not Path(tok_path).is_file():
            train_tokenizer(TrainTokenizerConfig(inputs=[str(corpus)], output=tok_path, vocab_size=args.vocab_size,
                                                 sample_bytes=20_000_000, num_threads=2))
    tok = load_tokenizer(tok_path)
    texts = [r.content for r in iter_records(corpus)]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"corpus: {len(texts):,} documents, {nbytes / 1e6:.1f} MB; {tok}; workers/threads: {args.workers}", flush=True)

    import megatron.core.datasets.indexed_dataset  # noqa: F401  (a one-off import, not throughput)

    pairs = []  # (reference tok/s, build_index tok/s, reference tok/cpu-s, build_index tok/cpu-s)
    for rep in range(args.repeats):
        c0, t0 = cpu_seconds(), time.perf_counter()
        ids = tok.encode_batch(texts, num_threads=args.workers)
        dt, dc = time.perf_counter() - t0, cpu_seconds() - c0
        ref_tokens = sum(map(len, ids))
        del ids

        out = work / "index" / "bench"
        shutil.rmtree(out.parent, ignore_errors=True)
        c0, t0 = cpu_seconds(), time.perf_counter()
        stats = build_index(BuildIndexConfig(inputs=[str(corpus)], tokenizer=tok_path, output_prefix=str(out),
                                             workers=args.workers, progress=False))
        dt_idx, dc_idx = time.perf_counter() - t0, cpu_seconds() - c0
        idx_tokens = stats["tokens"] - stats["documents"]  # without the appended EOD ids
        assert idx_tokens == ref_tokens, (idx_tokens, ref_tokens)
        pairs.append((ref_tokens / dt, idx_tokens / dt_idx, ref_tokens / dc, idx_tokens / dc_idx))
        print(f"repeat {rep}: encode_batch {ref_tokens / dt:,.0f} tok/s ({dt:.1f} s wall, {dc:.1f} s cpu), "
              f"build_index {idx_tokens / dt_idx:,.0f} tok/s ({dt_idx:.1f} s wall, {dc_idx:.1f} s cpu)", flush=True)

    ref_best, idx_best = max(p[0] for p in pairs), max(p[1] for p in pairs)
    result = {"workers": args.workers, "documents": len(texts), "mbytes": round(nbytes / 1e6, 1),
              "tokens": ref_tokens, "vocab_size": tok.vocab_size, "repeats": args.repeats,
              "encode_batch_tok_s_best": round(ref_best), "build_index_tok_s_best": round(idx_best),
              "ratio_best_wall": round(idx_best / ref_best, 3),
              "ratio_median_paired_wall": round(statistics.median(p[1] / p[0] for p in pairs), 3),
              "ratio_median_cpu": round(statistics.median(p[3] / p[2] for p in pairs), 3),
              "goal": 0.8}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
