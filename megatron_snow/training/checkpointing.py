"""Sharded checkpoints with megatron dist_checkpointing (torch_dist format).

Layout of a save directory::

    SAVE/iter_0000040/       one checkpoint (dist_checkpointing files + snow_meta.json)
    SAVE/latest              the iteration of the newest COMPLETE checkpoint

``latest`` is replaced atomically only after every rank has finished writing,
so a save killed half-way is never resumed from (its directory is overwritten
by the next save of that iteration). The last ``keep_last`` are kept.

Each checkpoint holds model, optimizer, scheduler, iteration and per-rank RNG
states; model and optimizer are stored per parameter (fully reshardable), so a
checkpoint written at one TP/PP loads at another. ``snow_meta.json`` records
the model shape and topology: a mismatching model is refused with one line
before any model is built.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from megatron_snow.config import ConfigError

LATEST = "latest"
META = "snow_meta.json"
# Optimizer state stored per model parameter: resharding across TP/PP/DP on load.
SHARDED_METADATA = {"distrib_optim_sharding_type": "fully_reshardable", "chained_optim_avoid_prefix": True}


def iter_dir(root: str | Path, iteration: int) -> Path:
    return Path(root) / f"iter_{iteration:07d}"


def latest_iteration(root: str | Path | None) -> int | None:
    """The iteration of the newest complete checkpoint in ``root``, or None."""
    if not root:
        return None
    marker = Path(root) / LATEST
    if not marker.is_file():
        return None
    text = marker.read_text().strip()
    try:
        it = int(text)
    except ValueError:
        raise ConfigError(f"checkpoint marker {marker} is corrupt: {text!r}") from None
    if not (iter_dir(root, it) / META).is_file():
        raise ConfigError(f"checkpoint marker {marker} names iteration {it} but {iter_dir(root, it)} is incomplete")
    return it


def read_meta(ckpt_dir: str | Path) -> dict:
    return json.loads((Path(ckpt_dir) / META).read_text())


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


def check_shape(ckpt_dir: str | Path, shape: dict) -> None:
    """One-line error when a checkpoint was written for another model shape."""
    saved = read_meta(ckpt_dir)["model_shape"]
    diffs = [f"{k} {saved.get(k)} vs {v}" for k, v in shape.items() if saved.get(k) != v]
    if diffs:
        raise ConfigError(f"checkpoint {ckpt_dir} is for a different model shape (checkpoint vs config): {', '.join(diffs)}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _rng_state() -> dict:
    from megatron.core import tensor_parallel

    state = {
        "random": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "tracker": tensor_parallel.get_cuda_rng_tracker().get_states(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    from megatron.core import tensor_parallel

    random.setstate(state["random"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tensor_parallel.get_cuda_rng_tracker().set_states(state["tracker"])


def _topology() -> dict:
    from megatron.core import parallel_state as ps

    return {
        "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(),
        "dp": ps.get_data_parallel_world_size(),
    }


def _rng_sharded(state):
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    topo = _topology()
    return ShardedObject(
        "rng_state",
        state,
        (topo["pp"], topo["tp"], topo["dp"]),
        (ps.get_pipeline_model_parallel_rank(), ps.get_tensor_model_parallel_rank(), ps.get_data_parallel_rank()),
        replica_id=0,
    )


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def save_checkpoint(root, iteration: int, model, optimizer, scheduler, meta: dict, keep_last: int) -> Path:
    """Write iteration's checkpoint on all ranks, then mark it latest (rank 0)."""
    from megatron.core import dist_checkpointing

    rank = torch.distributed.get_rank()
    target = iter_dir(root, iteration)
    if rank == 0:
        # A directory here is a half-written save of a killed run: start it afresh.
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    _barrier()
    model_sd = model.sharded_state_dict()
    state = {
        "model": model_sd,
        "optimizer": optimizer.sharded_state_dict(model_sd, metadata=SHARDED_METADATA),
        "scheduler": scheduler.state_dict(),
        "iteration": iteration,
        "rng_state": _rng_sharded(_rng_state()),
    }
    dist_checkpointing.save(state, str(target), sharded_strategy=("torch_dist", 1))
    _barrier()
    if rank == 0:
        _write_atomic(target / META, json.dumps({**meta, "iteration": iteration, "topology": _topology()}, indent=1))
        _write_atomic(Path(root) / LATEST, f"{iteration}\n")
        _prune(root, keep_last)
    _barrier()
    return target


