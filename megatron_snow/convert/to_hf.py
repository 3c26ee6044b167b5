"""megatron-snow checkpoint -> Hugging Face ``LlamaForCausalLM`` directory.

    python tools/checkpoint/convert_to_hf.py --load CKPT --save HF_DIR [--tokenizer TOK] [--dtype bf16]

CKPT is a save root (its newest complete iteration) or one ``iter_`` directory,
written at any TP/PP with either layer spec. The model settings come from the
``config.yaml`` the trainer wrote in the save root (``model.yaml`` after
``convert_from_hf``) or from ``--config``, plus ``key=value`` overrides, and are
checked against the checkpoint's shapes (one line naming each difference).

HF_DIR holds config.json, model-*.safetensors + index, generation_config.json
(EOD as eos) and the tokenizer (tokenizer.json with the same ids as ours, no
chat template, nothing added around a prompt): ``AutoModelForCausalLM`` /
``AutoTokenizer.from_pretrained(HF_DIR)`` load it, and
``transformers serve HF_DIR`` answers ``/v1/completions`` with it.

Memory: tensors are read one parameter kind at a time (all layers of it) with
``dist_checkpointing.load`` and written out in safetensors shards of at most
``--max-shard-mb``; optimizer state is never read. Measured on a 1.3B fp32 model
(``bench/bench_convert_memory.py``, docs/results/convert_memory.json): peak 1.5x the model's size, held by the
largest kind (``linear_fc1``, 2.2 GB), its read buffer and one pending shard.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from megatron_snow.config import Config, setting
from megatron_snow.convert.mapping import (
    EMBEDDING, FINAL_NORM, LAYER_KEYS, OUTPUT, ConvertError, Shape, hf_config_dict, shape_of, to_hf_tensors,
)
from megatron_snow.convert.runtime import quiet_megatron_warnings, single_process_group

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def resolve_checkpoint(path: str | Path) -> Path:
    """A save root (its latest complete iteration) or one iter_ directory -> the iter_ directory."""
    from megatron_snow.training.checkpoint import layout

    if not Path(path).is_dir():
        raise ConvertError(f"--load {path}: no such directory")
    found = layout.resolve(path)
    if found is None:
        raise ConvertError(f"--load {path}: neither an iter_ directory (no {layout.META}) nor a save root with a "
                           f"'{layout.LATEST}' marker")
    return found


def _train_config(ckpt_dir: Path, config: str | None, overrides, tokenizer: str | None):
    from megatron_snow.training.config import load_train_config

    if config is None:  # what the trainer (config.yaml) or convert_from_hf (model.yaml) wrote
        found = [p for p in (ckpt_dir.parent / "config.yaml", ckpt_dir.parent / "model.yaml") if p.is_file()]
        if not found:
            raise ConvertError(f"{ckpt_dir}: no config.yaml or model.yaml in its save root: pass --config "
                               "with the model settings")
        config = str(found[0])
    cfg = load_train_config(config, list(overrides))
    if tokenizer:
        cfg.data.tokenizer_path = tokenizer
    return cfg, config


def _vocab_and_ids(cfg) -> tuple[int, dict, object | None]:
    """Real vocabulary size and special ids from the tokenizer (or the config's explicit keys)."""
    from megatron_snow.tokenization.tokenizer import TokenizerError, load_tokenizer

    tok = None
    path = cfg.data.tokenizer_path
    if path:
        try:
            tok = load_tokenizer(path)
        except TokenizerError as e:
            raise ConvertError(str(e)) from None
        if cfg.model.vocab_size is not None and cfg.model.vocab_size != tok.vocab_size:
            raise ConvertError(f"model.vocab_size ({cfg.model.vocab_size}) differs from the tokenizer's "
                               f"({tok.vocab_size}) in {path}")
        return tok.vocab_size, {"eos_token_id": tok.eod_id, "pad_token_id": tok.pad_id,
                                "bos_token_id": tok.bos_id}, tok
    if cfg.model.vocab_size is None:
        raise ConvertError("no vocabulary size: pass --tokenizer (or model.vocab_size=N)")
    eod = cfg.data.eod_id
    return cfg.model.vocab_size, {"eos_token_id": eod, "pad_token_id": cfg.data.pad_id, "bos_token_id": None}, None


def check_checkpoint_shape(ckpt_dir: Path, shape: Shape, tensors_md: dict, divisible_by: int) -> int:
    """The checkpoint's padded vocabulary; one line naming every difference from the config otherwise."""
    from megatron_snow.training import checkpoint as ckpt
    from megatron_snow.training.config import padded_vocab_size

    meta = ckpt.read_meta(ckpt_dir)
    saved = meta.get("model_shape", {})
    padded = saved.get("padded_vocab_size")
    want = {"num_layers": shape.num_layers, "hidden_size": shape.hidden_size,
            "ffn_hidden_size": shape.ffn_hidden_size, "num_attention_heads": shape.num_attention_heads,
            "num_query_groups": shape.num_query_groups, "tie_embeddings": shape.tie_embeddings}
    diffs = [f"{k} {saved[k]} vs {v}" for k, v in want.items() if k in saved and saved[k] != v]
    tp = meta.get("topology", {}).get("tp", 1)
    if padded is not None and padded != padded_vocab_size(shape.vocab_size, divisible_by, tp):
        diffs.append(f"padded_vocab_size {padded} vs {padded_vocab_size(shape.vocab_size, divisible_by, tp)} "
                     f"(vocab {shape.vocab_size}, divisible by {divisible_by} x TP {tp})")
    if not diffs:  # the meta agrees: check the tensors themselves
        if padded is None:
            padded = tensors_md[EMBEDDING].global_shape[0] if EMBEDDING in tensors_md else None
        for role, want_shape in shape.megatron_shapes(padded).items():
            key = _find_key(tensors_md, role)
            if key is None:
                diffs.append(f"{role}: no tensor in the checkpoint")
            elif tuple(tensors_md[key].global_shape) != want_shape:
                diffs.append(f"{key} {tuple(tensors_md[key].global_shape)} vs {want_shape}")
        if shape.tie_embeddings and OUTPUT in tensors_md:
            diffs.append("output_layer.weight present vs tied embeddings")
    if diffs:
        raise ConvertError(f"checkpoint {ckpt_dir} does not match the model config (checkpoint vs config): "
                           + ", ".join(diffs))
    return padded


def _find_key(md: dict, role: str) -> str | None:
    if role == "embedding":
        return EMBEDDING if EMBEDDING in md else None
    if role == "final_norm":
        return FINAL_NORM if FINAL_NORM in md else None
    if role == "output":
        return OUTPUT if OUTPUT in md else None
    for name in LAYER_KEYS[role]:
        if "decoder.layers." + name in md:
            return "decoder.layers." + name
    return None


class ShardWriter:
    """Writes tensors into model-0000i-of-0000n.safetensors files of bounded size, then the index."""

    def __init__(self, out: Path, max_bytes: int):
        self.out, self.max_bytes = out, max_bytes
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.files: list[tuple[Path, list[str]]] = []
        self.total = 0

    def add(self, name: str, t: torch.Tensor) -> None:
        n = t.numel() * t.element_size()
        if self.pending and self.pending_bytes + n > self.max_bytes:
            self.flush()
        self.pending[name] = t.contiguous()
        self.pending_bytes += n
        self.total += n

    def flush(self) -> None:
        from safetensors.torch import save_file

        if not self.pending:
            return
        path = self.out / f".shard-{len(self.files):05d}.tmp"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.files.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def finish(self) -> list[str]:
        self.flush()
        n = len(self.files)
        weight_map = {}
        names = []
        for i, (tmp, keys) in enumerate(self.files):
            name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(tmp, self.out / name)
            names.append(name)
            weight_map.update({k: name for k in keys})
        index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        return names


def convert_to_hf(load: str | Path, save: str | Path, tokenizer: str | None = None, config: str | None = None,
                  overrides=(), dtype: str = "fp32", max_shard_mb: float = 2048, progress: bool = True) -> dict:
    """Write the Hugging Face directory; returns a summary (also what the CLI prints)."""
    from megatron.core import dist_checkpointing

    if dtype not in DTYPES:
        raise ConvertError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    ckpt_dir = resolve_checkpoint(load)
    cfg, config_path = _train_config(ckpt_dir, config, overrides, tokenizer)
    vocab, token_ids, tok = _vocab_and_ids(cfg)
    shape = shape_of(cfg.model, vocab)
    md = dist_checkpointing.load_tensors_metadata(str(ckpt_dir))
    padded = check_checkpoint_shape(ckpt_dir, shape, md, cfg.model.make_vocab_size_divisible_by)

    out = Path(save)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("model-*.safetensors")) + list(out.glob(".shard-*.tmp")):
        old.unlink()
    target = DTYPES[dtype]
    roles = ["embedding"] + list(LAYER_KEYS) + ["final_norm"] + ([] if shape.tie_embeddings else ["output"])
    writer = ShardWriter(out, int(max_shard_mb * 2**20))
    bar = _progress(len(roles), progress)
    with single_process_group():
        for role in roles:
            key = _find_key(md, role)
            loaded = dist_checkpointing.load({key: md[key]}, str(ckpt_dir), validate_access_integrity=False)
            w = loaded.pop(key)
            del loaded
            if role in LAYER_KEYS:
                for layer in range(shape.num_layers):
                    for name, t in zip(shape.hf_names(role, layer), to_hf_tensors(role, w[layer], shape)):
                        writer.add(name, t.to(target))
            else:
                for name, t in zip(shape.hf_names(role), to_hf_tensors(role, w, shape)):
                    writer.add(name, t.to(target))
            del w
            bar.update(1)
    bar.close()
    shards = writer.finish()

    seq = cfg.data.seq_length
    hf_cfg = hf_config_dict(shape, cfg.model.rotary_base, cfg.model.norm_epsilon, cfg.model.init_method_std, seq,
                            _DTYPE_NAMES[target], token_ids)
    (out / "config.json").write_text(json.dumps(hf_cfg, indent=2, sort_keys=True) + "\n")
    gen = {k: v for k, v in token_ids.items() if v is not None}
    (out / "generation_config.json").write_text(json.dumps({**gen, "_from_model_config": True}, indent=2) + "\n")
    tokenizer_written = None
    if tok is not None:
        from megatron_snow.convert.hf_tokenizer import write_hf_tokenizer

        write_hf_tokenizer(tok.path, out, model_max_length=seq)
        tokenizer_written = tok.path
    return {"checkpoint": str(ckpt_dir), "config": config_path, "hf_dir": str(out), "shards": len(shards),
            "bytes": writer.total, "dtype": dtype, "tokenizer": tokenizer_written, "vocab_size": vocab,
            "padded_vocab_size": padded}


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="convert", unit="tensor", disable=not enabled, file=sys.stderr)


