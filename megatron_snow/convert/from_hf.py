"""Hugging Face Llama directory -> a megatron-snow checkpoint to start a phase from.

    python tools/checkpoint/convert_from_hf.py --load HF_DIR --save CKPT [parallel.tensor_model_parallel_size=N ...]

Writes ``CKPT/iter_0000000`` (model weights only, dist_checkpointing torch_dist,
the trainer's own format), ``CKPT/latest``, the tokenizer
(``CKPT/tokenizer.model`` or ``tokenizer.json``) and ``CKPT/model.yaml``: the
model, tokenizer and parallel settings plus ``checkpoint.load_from: CKPT``, to
pass to ``pretrain_gpt.py --config`` together with the data and schedule of the
new phase. The weights are written through this trainer's own ``GPTModel``
(one process, TP=PP=1): a checkpoint is fully reshardable, so it loads at any
TP/PP. Only the vocabulary padding depends on TP (Megatron pads the table to a
multiple of ``make_vocab_size_divisible_by`` x TP); give the TP you will train
with so the padding matches.

Memory: one model copy (the GPTModel) plus the Hugging Face tensors of one
parameter kind at a time (the safetensors files are mapped lazily and unmapped
after each kind). Measured on a 1.3B fp32 model (``bench/bench_convert_memory.py``):
peak 1.6x the model's size, the checkpoint writer's buffers included.
"""
from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from megatron_snow.config import Config, setting
from megatron_snow.convert.mapping import ConvertError, Shape, from_hf_tensors, read_hf_config, shape_of
from megatron_snow.convert.runtime import quiet_megatron_warnings, single_process_group

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODEL_KEYS = ("num_layers", "hidden_size", "ffn_hidden_size", "num_attention_heads", "num_query_groups",
              "vocab_size", "rotary_base", "norm_epsilon", "init_method_std", "tie_embeddings")


class _HFWeights:
    """Lazy access to the tensors of a Hugging Face directory's safetensors files."""

    def __init__(self, hf_dir: Path):
        index = hf_dir / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
        elif (hf_dir / "model.safetensors").is_file():
            from safetensors import safe_open

            with safe_open(str(hf_dir / "model.safetensors"), "pt") as f:
                weight_map = {k: "model.safetensors" for k in f.keys()}
        else:
            raise ConvertError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json "
                               "(save it with safe_serialization=True)")
        self.dir, self.weight_map = hf_dir, weight_map
        self._open: dict[str, object] = {}

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        file = self.weight_map.get(name)
        if file is None:
            raise ConvertError(f"{self.dir}: tensor {name} missing")
        if file not in self._open:
            self._open[file] = safe_open(str(self.dir / file), "pt")
        return self._open[file].get_tensor(name)

    def close(self) -> None:
        """Unmap the files: pages read so far would otherwise stay in this process's RSS."""
        self._open.clear()

    def shape(self, name: str) -> tuple[int, ...] | None:
        if name not in self.weight_map:
            return None
        from safetensors import safe_open

        if self.weight_map[name] not in self._open:
            self._open[self.weight_map[name]] = safe_open(str(self.dir / self.weight_map[name]), "pt")
        return tuple(self._open[self.weight_map[name]].get_slice(name).get_shape())


def _hf_shapes(s: Shape) -> dict[str, tuple[int, ...]]:
    h, f, d = s.hidden_size, s.ffn_hidden_size, s.head_dim
    out = {"model.embed_tokens.weight": (s.vocab_size, h), "model.norm.weight": (h,)}
    if not s.tie_embeddings:
        out["lm_head.weight"] = (s.vocab_size, h)
    for i in range(s.num_layers):
        p = f"model.layers.{i}."
        out.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (s.num_attention_heads * d, h),
            p + "self_attn.k_proj.weight": (s.num_query_groups * d, h),
            p + "self_attn.v_proj.weight": (s.num_query_groups * d, h),
            p + "self_attn.o_proj.weight": (h, s.num_attention_heads * d),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h), p + "mlp.down_proj.weight": (h, f),
        })
    return out