def _prune(root, keep_last: int) -> None:
    if keep_last <= 0:
        return
    latest = latest_iteration(root)
    done = sorted(
        int(p.name.split("_")[1]) for p in Path(root).glob("iter_*") if (p / META).is_file()
    )
    keep = set(done[-keep_last:]) | {latest}
    for it in done:
        if it not in keep:
            shutil.rmtree(iter_dir(root, it), ignore_errors=True)


# --- megatron-core 0.16.1 distributed optimizer over torch Adam (no Apex/TE) ---
# Without Apex or Transformer Engine (CPU runs, or GPU nodes without TE) the
# DistributedOptimizer keeps torch Adam's per-parameter "step", and two of its
# load paths trip over it: state_dict() asserts a common step that a fresh
# optimizer lacks, and load_parameter_state_* copies every state key, "step"
# included, from tensors that never hold one (the step comes back through the
# param groups instead, as one tensor shared by all parameters, which torch
# Adam then increments once per parameter and step). The two helpers below
# work around exactly that; they do nothing when Apex/TE provide fused Adam.


def _torch_adam_distopt() -> bool:
    from megatron.core.optimizer import distrib_optimizer

    return not distrib_optimizer.HAVE_APEX_OR_TE


def _prime_empty_optimizer_state(optimizer) -> None:
    """Create a fresh distributed optimizer's Adam state without changing weights
    (one step on zero gradients at lr 0 and weight decay 0); the load overwrites it."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        if not isinstance(opt, DistributedOptimizer) or len(opt.optimizer.state) > 0:
            continue
        saved = [(g["lr"], g["weight_decay"]) for g in opt.optimizer.param_groups]
        for g in opt.optimizer.param_groups:
            g["lr"], g["weight_decay"] = 0.0, 0.0
        opt._init_optimizer_states_with_dummy_values()
        for g, (lr, wd) in zip(opt.optimizer.param_groups, saved):
            g["lr"], g["weight_decay"] = lr, wd


def _keep_step_when_loading_param_state() -> None:
    """Let the param-state loader skip "step" (already restored from the param groups)."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    if getattr(DistributedOptimizer, "_snow_keeps_step", False):
        return
    original = DistributedOptimizer._set_main_param_and_optimizer_states

    def set_states(self, model_param, tensors):
        if "step" not in tensors and not self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            group_index, group_order = self.model_param_group_index_map[model_param]
            main_param = self.optimizer.param_groups[group_index]["params"][group_order]
            state = self.optimizer.state[main_param]
            if "step" in state:
                # load_state_dict gave every parameter the SAME step tensor, which
                # torch Adam would then increment once per parameter: unshare it.
                state["step"] = state["step"].clone()
                tensors = {**tensors, "step": state["step"]}
        return original(self, model_param, tensors)

    DistributedOptimizer._set_main_param_and_optimizer_states = set_states
    DistributedOptimizer._snow_keeps_step = True


def load_checkpoint(ckpt_dir, model, optimizer=None, scheduler=None) -> int:
    """Load a checkpoint into this rank's model (and optimizer, scheduler, RNG).

    Weights only when ``optimizer`` is None (phase-to-phase continuation).
    RNG states are restored only under the topology they were saved with.
    Returns the checkpoint's iteration.
    """
    from megatron.core import dist_checkpointing

    meta = read_meta(ckpt_dir)
    model_sd = model.sharded_state_dict()
    state = {"model": model_sd}
    same_topology = meta.get("topology") == _topology()
    if optimizer is not None:
        if _torch_adam_distopt():
            _prime_empty_optimizer_state(optimizer)
            _keep_step_when_loading_param_state()
        state["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True, metadata=SHARDED_METADATA)
        if same_topology:
            state["rng_state"] = _rng_sharded(_rng_state())
    loaded = dist_checkpointing.load(state, str(ckpt_dir))
    model.load_state_dict(loaded["model"], strict=True)
    if optimizer is not None:
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["scheduler"])
        if same_topology:
            _set_rng_state(loaded["rng_state"])
    _barrier()
    return int(meta["iteration"])
