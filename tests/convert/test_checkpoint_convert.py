"""Checkpoint conversion against the real thing: checkpoints that this project's Trainer saved at
TP=2, PP=2 and DP=2 under torchrun (2 gloo processes), GQA or MHA, tied or untied; the
distributed model's own logits and greedy decoding; transformers loading the result."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from convert_helpers import NEW_TOKENS, REPO, VARIANTS, VOCAB, env, prompt_ids, tiny_overrides

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

TOOLS = REPO / "tools" / "checkpoint"


def _cli(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOLS / script), *args, "--no-progress"], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def converted(variants, sp_model, tmp_path_factory) -> dict[str, Path]:
    """Every variant converted to a Hugging Face directory (library call, fp32, small shards)."""
    from megatron_snow.convert.to_hf import convert_to_hf

    out = {}
    for name, work in variants.items():
        hf = tmp_path_factory.mktemp("hf") / name
        info = convert_to_hf(work / "ckpt", hf, max_shard_mb=0.1, progress=False)
        assert info["tokenizer"] and info["vocab_size"] == VOCAB and info["padded_vocab_size"] == _padded(name)
        assert info["shards"] > 1  # 100 KB shards: the index is exercised
        out[name] = hf
    return out


def _padded(name: str) -> int:
    return 1000 if VARIANTS[name].get("model.make_vocab_size_divisible_by") == 8 else 1024


def test_every_rank_of_every_variant_ran(variants):
    for name, work in variants.items():
        ranks = [json.loads((work / f"rank{r}.json").read_text()) for r in (0, 1)]
        want_tp = VARIANTS[name].get("parallel.tensor_model_parallel_size", 1)
        want_pp = VARIANTS[name].get("parallel.pipeline_model_parallel_size", 1)
        assert [r["rank"] for r in ranks] == [0, 1] and {r["world"] for r in ranks} == {2}
        assert {(r["tp"], r["pp"]) for r in ranks} == {(want_tp, want_pp)}
        meta = json.loads((work / "ckpt" / "iter_0000006" / "snow_meta.json").read_text())
        assert meta["topology"] == {"tp": want_tp, "pp": want_pp, "dp": 2 // (want_tp * want_pp)}


def test_logits_match_the_distributed_megatron_model(variants, converted, sp_model):
    from transformers import AutoModelForCausalLM

    tokens, _ = prompt_ids(sp_model)
    for name, hf_dir in converted.items():
        ref = torch.load(variants[name] / "megatron.pt")
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        cfg = model.config
        assert cfg.vocab_size == VOCAB and cfg.tie_word_embeddings == VARIANTS[name]["model.tie_embeddings"]
        assert cfg.num_key_value_heads == VARIANTS[name]["model.num_query_groups"]
        assert cfg.rms_norm_eps == 1e-6 and model.config.rope_parameters["rope_theta"] == 50000
        with torch.no_grad():
            logits = model(torch.tensor([tokens])).logits[0]
        assert ref["logits"].shape == (len(tokens), _padded(name))  # padded table at the source
        diff = (logits - ref["logits"][:, :VOCAB]).abs().max().item()
        assert diff < 1e-4, f"{name}: max |logit difference| {diff}"
        assert ref["logits"].std() > 0.2  # peaked logits (init std 0.3, trained): the check has teeth


def test_greedy_generation_matches_megatron(variants, converted, sp_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, prompt = prompt_ids(sp_model)
    for name, hf_dir in converted.items():
        ref = torch.load(variants[name] / "megatron.pt")["greedy"]
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(hf_dir)
        ids = tok("def sum(xs):\n    total = 0\n    for x in xs:\n", return_tensors="pt").input_ids
        assert ids[0].tolist() == prompt
        out = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, len(prompt):].tolist()
        # transformers stops at end of document (generation_config.json); megatron decoded on
        if tok.eos_token_id in ref:
            ref = ref[: ref.index(tok.eos_token_id) + 1]
        assert out == ref, name
        assert len(set(ref)) > 1, name


def test_tied_embeddings_are_one_tensor_and_padding_is_dropped(converted):
    from safetensors import safe_open

    for name, hf_dir in converted.items():
        index = json.loads((hf_dir / "model.safetensors.index.json").read_text())["weight_map"]
        assert ("lm_head.weight" in index) != VARIANTS[name]["model.tie_embeddings"], name
        with safe_open(str(hf_dir / index["model.embed_tokens.weight"]), "pt") as f:
            assert tuple(f.get_slice("model.embed_tokens.weight").get_shape()) == (VOCAB, 64)
        assert json.loads((hf_dir / "generation_config.json").read_text())["eos_token_id"] == 2


def test_bf16_output_and_local_spec_key_names(variants, converted, tmp_path):
    """--dtype bf16 halves the weights; a checkpoint holding the local spec's norm names converts the same."""
    from megatron.core import dist_checkpointing
    from megatron.core.dist_checkpointing import ShardedTensor

    from megatron_snow.convert.runtime import single_process_group
    from megatron_snow.convert.to_hf import convert_to_hf

    src = variants["tp2_mha_untied"] / "ckpt"
    bf16 = convert_to_hf(src, tmp_path / "bf16", dtype="bf16", progress=False)
    ref = _all_tensors(converted["tp2_mha_untied"])
    got = _all_tensors(tmp_path / "bf16")
    assert got.keys() == ref.keys() and all(t.dtype == torch.bfloat16 for t in got.values())
    assert all(torch.equal(got[k], ref[k].to(torch.bfloat16)) for k in ref)
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"
    assert bf16["bytes"] * 2 == sum(t.numel() * 4 for t in ref.values())

    # Rewrite the checkpoint with local-spec module names for the two norms.
    renames = {"decoder.layers.self_attention.linear_qkv.layer_norm_weight": "decoder.layers.input_layernorm.weight",
               "decoder.layers.mlp.linear_fc1.layer_norm_weight": "decoder.layers.pre_mlp_layernorm.weight"}
    local = tmp_path / "local" / "iter_0000006"
    local.mkdir(parents=True)
    it_dir = src / "iter_0000006"
    with single_process_group():
        plain = dist_checkpointing.load_plain_tensors(str(it_dir))
        model = {renames.get(k, k): ShardedTensor.from_rank_offsets(renames.get(k, k), v.contiguous())
                 for k, v in plain.items() if torch.is_tensor(v) and not k.startswith("optimizer")}
        dist_checkpointing.save(model, str(local), sharded_strategy=("torch_dist", 1))
    assert not any("layer_norm_weight" in k for k in dist_checkpointing.load_tensors_metadata(str(local)))
    (local / "snow_meta.json").write_text((it_dir / "snow_meta.json").read_text())
    convert_to_hf(local, tmp_path / "from_local", config=str(src / "config.yaml"), progress=False)
    again = _all_tensors(tmp_path / "from_local")
    assert again.keys() == ref.keys() and all(torch.equal(again[k], ref[k]) for k in ref)


