"""One command line for every step: ``python -m megatron_snow STEP [--config FILE] [key=value ...]``.

Each step is a library function ``main(argv) -> int`` (exit code: 0 done, 1 failure,
2 bad input); the scripts under ``tools/`` are thin wrappers over the same
functions. Steps are listed in the recipe's order.
"""
from __future__ import annotations

import importlib
import sys

# name -> ("module:function", one-line help). Add a step with one line here.
STEPS: dict[str, tuple[str, str]] = {
    "fetch-benchmarks": ("megatron_snow.benchmarks_fetch:main", "download the full benchmark sets (online)"),
    "phase1": ("megatron_snow.phase1.cli:main", "phase-1 data: ingest, filter, dedup, decontaminate, PII, group"),
    "train-tokenizer": ("megatron_snow.tokenization.train:main", "SentencePiece BPE tokenizer for code"),
    "build-index": ("megatron_snow.tokenization.build_index:main", "documents -> Megatron .bin/.idx (+ --verify)"),
    "make-tiny-encoder": ("megatron_snow.phase2.tiny_encoder:main", "a small random-init BERT for offline runs"),
    "train-annotator": ("megatron_snow.phase2.annotator:main", "phase-2 quality annotator (encoder + head)"),
    "annotate": ("megatron_snow.phase2.scoring:main", "score every document with the annotator"),
    "alignment": ("megatron_snow.phase2.alignment:main", "annotator ROC-AUC per benchmark (paper Fig. 2)"),
    "select": ("megatron_snow.phase2.selection:main", "phase-2 data: top-scored per language, blend file"),
    "synthesize": ("megatron_snow.synthesis.generate:main", "phase-3 synthetic code files through an OpenAI-compatible server"),
    "mix": ("megatron_snow.synthesis.mixing:main", "phase-3 blend: synthetic + phase-2, Python ~50%, token budget"),
    "model-info": ("megatron_snow.training.model_info:main", "parameters, FLOPs/token (Megatron's formula), memory per GPU"),
    "convert-to-hf": ("megatron_snow.convert.to_hf:main", "checkpoint -> Hugging Face Llama directory (+ tokenizer)"),
    "convert-from-hf": ("megatron_snow.convert.from_hf:main", "Hugging Face Llama -> checkpoint to start a phase from"),
    "evaluate": ("megatron_snow.evaluate.cli:main", "HumanEval+, MBPP+, EvoEval, BigCodeBench pass@1 beside the paper's table"),
    "ablation": ("megatron_snow.ablation:main", "the paper's ablations: grouping, data selection; held-out loss"),
    "report": ("megatron_snow.report:main", "report.md and a self-contained report.html for a run directory"),
}


def _usage() -> str:
    width = max(len(n) for n in STEPS)
    lines = ["usage: python -m megatron_snow STEP [--help] [--config FILE] [key=value ...]", "", "steps:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in STEPS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in STEPS:
        print(f"megatron_snow: unknown step {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = STEPS[name]
    module, func = target.split(":")
    return int(getattr(importlib.import_module(module), func)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
