#!/usr/bin/env python
"""Documents per second of the annotator's scorer vs a plain transformers text-classification pipeline.

Same model, same documents, same run. Two references:
- "pipeline, same windows": the pipeline scores exactly the windows our scorer
  scores (top/middle/bottom of each long document, as text), and the window
  scores are averaged per document: the same work and the same result;
- "pipeline, truncated": the pipeline's usual use, one truncated window per
  document (a third of the work on long documents; shown for scale).

Documents are real local files (the Python standard library, /usr/include).
Without --model, a random-init BERT of the given size with a WordPiece
vocabulary trained on the documents is built in a temporary directory.

  python bench/bench_annotate.py --docs 200 --layers 4 --hidden 256
  python bench/bench_annotate.py --docs 200 --max-chars 4000     # mixed lengths: padding matters
  python bench/bench_annotate.py --model models/annotator --docs 2000 --batch-size 128   # on a GPU
"""
from __future__ import annotations

import argparse
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def local_documents(n: int, max_chars: int = 0, seed: int = 0) -> list[str]:
    """Real files; with ``max_chars``, a random-length head (100..max_chars characters) of each."""
    rng = np.random.default_rng(seed)
    paths = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")) + sorted(Path("/usr/include").glob("*.h"))
    docs = []
    for p in paths[:: max(1, len(paths) // n)]:
        try:
            t = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if max_chars:
            t = t[: int(rng.integers(100, max_chars + 1))]
        if t.strip():
            docs.append(t)
    return docs[:n]


def build_random_annotator(docs: list[str], out: Path, layers: int, hidden: int, positions: int) -> Path:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(docs, trainers.WordPieceTrainer(vocab_size=8000, special_tokens=[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    BertTokenizerFast(tokenizer_object=tok, do_lower_case=False, model_max_length=positions, unk_token="[UNK]",
                      pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]").save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=hidden, num_hidden_layers=layers,
                     num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden,
                     max_position_embeddings=positions, num_labels=1,
                     # wider than BERT's 0.02, so that scores spread and score comparisons have teeth
                     initializer_range=0.08, problem_type="multi_label_classification",
                     id2label={0: "high_quality"}, label2id={"high_quality": 0})
    BertForSequenceClassification(cfg).save_pretrained(out)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="annotator directory (default: a random-init BERT built here)")
    p.add_argument("--docs", type=int, default=200)
    p.add_argument("--max-chars", type=int, default=0,
                   help="cut each file to a random length up to this (mixed short and long documents)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--positions", type=int, default=512)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timed passes of each (best is reported)")
    p.add_argument("--compare-cpu", type=int, default=0,
                   help="also score the first N documents on the CPU in fp32 and print the largest difference")
    args = p.parse_args()

    from transformers import pipeline

    from megatron_snow.phase2.scoring import Scorer

    docs = local_documents(args.docs, args.max_chars)
    tmp = tempfile.TemporaryDirectory()
    model = args.model or str(build_random_annotator(docs, Path(tmp.name), args.layers, args.hidden, args.positions))
    scorer = Scorer(model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                    max_length=args.positions)
    device = scorer.device
    n_windows = sum(len(w) for w in scorer.windows(docs))
    print(f"device={device} dtype={scorer.dtype} docs={len(docs)} windows={n_windows} "
          f"window={scorer.window} tokens batch={args.batch_size} torch_threads={torch.get_num_threads()}")

    # The pipeline in bf16 on GPU too, so that only the code around the model differs.
    pipe = pipeline("text-classification", model=model, device=device, dtype=scorer.dtype)
    window_texts = [[scorer.tokenizer.decode(w) for w in ws] for ws in scorer.windows(docs)]
    flat = [t for ws in window_texts for t in ws]

    def ours():
        return [r.score for r in scorer.score_texts(docs)]

    def pipe_same_windows():
        out = pipe(flat, batch_size=args.batch_size, truncation=True, max_length=args.positions)
        s, k = [], 0
        for ws in window_texts:
            s.append(float(np.mean([o["score"] for o in out[k : k + len(ws)]])))
            k += len(ws)
        return s

    def pipe_truncated():
        return [o["score"] for o in pipe(docs, batch_size=args.batch_size, truncation=True, max_length=args.positions)]

    def timed(fn):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, result

    scorer.score_texts(docs[:4])  # warm-up outside the timing
    pipe(docs[:4], truncation=True, max_length=args.positions)
    # Interleaved repeats, best of each: a shared machine's load hits all three alike.
    times: dict[str, list[float]] = {"ours": [], "same": [], "trunc": []}
    for _ in range(args.repeats):
        t, s_ours = timed(ours)
        times["ours"].append(t)
        t, s_same = timed(pipe_same_windows)
        times["same"].append(t)
        t, _ = timed(pipe_truncated)
        times["trunc"].append(t)
    t_ours, t_same, t_trunc = (min(times[k]) for k in ("ours", "same", "trunc"))
    n = len(docs)
    print(f"{'method':32s} {'seconds':>9s} {'docs/s':>9s} {'ratio (ours / it)':>18s}")
    print(f"{'annotate scorer (3 windows)':32s} {t_ours:9.2f} {n / t_ours:9.1f} {'1.00':>18s}")
    print(f"{'pipeline, same windows':32s} {t_same:9.2f} {n / t_same:9.1f} {t_same / t_ours:18.2f}")
    print(f"{'pipeline, truncated (1 window)':32s} {t_trunc:9.2f} {n / t_trunc:9.1f} {t_trunc / t_ours:18.2f}")
    diff = np.abs(np.array(s_ours) - np.array(s_same))
    print(f"score agreement with the same-window pipeline: max |diff| = {diff.max():.2e} (bf16 on GPU: ~1e-2)")
    if args.compare_cpu:
        cpu = Scorer(model, device="cpu", dtype="float32", batch_size=args.batch_size, max_length=args.positions)
        k = min(args.compare_cpu, n)
        ref = np.array([r.score for r in cpu.score_texts(docs[:k])])
        d = np.abs(np.array(s_ours[:k]) - ref)
        print(f"{device} {scorer.dtype} vs cpu float32 on {k} documents: max |diff| = {d.max():.2e}, "
              f"mean {d.mean():.2e}, score std {ref.std():.3g}")


if __name__ == "__main__":
    main()
