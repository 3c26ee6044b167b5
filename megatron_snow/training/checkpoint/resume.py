"""What a resumed run must share with its checkpoint, all in one place: the facts a save records
(model shape, schedule and batch size, data identity) and the checks a restart makes against them
(those, plus an optimizer layout it can load), each failing in one line before any model is built.

``find_resume`` (preflight: markers and META only) and ``verified_resume`` (after the process group:
checksums, collective) are the trainer's two entry points; both end in ``check_resumable``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from megatron_snow.config import ConfigError
from megatron_snow.indexed import bin_path, idx_path, read_idx_header
from megatron_snow.training.checkpoint.integrity import pick_intact, resume_candidate, verify_checkpoint
from megatron_snow.training.checkpoint.layout import read_meta, resolve


def model_shape(model_cfg, padded_vocab: int) -> dict:
    """What must match for weights to load (parallel layout may differ)."""
    return {
        "num_layers": model_cfg.num_layers,
        "hidden_size": model_cfg.hidden_size,
        "ffn_hidden_size": model_cfg.ffn_hidden_size,
        "num_attention_heads": model_cfg.num_attention_heads,
        "num_query_groups": model_cfg.num_query_groups or model_cfg.num_attention_heads,
        "padded_vocab_size": padded_vocab,
        "tie_embeddings": model_cfg.tie_embeddings,
    }


def schedule_facts(cfg) -> dict:
    """What a resumed run must share with its checkpoint: megatron's scheduler takes these
    from the checkpoint without a word, and the data position is iteration x global batch."""
    o, t = cfg.optimizer, cfg.training
    return {
        "optimizer.lr": o.lr, "optimizer.min_lr": o.min_lr, "optimizer.lr_warmup_init": o.lr_warmup_init,
        "optimizer.lr_warmup_iters": o.lr_warmup_iters, "optimizer.lr_decay_style": o.lr_decay_style,
        "optimizer.lr_decay_iters": o.lr_decay_iters if o.lr_decay_iters is not None else t.train_iters,
        "optimizer.lr_wsd_decay_iters": o.lr_wsd_decay_iters, "optimizer.weight_decay": o.weight_decay,
        "training.global_batch_size": t.global_batch_size,
    }


def _dataset_size(prefix: str) -> dict:
    """A dataset's size: its sequence count (from the .idx header) and .bin size."""
    return {"sequences": read_idx_header(idx_path(prefix)).sequences, "bin_bytes": os.path.getsize(bin_path(prefix))}


def data_identity(cfg) -> dict:
    """What fixes the sample order behind a saved data position: blend (weights and each
    dataset's size), split, seed, sequence length and the number of training samples."""
    prefixes, weights = cfg.data.prefixes()
    t = cfg.training
    return {
        "blend": [{"weight": w, "prefix": p, **_dataset_size(p)} for p, w in zip(prefixes, weights)],
        "split": cfg.data.split,
        "seed": t.seed,
        "seq_length": cfg.data.seq_length,
        "train_samples": t.train_iters * t.global_batch_size,
    }


def recorded_facts(cfg, shape: dict) -> dict:
    """The part of a checkpoint's META that ``check_resumable`` reads back."""
    return {"model_shape": shape, "schedule": schedule_facts(cfg), "data": data_identity(cfg)}


def check_shape(ckpt_dir: str | Path, shape: dict) -> None:
    """One-line error when a checkpoint was written for another model shape."""
    saved = read_meta(ckpt_dir)["model_shape"]
    diffs = [f"{k} {saved.get(k)} vs {v}" for k, v in shape.items() if saved.get(k) != v]
    if diffs:
        raise ConfigError(f"checkpoint {ckpt_dir} is for a different model shape (checkpoint vs config): "
                          f"{', '.join(diffs)}")


def check_schedule(ckpt_dir, cfg) -> None:
    saved = read_meta(ckpt_dir).get("schedule")
    if saved is None:  # a checkpoint written before the schedule was recorded
        return
    for key, value in schedule_facts(cfg).items():
        if key in saved and saved[key] != value:
            hint = " (decay runs over train_iters: set optimizer.lr_decay_iters to keep it)" if key == \
                "optimizer.lr_decay_iters" else ""
            raise ConfigError(
                f"checkpoint {ckpt_dir} was trained with {key}={saved[key]}, this run asks for {value}: "
                f"a resumed run keeps its schedule and batch size{hint}; to change them start a new run "
                f"with checkpoint.load_from={ckpt_dir}"
            )


