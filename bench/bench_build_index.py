#!/usr/bin/env python
"""build_index beside Megatron-LM's tools/preprocess_data.py and the tokenizer's own batch encoding.

Same input (a JSONL file of real source code found on this machine), same
SentencePiece model (trained here by train-tokenizer, unless ``--tokenizer``),
same number of worker processes, one run, alternating ``--repeats`` times:

- ``ceiling``: ``CodeTokenizer.encode_batch`` over all documents already in
  memory with as many threads as workers; and ``one_thread_x_workers``: the
  one-thread rate times the workers, the bound for any indexer on those cores
  (SentencePiece's own threads scale worse than processes);
- ``build_index``: end to end (read JSONL, tokenize, write partial indexes,
  merge, sidecar, stats), in this process (import time excluded);
- ``megatron``: Megatron-LM's ``tools/preprocess_data.py --append-eod``
  (``--megatron-lm PATH``), timed from its "Time to startup" line to its exit
  (import time excluded). The megatron-core wheel does not ship it; get it with
  ``git clone --branch core_v0.16.1 https://github.com/NVIDIA/Megatron-LM``.
  Its imports pull in ``megatron.training``, which needs ``triton`` (``pip install
  triton``, or ``pip install --target DIR triton`` and ``--megatron-pythonpath DIR``).

Reported per worker count: the best tokens/s of each, build_index / megatron
(goal >= 3) and build_index / ceiling; and whether the two indexes hold the
same documents. Tokens counted without the appended EOD ids.

  python bench/bench_build_index.py --megatron-lm ~/Megatron-LM --workers 1,2 --mb 50 --repeats 3
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import numpy as np

from megatron_snow.tokenization import load_tokenizer
from megatron_snow.tokenization.build_index import BuildIndexConfig, build_index
from megatron_snow.tokenization.train import TrainTokenizerConfig, train_tokenizer


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


def make_jsonl(path: Path, mb: int) -> None:
    """About ``mb`` MB of real code as JSONL ``{"id", "text", "language"}`` (files repeated as needed)."""
    if path.is_file():
        return
    files = local_code()
    path.parent.mkdir(parents=True, exist_ok=True)
    total, k = 0, 0
    with open(path.with_suffix(".tmp"), "w", encoding="utf-8") as f:
        while total < mb * 1e6:
            p, lang, text = files[k % len(files)]
            f.write(json.dumps({"id": f"{k}:{p}", "text": text, "language": lang}) + "\n")
            total += len(text.encode("utf-8"))
            k += 1
    os.replace(path.with_suffix(".tmp"), path)


def run_megatron(checkout: Path, extra_path: str, jsonl: Path, model: str, prefix: Path, workers: int) -> float:
    """Seconds from Megatron-LM's "Time to startup" line to its exit (its processing and writing)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(checkout), extra_path) if p)}
    cmd = [sys.executable, str(checkout / "tools" / "preprocess_data.py"), "--input", str(jsonl),
           "--output-prefix", str(prefix), "--tokenizer-type", "SentencePieceTokenizer", "--tokenizer-model", model,
           "--append-eod", "--workers", str(workers), "--log-interval", str(10**9)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = None
    tail = []
    for line in proc.stdout:
        tail = (tail + [line])[-20:]
        if start is None and line.startswith("Time to startup"):
            start = time.perf_counter()
    proc.wait()
    if proc.returncode != 0 or start is None:
        raise SystemExit("Megatron-LM's preprocess_data.py failed:\n" + "".join(tail))
    return time.perf_counter() - start


def same_documents(ours: Path, theirs: Path) -> tuple[int, int]:
    """(documents with identical token ids, documents) of two indexes."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    a, b = IndexedDataset(str(ours)), IndexedDataset(str(theirs))
    if len(a) != len(b):
        return 0, max(len(a), len(b))
    return sum(np.array_equal(a[i], b[i]) for i in range(len(a))), len(a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts (default 1,2)")
    ap.add_argument("--mb", type=int, default=20, help="input size in MB of code")
    ap.add_argument("--tokenizer", help="SentencePiece model (default: train one with train-tokenizer)")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--megatron-lm", type=Path, help="a Megatron-LM checkout at core_v0.16.1")
    ap.add_argument("--megatron-pythonpath", default="", help="extra PYTHONPATH for Megatron-LM (e.g. where triton is)")
    ap.add_argument("--workdir", default="/tmp/bench_build_index")
    args = ap.parse_args()

    work = Path(args.workdir)
    jsonl = work / f"code-{args.mb}mb.jsonl"
    make_jsonl(jsonl, args.mb)
    model = args.tokenizer
    if not model:
        model = str(work / f"code{args.vocab_size}.model")
        if not Path(model).is_file():
            train_tokenizer(TrainTokenizerConfig(inputs=[str(jsonl)], output=model, vocab_size=args.vocab_size,
                                                 sample_bytes=20_000_000, num_threads=2))
    tok = load_tokenizer(model)
    texts = [json.loads(line)["text"] for line in open(jsonl, encoding="utf-8")]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    print(f"input: {len(texts):,} documents, {nbytes / 1e6:.1f} MB; {tok}; Megatron-LM: "
          f"{args.megatron_lm or 'not given (--megatron-lm PATH)'}", flush=True)
    import megatron.core.datasets.indexed_dataset  # noqa: F401  (a one-off import, not throughput)

    results = []
    per_core = 0.0  # encode_batch on one thread: x workers is the most any indexer on that many cores reaches
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        n = sum(map(len, tok.encode_batch(texts, num_threads=1)))
        per_core = max(per_core, n / (time.perf_counter() - t0))
    for workers in [int(w) for w in args.workers.split(",")]:
        best: dict[str, float] = {}
        agree = None
        for rep in range(args.repeats):
            t0 = time.perf_counter()
            ids = tok.encode_batch(texts, num_threads=workers)
            dt = time.perf_counter() - t0
            tokens = sum(map(len, ids))
            del ids
            best["ceiling"] = max(best.get("ceiling", 0), tokens / dt)

            out = work / "ours" / "index"
            shutil.rmtree(out.parent, ignore_errors=True)
            t0 = time.perf_counter()
            stats = build_index(BuildIndexConfig(inputs=[str(jsonl)], tokenizer=model, output_prefix=str(out),
                                                 workers=workers, progress=False), log=lambda *_: None)
            dt_ours = time.perf_counter() - t0
            assert stats["tokens"] - stats["documents"] == tokens, (stats["tokens"], tokens)
            best["build_index"] = max(best.get("build_index", 0), tokens / dt_ours)
            line = (f"workers {workers} repeat {rep}: ceiling {tokens / dt:,.0f} tok/s, build_index "
                    f"{tokens / dt_ours:,.0f} tok/s ({dt_ours:.1f} s)")
            if args.megatron_lm:
                theirs = work / "megatron" / "index"
                shutil.rmtree(theirs.parent, ignore_errors=True)
                theirs.parent.mkdir(parents=True)
                dt_m = run_megatron(args.megatron_lm, args.megatron_pythonpath, jsonl, model, theirs, workers)
                best["megatron"] = max(best.get("megatron", 0), tokens / dt_m)
                line += f", megatron {tokens / dt_m:,.0f} tok/s ({dt_m:.1f} s)"
                agree = same_documents(out, Path(f"{theirs}_text_document"))
            print(line, flush=True)
        r = {"workers": workers, "documents": len(texts), "mbytes": round(nbytes / 1e6, 1), "tokens": tokens,
             "vocab_size": tok.vocab_size, "repeats": args.repeats,
             **{f"{k}_tok_s": round(v) for k, v in best.items()},
             "build_index_vs_ceiling": round(best["build_index"] / best["ceiling"], 3),
             "one_thread_x_workers_tok_s": round(per_core * workers),
             "build_index_vs_one_thread_x_workers": round(best["build_index"] / (per_core * workers), 3)}
        if "megatron" in best:
            r["build_index_vs_megatron"] = round(best["build_index"] / best["megatron"], 3)
            r["ceiling_vs_megatron"] = round(best["ceiling"] / best["megatron"], 3)
            r["bound_vs_megatron"] = round(per_core * workers / best["megatron"], 3)  # no indexer beats this ratio
            r["identical_documents"] = f"{agree[0]}/{agree[1]}"
            r["goal_vs_megatron"] = 3.0
        results.append(r)
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
