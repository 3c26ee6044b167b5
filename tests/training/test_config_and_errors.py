"""Training configs (YAML + key=value, typed) and the one-line errors that
stop a bad run before the process group, datasets or model are built."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from training_helpers import REPO, VOCAB, launch, read_metrics, tiny_overrides
from megatron_snow.config import ConfigError
from megatron_snow.training.config import load_train_config
from megatron_snow.training.trainer import preflight

EXAMPLES = REPO / "examples"


def test_example_configs_hold_the_paper_values():
    p1 = load_train_config(EXAMPLES / "snowcoder_1.3b" / "phase1.yaml")
    m = p1.model
    assert (m.num_layers, m.hidden_size, m.ffn_hidden_size, m.num_attention_heads, m.num_query_groups) == (
        24, 2048, 5632, 16, 16)
    assert m.vocab_size == 64000 and m.tie_embeddings and p1.data.seq_length == 8192
    assert p1.training.global_batch_size == 512 and p1.training.precision == "bf16"
    o = p1.optimizer
    assert (o.lr, o.min_lr, o.lr_warmup_iters, o.lr_decay_style) == (5.3e-4, 5.3e-5, 600, "cosine")
    # 500B tokens at 512 x 8192 tokens per step
    assert abs(p1.training.train_iters * 512 * 8192 - 500e9) < 512 * 8192
    # Phase 3's warm-up is phase 2's share (1000 of 11,921) of its 1,192 iterations.
    for phase, prev, _tokens, warmup in ((2, 1, 50e9, 1000), (3, 2, 5e9, 100)):
        c = load_train_config(EXAMPLES / "snowcoder_1.3b" / f"phase{phase}.yaml")
        assert c.model == p1.model
        o = c.optimizer
        assert ((o.lr_warmup_init, o.lr, o.lr_warmup_iters, o.lr_decay_style, o.min_lr)
                == (0.0, 5.3e-4, warmup, "linear", 0.0))
        assert c.checkpoint.load_from == p1.checkpoint.save.replace("phase1", f"phase{prev}")
        # the iterations come from the blend file that selection / mixing wrote (train_iters: 0 derives them)
        assert c.training.train_iters == 0 and c.data.blend_file and not c.data.blend
    tiny = load_train_config(EXAMPLES / "tiny" / "train_tiny.yaml")
    assert tiny.model.num_layers == 2 and tiny.model.hidden_size == 64


def test_overrides_and_rejections_name_the_key():
    cfg = load_train_config(None, ["training.train_iters=7", "optimizer.lr=1.0e-3", "data.blend=[[0.3, a], [0.7, b]]"])
    assert cfg.training.train_iters == 7 and cfg.optimizer.lr == 1e-3
    assert cfg.data.prefixes() == (["a", "b"], [0.3, 0.7])
    with pytest.raises(ConfigError, match=r"unknown key 'model\.hiden_size'"):
        load_train_config(None, ["model.hiden_size=3"])
    with pytest.raises(ConfigError, match=r"training\.train_iters: expected int"):
        load_train_config(None, ["training.train_iters=many"])
    with pytest.raises(ConfigError, match=r"optimizer\.lr_decay_style: expected one of"):
        load_train_config(None, ["optimizer.lr_decay_style=exp"])
    with pytest.raises(ConfigError, match=r"model\.hidden_size \(65\) is not divisible"):
        load_train_config(None, ["model.hidden_size=65"])
    # ranges, not only types: these would otherwise fail late (StopIteration, ZeroDivisionError) or train nothing
    for override, pattern in (("training.global_batch_size=0", r"training\.global_batch_size: must be at least 1"),
                              ("training.exit_at_iter=-1", r"training\.exit_at_iter: must not be negative"),
                              ("model.num_query_groups=0", r"model\.num_query_groups: must be at least 1"),
                              ("parallel.tensor_model_parallel_size=0", r"tensor_model_parallel_size: must be at")):
        with pytest.raises(ConfigError, match=pattern):
            load_train_config(None, [override])


def test_model_info_reports_the_1_3b_model():
    out = subprocess.run([sys.executable, str(REPO / "tools" / "model_info.py"), "--config",
                          str(EXAMPLES / "snowcoder_1.3b" / "phase1.yaml")], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    params = int(re.search(r"parameters: ([\d,]+)", out).group(1).replace(",", ""))
    assert 1.3e9 <= params <= 1.4e9
    flops = int(re.search(r"training FLOPs per token \(Megatron-LM formula[^:]*: ([\d,]+)", out)
                .group(1).replace(",", ""))
    # Megatron-LM's formula: 6 per weight (tied output projection counted as a matmul) + 12*L*h*s
    # attention, halved for the causal mask
    matmul_weights = params - 2 * 24 * 2048 - 2048  # all but the RMSNorm scales
    assert flops == pytest.approx(6 * matmul_weights + 6 * 24 * 2048 * 8192, rel=1e-6)


def _cfg(tiny_data, tmp_path, **extra):
    return load_train_config(None, tiny_overrides(tiny_data, tmp_path, **extra))


def test_preflight_one_line_errors(tiny_data, tmp_path):
    plan = preflight(_cfg(tiny_data, tmp_path), world_size=2)
    assert plan.dp_size == 2 and plan.num_microbatches == 2 and plan.padded_vocab == VOCAB

    cases = [
        ({"data.blend": f"[[1.0, {tmp_path}/nope]]"}, 1, r"dataset prefix .*/nope not found"),
        ({"model.vocab_size": 200}, 1, r"holds token id 255, outside the model's vocabulary of 200"),
        ({"training.global_batch_size": 6}, 2,
         r"global_batch_size \(6\) is not divisible by micro_batch_size x data-parallel size \(2 x 2\)"),
        ({"parallel.tensor_model_parallel_size": 2}, 3, r"world size 3 is not divisible by TP x PP"),
        ({"data.eod_id": None}, 1, r"data\.eod_id: not set"),
        ({"parallel.tensor_model_parallel_size": 2, "parallel.sequence_parallel": "true"}, 2,
         r"sequence_parallel needs the Transformer Engine layer spec"),
        ({"model.transformer_impl": "transformer_engine"}, 1, r"transformer_engine needs Transformer Engine and CUDA"),
        ({"data.tokenizer_path": f"{tmp_path}/missing.model"}, 1, r"tokenizer_path: file not found"),
        # 300 documents: a 0.1% validation share rounds to none (megatron-core would loop forever on it)
        ({"data.split": "999,1,0"}, 1, r"data\.split '999,1,0' leaves the valid split of .* without documents "
                                      r"\(300 documents in all\)"),
    ]
    for extra, world, pattern in cases:
        with pytest.raises(ConfigError, match=pattern) as info:
            preflight(_cfg(tiny_data, tmp_path, **{k: ("null" if v is None else v) for k, v in extra.items()}), world)
        assert "\n" not in str(info.value)


def test_cli_refuses_a_checkpoint_of_another_shape_before_building_anything(tiny_data, tmp_path):
    launch(1, tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 3}))
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == "3"
    bad = launch(1, tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 4, "model.ffn_hidden_size": 256}),
                 check=False)
    assert bad.returncode == 2
    lines = [ln for ln in bad.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint "), bad.stderr
    assert "different model shape" in lines[0] and "ffn_hidden_size 128 vs 256" in lines[0]
    assert "datasets ready" not in bad.stdout and "model:" not in bad.stdout

    # Resuming keeps the schedule and batch size (megatron's scheduler would silently take the
    # checkpoint's, and the data position is iteration x global batch): a change is one line.
    over = tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 3})
    preflight(load_train_config(None, over), world_size=1)  # the same settings resume
    for extra, pattern in (({"optimizer.lr": 0.01}, r"optimizer\.lr=0\.003, this run asks for 0\.01"),
                           ({"training.train_iters": 6}, r"optimizer\.lr_decay_iters=3, this run asks for 6.*set "
                                                         r"optimizer\.lr_decay_iters to keep it"),
                           ({"training.global_batch_size": 16}, r"training\.global_batch_size=8")):
        with pytest.raises(ConfigError, match=pattern) as info:
            preflight(load_train_config(None, tiny_overrides(tiny_data, tmp_path, **{"training.train_iters": 3,
                                                                                    **extra})), world_size=1)
        assert "\n" not in str(info.value) and "checkpoint.load_from=" in str(info.value)

    # Under torchrun: rank 0 reports the bad data in one line and the launcher stops the other rank.
    bad = launch(2, tiny_overrides(tiny_data, tmp_path / "other", **{"model.vocab_size": 200}), check=False)
    assert bad.returncode != 0
    errors = [ln for ln in bad.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: data.blend: {tiny_data} holds token id 255, outside the model's vocabulary of 200 "
                      "(wrong tokenizer or model.vocab_size?)"]
    assert "datasets ready" not in bad.stdout

    # Same for a previous phase's checkpoint given as checkpoint.load_from.
    bad = launch(1, tiny_overrides(tiny_data, tmp_path / "next", **{
        "checkpoint.load_from": str(tmp_path / "ckpt"), "model.num_layers": 4}), check=False)
    assert bad.returncode == 2 and "num_layers 2 vs 4" in bad.stderr


@pytest.mark.slow
def test_next_phase_starts_from_previous_weights_with_fresh_schedule(tiny_data, tmp_path):
    """checkpoint.load_from: weights only; iteration, optimizer and LR warm-up start afresh,
    and once the new phase has its own checkpoint a restart resumes from that instead."""
    prev = tmp_path / "phase1"
    launch(1, tiny_overrides(tiny_data, prev, **{"training.train_iters": 4}))
    prev_valid = read_metrics(prev / "metrics.jsonl", "valid")[4]["loss"]

    nxt = tmp_path / "phase2"
    over = tiny_overrides(tiny_data, nxt, **{"checkpoint.load_from": str(prev / "ckpt"), "training.train_iters": 0})
    out = launch(1, over)
    assert "initialised weights from" in out.stdout and "iter_0000004" in out.stdout
    assert read_metrics(nxt / "metrics.jsonl", "valid")[0]["loss"] == prev_valid  # exactly the same weights

    assert not (nxt / "ckpt" / "latest").exists()  # nothing trained, nothing saved

    over = tiny_overrides(tiny_data, nxt, **{"checkpoint.load_from": str(prev / "ckpt"), "training.train_iters": 3})
    out = launch(1, over)
    assert "initialised weights from" in out.stdout
    train = read_metrics(nxt / "metrics.jsonl")
    assert sorted(train) == [1, 2, 3]
    assert train[1]["lr"] == 0.0 and train[2]["lr"] > 0  # warm-up restarts from 0
    assert train[1]["loss"] < read_metrics(prev / "metrics.jsonl")[1]["loss"] - 0.05

    # The phase's own checkpoint now wins over load_from.
    over = tiny_overrides(tiny_data, nxt, **{"checkpoint.load_from": str(prev / "ckpt"), "training.train_iters": 3})
    out = launch(1, over)
    assert f"resumed from {nxt / 'ckpt' / 'iter_0000003'}" in out.stdout


def test_token_facts_come_from_the_tokenizer_file(tiny_data, tmp_path):
    """data.tokenizer_path (shared CodeTokenizer interface) gives vocab size, EOD and pad."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    words = {f"w{i}": i for i in range(298)}
    words.update({"<|endoftext|>": 298, "<|pad|>": 299})
    tok = Tokenizer(WordLevel(words, unk_token="w0"))
    tok.add_special_tokens(["<|endoftext|>", "<|pad|>"])
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))

    from megatron_snow.training.data import token_facts

    over = {"model.vocab_size": "null", "data.eod_id": "null", "data.tokenizer_path": str(path)}
    facts = token_facts(_cfg(tiny_data, tmp_path, **over))
    assert (facts.vocab_size, facts.eod, facts.pad) == (300, 298, 299)
    plan = preflight(_cfg(tiny_data, tmp_path, **over, **{"model.make_vocab_size_divisible_by": 128}), 1)
    assert plan.padded_vocab == 384
    with pytest.raises(ConfigError, match=r"model\.vocab_size \(256\) differs from the tokenizer's \(300\)"):
        token_facts(_cfg(tiny_data, tmp_path, **{**over, "model.vocab_size": 256}))