@dataclass
class ToHFConfig(Config):
    """Settings of ``convert-to-hf``; other ``key=value`` pairs are settings of the training config (``train``)."""

    load: str = setting(help="save root (its latest iteration) or one iter_ directory")
    save: str = setting(help="Hugging Face directory to write")
    tokenizer: str = setting("", help="SentencePiece .model or tokenizer.json (empty: data.tokenizer_path of the "
                                      "training config); written into the directory")
    train_config: str = setting("", help="training YAML with the model settings (empty: SAVE_ROOT/config.yaml)")
    dtype: Literal["fp32", "bf16", "fp16"] = setting("fp32", help="weights' dtype")
    max_shard_mb: float = setting(2048.0, help="largest safetensors shard, MB", range="> 0")
    progress: bool = setting(True, help="a progress bar on stderr")
    train: dict[str, Any] = setting(factory=dict, help="training-config settings over the checkpoint's, e.g. "
                                                       "model.rotary_base=500000 (given as plain key=value)")


def cli_run(cfg: ToHFConfig, args, comm) -> None:
    """The ``convert-to-hf`` command."""
    from megatron_snow.commands import rest_overrides

    quiet_megatron_warnings()
    info = convert_to_hf(cfg.load, cfg.save, cfg.tokenizer or None, cfg.train_config or None,
                         rest_overrides(cfg.train), cfg.dtype, cfg.max_shard_mb, progress=cfg.progress)
    print(json.dumps(info))


def main(argv: list[str] | None = None) -> int:
    """``python -m megatron_snow convert-to-hf`` / ``tools/checkpoint/convert_to_hf.py``."""
    from megatron_snow.commands import COMMANDS

    return COMMANDS["convert-to-hf"].main(argv)
