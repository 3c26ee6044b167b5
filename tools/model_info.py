"""Print a training config's parameter count and FLOPs per token, without training.

    python tools/model_info.py --config examples/snowcoder_1.3b/phase1.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from megatron_snow.config import ConfigError  # noqa: E402
from megatron_snow.training.config import load_train_config  # noqa: E402
from megatron_snow.training.flops import model_size  # noqa: E402


def describe(cfg) -> str:
    vocab = cfg.model.vocab_size
    if vocab is None and cfg.data.tokenizer_path:
        from megatron_snow.tokenization.tokenizer import load_tokenizer

        vocab = load_tokenizer(cfg.data.tokenizer_path).vocab_size
    if vocab is None:
        raise ConfigError("model.vocab_size: not set (give it, or data.tokenizer_path)")
    s = model_size(cfg.model, vocab, cfg.data.seq_length, cfg.parallel.tensor_model_parallel_size)
    tokens = cfg.training.global_batch_size * cfg.data.seq_length
    m = cfg.model
    return "\n".join([
        f"layers {m.num_layers}, hidden {m.hidden_size}, ffn {m.ffn_hidden_size}, heads {m.num_attention_heads}"
        f" (kv {m.num_query_groups or m.num_attention_heads}), vocab {vocab}, seq {cfg.data.seq_length},"
        f" tied embeddings {m.tie_embeddings}",
        f"parameters: {s.params:,} ({s.params / 1e9:.3f}B; embedding {s.embedding_params:,},"
        f" non-embedding {s.non_embedding_params:,})",
        f"training FLOPs per token: {s.flops_per_token:,.0f} ({s.flops_per_token:.4g})",
        f"per step ({cfg.training.global_batch_size} x {cfg.data.seq_length} = {tokens:,} tokens):"
        f" {s.flops_per_token * tokens:.4g} FLOPs; whole run ({cfg.training.train_iters} iters):"
        f" {s.flops_per_token * tokens * cfg.training.train_iters:.4g} FLOPs",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="training YAML")
    ap.add_argument("overrides", nargs="*", help="key=value overrides")
    a = ap.parse_args(argv)
    try:
        print(describe(load_train_config(a.config, a.overrides)))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
