"""Save and load one checkpoint through megatron-core's dist_checkpointing (torch_dist format).

Save and load are fully parallel (megatron's ``FullyParallelSave/Load StrategyWrapper``
over the data-parallel group): each DP rank writes and reads its own share, nobody
gathers the whole state. The distributed optimizer is stored ``dp_reshardable`` by
default (each rank's flat buffer shard as is: no gather on save, no reshaping on
load; loads at any DP size but the same TP/PP), or ``fully_reshardable`` (per
parameter: loads at any TP/PP/DP, but a save gathers every buffer). Model weights are
always per parameter, so a checkpoint written at one TP/PP loads at another.

A save writes every file, then their checksums and ``snow_meta.json``, then moves
``latest``; the kill points between those steps are what tests/test_kills.py kills at.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from megatron_snow import faults
from megatron_snow.config import ConfigError
from megatron_snow.training import cpu_compat
from megatron_snow.training.checkpoint.integrity import checksums
from megatron_snow.training.checkpoint.layout import (META, iter_dir, latest_iteration, mark_latest, read_meta,
                                                      write_meta)

# How the distributed optimizer's state is stored (megatron-core's distrib_optim_sharding_type).
OPTIMIZER_FORMATS = ("dp_reshardable", "fully_reshardable")


def sharded_metadata(optimizer_format: str) -> dict:
    return {"distrib_optim_sharding_type": optimizer_format, "chained_optim_avoid_prefix": True}


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


def topology() -> dict:
    from megatron.core import parallel_state as ps

    return {
        "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(),
        "dp": ps.get_data_parallel_world_size(),
    }


def _rng_sharded(state):
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.mapping import ShardedObject

    topo = topology()
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


def _save_strategy(fully_parallel: bool):
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.serialization import get_default_save_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelSaveStrategyWrapper

    strategy = get_default_save_sharded_strategy("torch_dist")
    if fully_parallel and ps.get_data_parallel_world_size() > 1:
        # Replicated tensors (model weights, identical on every DP rank) are split over the
        # DP group instead of all being written by DP rank 0.
        strategy = FullyParallelSaveStrategyWrapper(strategy, ps.get_data_parallel_group(with_context_parallel=True))
    return strategy


def _load_strategy(ckpt_dir, fully_parallel: bool):
    from megatron.core import parallel_state as ps
    from megatron.core.dist_checkpointing.serialization import get_default_load_sharded_strategy
    from megatron.core.dist_checkpointing.strategies.fully_parallel import FullyParallelLoadStrategyWrapper

    strategy = get_default_load_sharded_strategy(str(ckpt_dir))
    if fully_parallel and ps.get_data_parallel_world_size() > 1:
        # Each DP rank reads a share of the replicated tensors and they are exchanged,
        # instead of every rank reading everything.
        strategy = FullyParallelLoadStrategyWrapper(strategy, ps.get_data_parallel_group(with_context_parallel=True))
    return strategy


def _optimizer_format(optimizer, requested: str) -> str:
    """What the checkpoint holds for the optimizer: per parameter unless distributed."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    opts = getattr(optimizer, "chained_optimizers", [optimizer])
    return requested if any(isinstance(o, DistributedOptimizer) for o in opts) else "per_parameter"


def save_checkpoint(root, iteration: int, model, optimizer, scheduler, meta: dict, keep_last: int,
                    optimizer_format: str = "dp_reshardable", fully_parallel: bool = True) -> Path:
    """Write iteration's checkpoint on all ranks, then its checksums and META, then mark it latest (rank 0)."""
    from megatron.core import dist_checkpointing

    if optimizer_format not in OPTIMIZER_FORMATS:
        raise ConfigError(f"checkpoint.optimizer_format: expected one of {OPTIMIZER_FORMATS}, got {optimizer_format!r}")
    rank = torch.distributed.get_rank()
    target = iter_dir(root, iteration)
    if rank == 0:
        # A directory here is a half-written save of a killed run (or a damaged one): start it afresh.
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
    _barrier()
    model_sd = model.sharded_state_dict()
    state = {
        "model": model_sd,
        "optimizer": optimizer.sharded_state_dict(model_sd, metadata=sharded_metadata(optimizer_format)),
        "scheduler": scheduler.state_dict(),
        "iteration": iteration,
        "rng_state": _rng_sharded(_rng_state()),
    }
    if faults.active():
        cpu_compat.kill_points_in_checkpoint_writer()
    dist_checkpointing.save(state, str(target), sharded_strategy=_save_strategy(fully_parallel))
    faults.point(f"checkpoint.files_written:{iteration}")  # every file whole, no checksums, no META
    _barrier()
    files = checksums(target)
    if rank == 0:
        write_meta(target, {**meta, "iteration": iteration, "topology": topology(),
                            "optimizer_format": _optimizer_format(optimizer, optimizer_format), "files": files})
        faults.point(f"checkpoint.meta_written:{iteration}")  # complete, but ``latest`` names the one before
        mark_latest(root, iteration)
        faults.point(f"checkpoint.latest_written:{iteration}")
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
            # META first: a prune killed half-way leaves an incomplete directory (never resumed from, and
            # removed by the next prune), not a "complete" checkpoint with files missing
            (iter_dir(root, it) / META).unlink(missing_ok=True)
            faults.point(f"checkpoint.pruning:{it}")
            shutil.rmtree(iter_dir(root, it), ignore_errors=True)
    for p in Path(root).glob("iter_*"):  # older saves that never finished, or prunes killed half-way
        if p.name[5:].isdigit() and int(p.name[5:]) < latest and not (p / META).is_file():
            shutil.rmtree(p, ignore_errors=True)


def load_checkpoint(ckpt_dir, model, optimizer=None, scheduler=None, fully_parallel: bool = True) -> int:
    """Load a checkpoint into this rank's model (and optimizer, scheduler, RNG).

    Weights only when ``optimizer`` is None (phase-to-phase continuation).
    The optimizer is read in the format it was saved in (``optimizer_format`` in META;
    checkpoints without it were written ``fully_reshardable``).
    RNG states are restored only under the topology they were saved with.
    Returns the checkpoint's iteration.
    """
    from megatron.core import dist_checkpointing

    meta = read_meta(ckpt_dir)
    model_sd = model.sharded_state_dict()
    state = {"model": model_sd}
    same_topology = meta.get("topology") == topology()
    if optimizer is not None:
        cpu_compat.prepare_optimizer_load(optimizer)
        saved_format = meta.get("optimizer_format", "fully_reshardable")
        if saved_format not in OPTIMIZER_FORMATS:
            saved_format = "fully_reshardable"  # per-parameter state: the metadata is not used
        state["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True,
                                                          metadata=sharded_metadata(saved_format))
        if same_topology:
            state["rng_state"] = _rng_sharded(_rng_state())
    loaded = dist_checkpointing.load(state, str(ckpt_dir), sharded_strategy=_load_strategy(ckpt_dir, fully_parallel))
    model.load_state_dict(loaded["model"], strict=True)
    if optimizer is not None:
        # no_grad: with fp32 training the distributed optimizer's main params are views of the
        # model's (grad-requiring) params, and its dp_reshardable loader copies into them in place.
        with torch.no_grad():
            optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["scheduler"])
        if same_topology:
            _set_rng_state(loaded["rng_state"])
    _barrier()
    return int(meta["iteration"])