def _check_weights(w: _HFWeights, s: Shape, where: str) -> None:
    want = _hf_shapes(s)
    diffs = []
    for name, shape in want.items():
        got = w.shape(name)
        if got is None:
            diffs.append(f"{name} missing")
        elif got != shape:
            diffs.append(f"{name} {got} vs {shape}")
    extra = sorted(set(w.weight_map) - set(want) - {"lm_head.weight"})
    extra = [n for n in extra if not n.endswith("rotary_emb.inv_freq")]
    if extra:
        diffs.append(f"unexpected tensors {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
    if diffs:
        raise ConvertError(f"{where}: weights do not match its config.json (weights vs config): "
                           + "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else ""))


def _yaml_scalar(v) -> str:
    """A value as YAML reads it back with the same type (YAML wants 1.0e-05, not 1e-05, for a float)."""
    return yaml.safe_dump(v, default_flow_style=True).split("\n")[0]


def _train_config(hf_settings: dict, overrides) -> object:
    """The TrainConfig of the new phase: the Hugging Face model's settings, then the user's overrides
    (which may not contradict the model's shape)."""
    from megatron_snow.training.config import load_train_config

    base = [f"model.{k}={_yaml_scalar(v)}" for k, v in hf_settings.items()]
    cfg = load_train_config(None, base + list(overrides))
    clash = [f"model.{k}={getattr(cfg.model, k)} vs {hf_settings[k]}" for k in MODEL_KEYS
             if k in hf_settings and getattr(cfg.model, k) != hf_settings[k]]
    if clash:
        raise ConvertError("overrides contradict the Hugging Face model (override vs config.json): " + ", ".join(clash))
    return cfg


def _param_name(sd: dict, role: str, layer: int | None) -> str:
    from megatron_snow.convert.mapping import EMBEDDING, FINAL_NORM, LAYER_KEYS, OUTPUT

    if role in ("embedding", "final_norm", "output"):
        return {"embedding": EMBEDDING, "final_norm": FINAL_NORM, "output": OUTPUT}[role]
    for name in LAYER_KEYS[role]:
        full = f"decoder.layers.{layer}.{name}"
        if full in sd:
            return full
    raise ConvertError(f"the GPT model has no parameter for {role} of layer {layer}")


def convert_from_hf(load: str | Path, save: str | Path, overrides=(), dtype: str = "fp32",
                    progress: bool = True) -> dict:
    from megatron.core import dist_checkpointing

    from megatron_snow.training import checkpoint as ckpt
    from megatron_snow.training.config import ParallelConfig, padded_vocab_size
    from megatron_snow.training.model import build_model

    if dtype not in DTYPES:
        raise ConvertError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    hf_dir = Path(load)
    if not (hf_dir / "config.json").is_file():
        raise ConvertError(f"--load {load}: no config.json (not a Hugging Face model directory)")
    hf = json.loads((hf_dir / "config.json").read_text())
    settings = read_hf_config(hf, str(hf_dir))
    cfg = _train_config(settings, overrides)
    shape = shape_of(cfg.model, settings["vocab_size"])
    weights = _HFWeights(hf_dir)
    _check_weights(weights, shape, str(hf_dir))
    weights.close()
    tp = cfg.parallel.tensor_model_parallel_size
    padded = padded_vocab_size(shape.vocab_size, cfg.model.make_vocab_size_divisible_by, tp)

    out = Path(save)
    if ckpt.latest_iteration(out) is not None:
        raise ConvertError(f"--save {save}: already holds a checkpoint; choose a new directory")
    target = ckpt.iter_dir(out, 0)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)

    roles = ["embedding", "input_norm", "qkv", "proj", "mlp_norm", "fc1", "fc2", "final_norm"]
    roles += [] if shape.tie_embeddings else ["output"]
    from tqdm import tqdm

    bar = tqdm(total=len(roles), desc="convert", unit="tensor", disable=not progress, file=sys.stderr)
    with single_process_group(model_parallel=True):
        model_cfg = replace(cfg.model, transformer_impl="local")  # the same keys as TE's (see mapping)
        # vocab_size already padded for the target TP: build_model pads it for TP=1, which keeps it.
        model = build_model(model_cfg, ParallelConfig(), padded, cfg.data.seq_length, DTYPES[dtype])
        params = dict(model.named_parameters())
        with torch.no_grad():
            for role in roles:
                layers = range(shape.num_layers) if role not in ("embedding", "final_norm", "output") else [None]
                for layer in layers:
                    names = shape.hf_names(role, layer)
                    w = from_hf_tensors(role, [weights.get(n) for n in names], shape, padded)
                    p = params[_param_name(params, role, layer)]
                    if tuple(p.shape) != tuple(w.shape):
                        raise ConvertError(
                            f"{role} layer {layer}: HF gives {tuple(w.shape)}, model has {tuple(p.shape)}")
                    p.copy_(w)
                weights.close()
                bar.update(1)
        bar.close()
        dist_checkpointing.save({"model": model.sharded_state_dict()}, str(target),
                                sharded_strategy=("torch_dist", 1))
    meta = {"model_shape": ckpt.model_shape(cfg.model, padded), "iteration": 0,
            "topology": {"tp": 1, "pp": 1, "dp": 1}, "converted_from": str(hf_dir.resolve())}
    ckpt.write_meta(target, meta)
    ckpt.mark_latest(out, 0)

    tokenizer = _copy_tokenizer(hf_dir, out, shape.vocab_size)
    yaml_path = out / "model.yaml"
    section = {"model": {k: getattr(cfg.model, k) for k in MODEL_KEYS + ("make_vocab_size_divisible_by",)},
               "parallel": {"tensor_model_parallel_size": tp,
                            "pipeline_model_parallel_size": cfg.parallel.pipeline_model_parallel_size},
               "checkpoint": {"load_from": str(out.resolve())}}
    data = {}
    if tokenizer is not None:
        data["tokenizer_path"] = str(tokenizer.resolve())
    if any(o.startswith("data.seq_length=") for o in overrides):
        data["seq_length"] = cfg.data.seq_length
    if data:
        section["data"] = data
    header = (f"# Model settings of {hf_dir.resolve()} (converted by megatron-snow).\n"
              f"# Start a phase: pretrain_gpt.py --config {yaml_path} data.blend=... checkpoint.save=...\n")
    yaml_path.write_text(header + yaml.safe_dump(section, sort_keys=False))
    return {"hf_dir": str(hf_dir), "checkpoint": str(target), "yaml": str(yaml_path), "padded_vocab_size": padded,
            "tokenizer": str(tokenizer) if tokenizer else None, "dtype": dtype}


def _copy_tokenizer(hf_dir: Path, out: Path, vocab_size: int) -> Path | None:
    """The HF directory's tokenizer, as a file our CodeTokenizer reads, if its vocabulary fits the model."""
    from megatron_snow.tokenization.tokenizer import TokenizerError, load_tokenizer

    for name in ("tokenizer.model", "tokenizer.json"):
        src = hf_dir / name
        if src.is_file():
            try:
                tok = load_tokenizer(src)
            except TokenizerError as e:
                print(f"warning: tokenizer not copied: {e}", file=sys.stderr)
                continue
            if tok.vocab_size != vocab_size:
                print(f"warning: {src} has {tok.vocab_size} tokens, the model {vocab_size}: set "
                      f"data.tokenizer_path and model.vocab_size yourself", file=sys.stderr)
                continue
            dst = out / name
            shutil.copyfile(src, dst)
            return dst
    return None


@dataclass
class FromHFConfig(Config):
    """Settings of ``convert-from-hf``; other ``key=value`` pairs are settings of the training config (``train``)."""

    load: str = setting(help="Hugging Face Llama directory (config.json + safetensors)")
    save: str = setting(help="new checkpoint directory (a save root)")
    dtype: Literal["fp32", "bf16"] = setting("fp32", help="weights' dtype in the checkpoint (the trainer casts "
                                                           "on load)")
    progress: bool = setting(True, help="a progress bar on stderr")
    train: dict[str, Any] = setting(factory=dict, help="training-config settings over the checkpoint's, e.g. "
                                                       "model.rotary_base=500000 (given as plain key=value)")


def cli_run(cfg: FromHFConfig, args, comm) -> None:
    """The ``convert-from-hf`` command."""
    from megatron_snow.commands import rest_overrides

    quiet_megatron_warnings()
    info = convert_from_hf(cfg.load, cfg.save, rest_overrides(cfg.train), cfg.dtype, progress=cfg.progress)
    print(json.dumps(info))


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow convert-from-hf`` / ``tools/checkpoint/convert_from_hf.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["convert-from-hf"].main(argv)
