"""Sharded training checkpoints (megatron-core dist_checkpointing, torch_dist format), by concern:

- ``layout``: a save root's names: ``iter_NNNNNNN/`` (one checkpoint, ``snow_meta.json`` written
  last) and ``latest`` (the newest complete one, replaced atomically), so a save killed half-way
  is never resumed from;
- ``store``: save and load through dist_checkpointing, fully parallel over the data-parallel
  group, and pruning to ``keep_last``;
- ``integrity``: the SHA-256 of every file, recorded on save and verified on resume; a damaged or
  incomplete checkpoint is reported in one line and the newest intact one used, or the run stops
  (``checkpoint.on_damaged``);
- ``resume``: what a resumed run must share with its checkpoint (model shape, schedule, data
  identity, optimizer layout), recorded on save and checked before any model is built.

megatron-core's own code that a checkpoint needs changed lives in ``training/cpu_compat.py``.
Only load checkpoints you trust: torch's distributed checkpoint format unpickles Python objects.
"""
from megatron_snow.training.checkpoint.integrity import pick_intact, resume_candidate, verify_checkpoint
from megatron_snow.training.checkpoint.layout import (LATEST, META, complete_iterations, iter_dir, latest_iteration,
                                                      mark_latest, read_meta, resolve, write_meta)
from megatron_snow.training.checkpoint.resume import (check_resumable, data_identity, find_resume, model_shape,
                                                      recorded_facts, schedule_facts, verified_resume)
from megatron_snow.training.checkpoint.store import OPTIMIZER_FORMATS, load_checkpoint, save_checkpoint

__all__ = [
    "LATEST", "META", "OPTIMIZER_FORMATS", "check_resumable", "complete_iterations", "data_identity", "find_resume",
    "iter_dir", "latest_iteration", "load_checkpoint", "mark_latest", "model_shape", "pick_intact", "read_meta",
    "recorded_facts", "resolve", "resume_candidate", "save_checkpoint", "schedule_facts", "verified_resume",
    "verify_checkpoint", "write_meta",
]