def _all_tensors(hf_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(hf_dir.glob("model*.safetensors")):
        out.update(load_file(str(f)))
    return out


def test_hf_to_megatron_to_hf_is_bitwise_and_starts_a_phase(variants, converted, sp_model, token_data, tmp_path):
    """HF -> megatron-snow -> HF gives identical tensors (bf16 and fp32), and pretrain_gpt.py starts a
    phase from the converted checkpoint with exactly the validation loss the source run ended with."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from megatron_snow.convert.from_hf import convert_from_hf
    from megatron_snow.convert.to_hf import convert_to_hf

    # A Hugging Face Llama made by transformers (GQA, untied, bf16) with our tokenizer.
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=96, intermediate_size=256, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=False, rope_theta=20000.0,
                      rms_norm_eps=1e-5, max_position_embeddings=128)
    src = LlamaForCausalLM(cfg).to(torch.bfloat16)
    with torch.no_grad():
        for n, p in src.named_parameters():
            if "norm" in n:
                p.uniform_(0.5, 1.5)  # not all ones: a misplaced norm would show
    src.save_pretrained(tmp_path / "src", max_shard_size="200KB")
    AutoTokenizer.from_pretrained(converted["tp2_gqa_tied"]).save_pretrained(tmp_path / "src")
    r = _cli("convert_from_hf.py", "--load", str(tmp_path / "src"), "--save", str(tmp_path / "ckpt"),
             "--dtype", "bf16", "parallel.tensor_model_parallel_size=2")
    assert r.returncode == 0, r.stderr[-3000:]
    convert_to_hf(tmp_path / "ckpt", tmp_path / "back", dtype="bf16", progress=False)
    a, b = _all_tensors(tmp_path / "src"), _all_tensors(tmp_path / "back")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    back = json.loads((tmp_path / "back" / "config.json").read_text())
    assert (back["rope_theta"], back["rms_norm_eps"], back["num_key_value_heads"]) == (20000.0, 1e-5, 2)
    # and MHA with tied embeddings, fp32, through the library
    mha = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                       num_attention_heads=4, tie_word_embeddings=True))
    mha.save_pretrained(tmp_path / "mha")
    convert_from_hf(tmp_path / "mha", tmp_path / "mha_ckpt", progress=False)
    convert_to_hf(tmp_path / "mha_ckpt", tmp_path / "mha_back", progress=False)
    a, b = _all_tensors(tmp_path / "mha"), _all_tensors(tmp_path / "mha_back")
    assert "lm_head.weight" not in b and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # Our trained model (DP=2, no vocabulary padding: padding rows come back as zeros, whose logits
    # would shift the loss): megatron-snow -> HF -> megatron-snow, then a new phase starts from it.
    name = "tp1_pp1_gqa_tied"
    convert_from_hf(converted[name], tmp_path / "phase", ["data.seq_length=64", "model.make_vocab_size_divisible_by=8"],
                    progress=False)
    yaml_path = tmp_path / "phase" / "model.yaml"
    work = tmp_path / "run"
    over = [o for o in tiny_overrides(work, token_data, sp_model, **{"training.train_iters": 0})
            if not o.startswith(("model.", "parallel."))]
    run = subprocess.run([sys.executable, str(REPO / "pretrain_gpt.py"), "--config", str(yaml_path), *over],
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "initialised weights from" in run.stdout
    valid = [json.loads(ln) for ln in (work / "metrics.jsonl").read_text().splitlines()]
    source = [json.loads(ln) for ln in (variants[name] / "metrics.jsonl").read_text().splitlines()]
    start = [v["loss"] for v in valid if v["split"] == "valid"][-1]
    end = [v["loss"] for v in source if v["split"] == "valid"][-1]
    assert start == pytest.approx(end, abs=1e-4), (start, end)


def test_mismatches_are_refused_with_one_line(variants, converted, tmp_path, capsys):
    from megatron_snow.convert import from_hf, to_hf

    def refused(main, *args) -> str:
        capsys.readouterr()
        assert main([*args, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        return err

    ckpt = variants["pp2_gqa_untied"] / "ckpt"
    # through the real tool once: exit code 2 and one line
    r = _cli("convert_to_hf.py", "--load", str(ckpt), "--save", str(tmp_path / "x"), "model.hidden_size=128",
             "model.ffn_hidden_size=320")
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "hidden_size 64 vs 128" in r.stderr and "ffn_hidden_size 160 vs 320" in r.stderr
    err = refused(to_hf.main, "--load", str(ckpt), "--save", str(tmp_path / "x"), "model.tie_embeddings=true")
    assert "tie_embeddings False vs True" in err
    err = refused(to_hf.main, "--load", str(ckpt), "--save", str(tmp_path / "x"), "model.num_query_groups=4")
    assert "num_query_groups 2 vs 4" in err
    assert "no such directory" in refused(to_hf.main, "--load", str(tmp_path / "nowhere"),
                                          "--save", str(tmp_path / "x"))

    # A Hugging Face model of another architecture, and a Llama whose weights contradict its config.
    other = tmp_path / "mistral"
    other.mkdir()
    cfg = json.loads((converted["tp2_gqa_tied"] / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "model_type": "mistral",
                                                   "architectures": ["MistralForCausalLM"]}))
    err = refused(from_hf.main, "--load", str(other), "--save", str(tmp_path / "y"))
    assert "not a Llama model" in err and "MistralForCausalLM" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in converted["tp2_gqa_tied"].iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 200}))
    err = refused(from_hf.main, "--load", str(bad), "--save", str(tmp_path / "z"))
    assert "mlp.gate_proj.weight (160, 64) vs (200, 64)" in err
    (bad / "config.json").write_text(json.dumps({**cfg, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
    assert "RoPE scaling 'llama3'" in refused(from_hf.main, "--load", str(bad), "--save", str(tmp_path / "z"))
