"""Sharded checkpoints with megatron dist_checkpointing (torch_dist format).

Layout of a save directory::

    SAVE/iter_0000040/       one checkpoint (dist_checkpointing files + snow_meta.json)
    SAVE/latest              the iteration of the newest COMPLETE checkpoint

``snow_meta.json`` is written last, after every rank has finished writing, and
lists every file of the checkpoint with its size and SHA-256 (each rank hashes
the files it wrote). ``latest`` is then replaced atomically, so a save killed
half-way is never resumed from (its directory is overwritten by the next save
of that iteration). The last ``keep_last`` are kept.

Save and load are fully parallel (megatron's ``FullyParallelSave/Load
StrategyWrapper`` over the data-parallel group): each DP rank writes and reads
its own share, nobody gathers the whole state. The distributed optimizer is
stored ``dp_reshardable`` by default (each rank's flat buffer shard as is: no
gather on save, no reshaping on load; loads at any DP size but the same TP/PP),
or ``fully_reshardable`` (per parameter: loads at any TP/PP/DP, but a save
gathers every buffer). Model weights are always per parameter, so a checkpoint
written at one TP/PP loads at another.

On resume the newest checkpoint is verified against its checksums (the files
split over all ranks); a damaged or incomplete one is reported in one line and
the newest intact one is used instead, or the run stops
(``checkpoint.on_damaged``). ``snow_meta.json`` also records the model shape,
topology, schedule and data identity: a mismatching run is refused with one
line before any model is built.

Only load checkpoints you trust: torch's distributed checkpoint format
unpickles Python objects.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch

from megatron_snow import faults
from megatron_snow.config import ConfigError

LATEST = "latest"
META = "snow_meta.json"
# How the distributed optimizer's state is stored (megatron-core's distrib_optim_sharding_type).
OPTIMIZER_FORMATS = ("dp_reshardable", "fully_reshardable")
_OWNED_FILE = re.compile(r"__(\d+)_\d+\.distcp$")  # torch_dist: __{global rank}_{n}.distcp


def sharded_metadata(optimizer_format: str) -> dict:
    return {"distrib_optim_sharding_type": optimizer_format, "chained_optim_avoid_prefix": True}


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
        faults.write_in_halves(f, text, f"checkpoint.write_half:{path.name}")
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


def _world() -> tuple[int, int]:
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather(obj) -> list:
    rank, world = _world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _owner(index: int, name: str, world: int) -> int:
    """The rank that hashes (on save) or verifies (on load) a file: its writer when the
    name says (torch_dist's per-rank files), else spread round-robin."""
    m = _OWNED_FILE.search(name)
    if m and int(m.group(1)) < world:
        return int(m.group(1))
    return index % world


def _checksums(target: Path) -> dict:
    """{file: {"bytes", "sha256"}} of every file in target (except META), each rank hashing its share."""
    rank, world = _world()
    names = sorted(p.name for p in target.iterdir() if p.is_file() and p.name != META) if rank == 0 else None
    if world > 1:  # one directory listing (rank 0's), not one per rank on the parallel file system
        box = [names]
        torch.distributed.broadcast_object_list(box, src=0)
        names = box[0]
    mine = {n: {"bytes": (target / n).stat().st_size, "sha256": _sha256(target / n)}
            for i, n in enumerate(names) if _owner(i, n, world) == rank}
    merged: dict = {}
    for part in _gather(mine):
        merged.update(part)
    return dict(sorted(merged.items()))


def verify_checkpoint(ckpt_dir: str | Path) -> str | None:
    """What is wrong with a checkpoint's files (missing, truncated, altered), or None.

    Collective when a process group exists: every rank checks a share of the files
    and all ranks return the same answer. Checkpoints written before checksums
    were recorded are not checked (None)."""
    ckpt_dir = Path(ckpt_dir)
    try:
        files = read_meta(ckpt_dir).get("files")
    except (OSError, ValueError) as e:
        files, local = None, f"{META} unreadable ({type(e).__name__})"
    else:
        local = None
    rank, world = _world()
    if files is not None:
        for i, (name, want) in enumerate(files.items()):
            if local or _owner(i, name, world) != rank:
                continue
            path = ckpt_dir / name
            if not path.is_file():
                local = f"{name} is missing"
            elif path.stat().st_size != want["bytes"]:
                local = f"{name} has {path.stat().st_size} bytes, {want['bytes']} were written"
            elif _sha256(path) != want["sha256"]:
                local = f"{name} does not match its SHA-256"
    problems = [p for p in _gather(local) if p]
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return problems[0] + more


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
        _kill_points_in_file_writer()
    dist_checkpointing.save(state, str(target), sharded_strategy=_save_strategy(fully_parallel))
    faults.point(f"checkpoint.files_written:{iteration}")  # every file whole, no checksums, no META
    _barrier()
    files = _checksums(target)
    if rank == 0:
        full_meta = {**meta, "iteration": iteration, "topology": _topology(),
                     "optimizer_format": _optimizer_format(optimizer, optimizer_format), "files": files}
        _write_atomic(target / META, json.dumps(full_meta, indent=1))
        faults.point(f"checkpoint.meta_written:{iteration}")  # complete, but ``latest`` names the one before
        _write_atomic(Path(root) / LATEST, f"{iteration}\n")
        faults.point(f"checkpoint.latest_written:{iteration}")
        _prune(root, keep_last)
    _barrier()
    return target


def _kill_points_in_file_writer() -> None:
    """Kill tests only: a point after each item megatron's torch_dist writer puts into a checkpoint file
    (the item flushed, the file not yet whole), so a run can be killed with its files half written.
    The writer runs in forked processes; ``faults.kill`` ends the training process from there."""
    from megatron.core.dist_checkpointing.strategies import filesystem_async

    original = filesystem_async._write_item
    if getattr(original, "_snow_kill_point", False):
        return

    @functools.wraps(original)  # megatron inspects its signature
    def write_item(*args, **kwargs):
        result = original(*args, **kwargs)
        stream = next((a for a in args if hasattr(a, "flush") and hasattr(a, "name")), None)
        if stream is not None:
            stream.flush()
            name = Path(stream.name)
            faults.point(f"checkpoint.file_half:{name.parent.name}/{name.name}")
        return result

    write_item._snow_kill_point = True
    filesystem_async._write_item = write_item


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


# --- megatron-core 0.16.1 distributed optimizer over torch Adam (no Apex/TE) ---
# Without Apex or Transformer Engine (CPU runs, or GPU nodes without TE) the
# DistributedOptimizer keeps torch Adam's per-parameter "step", and two of its
# load paths trip over it: state_dict() asserts a common step that a fresh
# optimizer lacks, and the param-state loaders copy every state key, "step"
# included, from tensors that hold no saved step (fully_reshardable has none,
# dp_reshardable a non-persistent stale one; the step comes back through the
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
    """Give each parameter its own Adam "step" (the value restored from the checkpoint's
    param groups) when the param-state loader sets its state."""
    from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer

    if getattr(DistributedOptimizer, "_snow_keeps_step", False):
        return
    original = DistributedOptimizer._set_main_param_and_optimizer_states

    def set_states(self, model_param, tensors):
        if not self.config.use_precision_aware_optimizer_no_fp8_or_ds_fp8:
            group_index, group_order = self.model_param_group_index_map[model_param]
            main_param = self.optimizer.param_groups[group_index]["params"][group_order]
            state = self.optimizer.state[main_param]
            if "step" in state:
                # load_state_dict gave every parameter the SAME step tensor, which
                # torch Adam would then increment once per parameter: unshare it, and keep
                # that value (restored from the checkpoint's param groups). The checkpoint's
                # per-parameter tensors hold no step (fully_reshardable), or a non-persistent
                # one that is the loading optimizer's own stale value (dp_reshardable).
                state["step"] = state["step"].clone()
                tensors = {**tensors, "step": state["step"]}
        return original(self, model_param, tensors)

    DistributedOptimizer._set_main_param_and_optimizer_states = set_states
    DistributedOptimizer._snow_keeps_step = True


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
    same_topology = meta.get("topology") == _topology()
    if optimizer is not None:
        if _torch_adam_distopt():
            _prime_empty_optimizer_state(optimizer)
            _keep_step_when_loading_param_state()
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


# --- choosing what to resume from -------------------------------------------------------


def complete_iterations(root) -> list[int]:
    """Iterations of the checkpoints in root whose save finished (META written), newest first."""
    out = []
    for p in Path(root).glob("iter_*"):
        try:
            it = int(p.name.split("_")[1])
        except ValueError:
            continue
        if (p / META).is_file():
            out.append(it)
    return sorted(out, reverse=True)


def resume_candidate(root, on_damaged: str = "fallback", say=print) -> Path | None:
    """The checkpoint a restart should try first (no file is read but markers and META).

    ``latest`` names it; when the marker is corrupt or names a checkpoint whose save did not
    finish, that is said in one line and the newest complete one is used (or, with
    on_damaged=stop, the run stops)."""
    if not root or not Path(root).is_dir():
        return None
    marker = Path(root) / LATEST
    done = complete_iterations(root)
    if not marker.is_file():
        # no marker: a new run (or one killed before its first save finished)
        return iter_dir(root, done[0]) if done else None
    text = marker.read_text().strip()
    try:
        it = int(text)
    except ValueError:
        problem = f"checkpoint marker {marker} is corrupt: {text[:40]!r}"
    else:
        if it in done:
            return iter_dir(root, it)
        problem = f"checkpoint {iter_dir(root, it)} named by {marker} is incomplete (no {META})"
    older = [d for d in done if not text.isdigit() or d < int(text)]
    if on_damaged == "stop" or not older:
        raise ConfigError(problem + ("; no older complete checkpoint to fall back to" if not older else
                                     "; checkpoint.on_damaged=fallback would resume from "
                                     f"{iter_dir(root, older[0])}"))
    say(f"warning: {problem}; falling back to {iter_dir(root, older[0])}")
    return iter_dir(root, older[0])


def pick_intact(first: Path | None, on_damaged: str = "fallback", say=print) -> Path | None:
    """Verify ``first`` against its checksums (collective); if damaged, say so in one line and
    try the next older complete checkpoint, or stop (on_damaged=stop). None if first is None."""
    if first is None:
        return None
    root = Path(first).parent
    older = [iter_dir(root, it) for it in complete_iterations(root) if it < int(read_meta(first)["iteration"])]
    chain = [Path(first)] + older
    for i, ckpt_dir in enumerate(chain):
        problem = verify_checkpoint(ckpt_dir)
        if problem is None:
            return ckpt_dir
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        if on_damaged == "stop":
            raise ConfigError(f"checkpoint {ckpt_dir} is damaged: {problem}" + (
                f"; checkpoint.on_damaged=fallback would resume from {nxt}" if nxt else ""))
        if nxt is None:
            raise ConfigError(f"checkpoint {ckpt_dir} is damaged: {problem}; no older intact checkpoint "
                              f"in {root} (move the directory away to start afresh)")
        say(f"warning: checkpoint {ckpt_dir} is damaged: {problem}; falling back to {nxt}")
    return None


# --- what a resumed run must share with its checkpoint ------------------------------------


def _idx_counts(prefix: str) -> dict:
    """A dataset's size: its sequence count (Megatron .idx header) and .bin size."""
    with open(prefix + ".idx", "rb") as f:
        head = f.read(26)  # magic (9), version (8), dtype code (1), sequence count (8)
    seqs = struct.unpack("<Q", head[18:26])[0] if len(head) == 26 else None
    return {"sequences": seqs, "bin_bytes": os.path.getsize(prefix + ".bin")}


def data_identity(cfg) -> dict:
    """What fixes the sample order behind a saved data position: blend (weights and each
    dataset's size), split, seed, sequence length and the number of training samples."""
    prefixes, weights = cfg.data.prefixes()
    t = cfg.training
    return {
        "blend": [{"weight": w, "prefix": p, **_idx_counts(p)} for p, w in zip(prefixes, weights)],
        "split": cfg.data.split,
        "seed": t.seed,
        "seq_length": cfg.data.seq_length,
        "train_samples": t.train_iters * t.global_batch_size,
    }


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
    strip = lambda blend: [{k: v for k, v in b.items() if k != "prefix"} for b in blend]  # noqa: E731
    if strip(saved["blend"]) != strip(now["blend"]):
        diffs.append("data.blend " + json.dumps(strip(saved["blend"])) + " vs " + json.dumps(strip(now["blend"])))
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
            f"the saved TP/PP with checkpoint.optimizer_format=fully_reshardable until its next save, or start a new run "
            f"with checkpoint.load_from={ckpt_dir} (weights only)")
