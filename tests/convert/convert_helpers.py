"""Constants and helpers of the conversion tests (a uniquely named module: every test
directory has its own conftest.py)."""
from __future__ import annotations

import os
from pathlib import Path

from code_samples import SAMPLES

from tests.shipped_files import clean_code_files, js_shell_files, stdlib_modules, stdlib_package

REPO = Path(__file__).resolve().parents[2]
VOCAB = 1000  # padded to 1024: 24 padding rows to drop
NEW_TOKENS = 16

# name -> overrides: TP=2 / PP=2 / DP=2, GQA (4 heads, 2 groups) or MHA, tied or untied.
VARIANTS = {
    # no vocabulary padding (1000 is a multiple of 8): the start-of-phase loss check needs none
    "tp1_pp1_gqa_tied": {"parallel.tensor_model_parallel_size": 1, "model.num_query_groups": 2,
                         "model.tie_embeddings": True, "model.make_vocab_size_divisible_by": 8},
    "tp2_gqa_tied": {"parallel.tensor_model_parallel_size": 2, "model.num_query_groups": 2,
                     "model.tie_embeddings": True},
    "tp2_mha_untied": {"parallel.tensor_model_parallel_size": 2, "model.num_query_groups": 4,
                       "model.tie_embeddings": False},
    "pp2_gqa_untied": {"parallel.pipeline_model_parallel_size": 2, "model.num_query_groups": 2,
                       "model.tie_embeddings": False},
    "pp2_mha_tied": {"parallel.pipeline_model_parallel_size": 2, "model.num_query_groups": 4,
                     "model.tie_embeddings": True},
}


def real_files() -> list[tuple[str, str, str]]:
    """Real source files the repository ships (CPython 3.11.7 modules and C headers, torch C++ headers),
    and npm packages' JavaScript), so the tokenizer trains on the same bytes on every machine."""
    out = [(p, "python", t[:40_000]) for p, _, t in stdlib_modules()[:24]]
    out += [(p, "c", t[:40_000]) for p, _, t in stdlib_package("cpython-include")[:8]]
    out += [(p, "cpp", t[:40_000]) for p, _, t in clean_code_files("torch")[:6]]
    out += [(p, "javascript", t[:40_000]) for p, _, t in js_shell_files("javascript")[:1]]
    return out


def tiny_overrides(work: Path, data: Path, tokenizer: Path, **extra) -> list[str]:
    values = {
        "model.num_layers": 2, "model.hidden_size": 64, "model.ffn_hidden_size": 160,
        "model.num_attention_heads": 4, "model.make_vocab_size_divisible_by": 64,
        "model.rotary_base": 50000, "model.norm_epsilon": "1.0e-6", "model.init_method_std": 0.3,
        "model.transformer_impl": "local",
        "data.blend": f"[[1.0, {data}]]", "data.split": "90,10,0", "data.seq_length": 64,
        "data.tokenizer_path": str(tokenizer), "data.index_cache_dir": str(work / "index_cache"),
        "optimizer.lr": 5e-3, "optimizer.min_lr": 1e-3, "optimizer.lr_warmup_iters": 1,
        "training.micro_batch_size": 2, "training.global_batch_size": 8, "training.train_iters": 6,
        "training.eval_iters": 1, "logging.log_interval": 1, "logging.metrics_file": str(work / "metrics.jsonl"),
        "checkpoint.save": str(work / "ckpt"),
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.setdefault("OMP_NUM_THREADS", "1")
    e["PYTHONWARNINGS"] = "ignore"
    e["HF_HUB_OFFLINE"] = "1"
    return e


def prompt_ids(sp_model: Path) -> tuple[list[int], list[int]]:
    """(tokens for the logits check, prompt for greedy decoding), from real code."""
    from megatron_snow.tokenization import load_tokenizer

    tok = load_tokenizer(sp_model)
    tokens = tok.encode(SAMPLES["python"] + SAMPLES["go"])[:48]
    prompt = tok.encode("def sum(xs):\n    total = 0\n    for x in xs:\n")
    return tokens, prompt