def check_data_identity(ckpt_dir, cfg) -> None:
    """One line when this run's data would put other samples behind the saved position.
    The dataset path may change (data moved); its weight and size may not."""
    saved = read_meta(ckpt_dir).get("data")
    if saved is None:  # written before the data identity was recorded
        return
    now = data_identity(cfg)
    diffs = []
    for key in ("split", "seed", "seq_length", "train_samples"):
        if saved.get(key) != now[key]:
            name = {"seed": "training.seed", "train_samples": "training.train_iters x global_batch_size"}.get(
                key, f"data.{key}")
            diffs.append(f"{name} {saved.get(key)} vs {now[key]}")

    def sizes(blend: list[dict]) -> list[dict]:
        return [{k: v for k, v in b.items() if k != "prefix"} for b in blend]

    if sizes(saved["blend"]) != sizes(now["blend"]):
        diffs.append("data.blend " + json.dumps(sizes(saved["blend"])) + " vs " + json.dumps(sizes(now["blend"])))
    if diffs:
        raise ConfigError(
            f"checkpoint {ckpt_dir} was trained on other data (checkpoint vs config): {'; '.join(diffs)}: "
            f"the saved data position would point at other samples; keep the data settings, or start a new "
            f"run with checkpoint.load_from={ckpt_dir}")


def check_optimizer_layout(ckpt_dir, tp: int, pp: int, distributed_optimizer: bool) -> None:
    """A dp_reshardable optimizer state loads only at the TP/PP it was saved with."""
    meta = read_meta(ckpt_dir)
    if meta.get("optimizer_format") != "dp_reshardable":
        return
    topo = meta.get("topology", {})
    if (topo.get("tp"), topo.get("pp")) != (tp, pp) or not distributed_optimizer:
        now = f"TP={tp} PP={pp}" + ("" if distributed_optimizer else " without the distributed optimizer")
        raise ConfigError(
            f"checkpoint {ckpt_dir} holds the distributed optimizer's state in the dp_reshardable format "
            f"(TP={topo.get('tp')} PP={topo.get('pp')}, any DP), which cannot be loaded at {now}: resume at "
            f"the saved TP/PP with checkpoint.optimizer_format=fully_reshardable until its next save, or start a new "
            f"run with checkpoint.load_from={ckpt_dir} (weights only)")


def check_resumable(ckpt_dir, cfg, shape: dict) -> None:
    """Everything a resumed run must share with its checkpoint (one line each): model shape,
    schedule and batch size, data identity, and an optimizer layout it can load."""
    check_shape(ckpt_dir, shape)
    check_schedule(ckpt_dir, cfg)
    check_data_identity(ckpt_dir, cfg)
    par = cfg.parallel
    check_optimizer_layout(ckpt_dir, par.tensor_model_parallel_size, par.pipeline_model_parallel_size,
                           par.use_distributed_optimizer)


def find_resume(cfg, shape: dict, say=print) -> tuple[Path | None, Path | None]:
    """(this run's checkpoint to resume, or None; else the checkpoint.load_from to start from, or None),
    each checked against this run. Reads markers and META only: preflight, before any process group."""
    c = cfg.checkpoint
    resume_dir = resume_candidate(c.save, c.on_damaged, say=say)
    if resume_dir is not None:
        check_resumable(resume_dir, cfg, shape)
        return resume_dir, None
    if not c.load_from:
        return None, None
    init_dir = resolve(c.load_from)
    if init_dir is None:
        raise ConfigError(f"checkpoint.load_from: no complete checkpoint in {c.load_from}")
    check_shape(init_dir, shape)
    return None, init_dir


def verified_resume(cfg, shape: dict, resume_dir: Path | None, init_dir: Path | None, say=print) -> Path | None:
    """The checkpoint to resume, checked against its checksums (each rank a share of the files);
    a damaged one is reported in one line and an older intact one taken (checkpoint.on_damaged),
    which is then checked against this run as the first was. A damaged load_from stops the run."""
    if init_dir is not None and (problem := verify_checkpoint(init_dir)):
        raise ConfigError(f"checkpoint.load_from: {init_dir} is damaged: {problem}")
    chosen = pick_intact(resume_dir, cfg.checkpoint.on_damaged, say=say)
    if chosen is not None and chosen != resume_dir:
        check_resumable(chosen, cfg, shape)
    return chosen
