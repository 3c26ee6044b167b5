"""Run under ``torchrun --nproc-per-node 2``: train several tiny models with this project's Trainer
(TP=2, PP=2 or DP=2; GQA or MHA; tied or untied), each saving a real checkpoint, then record
the distributed model's own logits on fixed tokens and its greedy continuation.

    torchrun --nproc-per-node 2 save_variants.py SPEC.json

SPEC: {"variants": {name: [key=value, ...]}, "tokens": [...], "vocab_size": V, "new_tokens": 16}.
Writes, per variant, WORK/<name>/megatron.pt (logits [T, V] and greedy ids, from the last
pipeline stage) and WORK/<name>/rank<r>.json (each rank's rank, world and TP/PP coordinates).
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import torch


def _forward_logits(model, tokens: list[int]) -> torch.Tensor | None:
    """Full-vocabulary logits [T, padded V] on the last pipeline stage (None elsewhere)."""
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func
    from megatron.core.tensor_parallel import gather_from_tensor_model_parallel_region

    n = len(tokens)
    batch = {
        "tokens": torch.tensor([tokens]),
        "position_ids": torch.arange(n).unsqueeze(0),
        "attention_mask": torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)[None, None],
    }

    def step(data_iterator, m):
        b = next(data_iterator)
        return m(b["tokens"], b["position_ids"], b["attention_mask"]), None

    with torch.no_grad():
        out = get_forward_backward_func()(forward_step_func=step, data_iterator=iter([batch]), model=[model],
                                          num_microbatches=1, seq_length=n, micro_batch_size=1, forward_only=True)
    if not ps.is_pipeline_last_stage():
        return None
    logits = gather_from_tensor_model_parallel_region(out[0])  # [1, T, V/tp] -> [1, T, V]
    return logits[0].float()


def _greedy(model, prompt: list[int], vocab: int, new_tokens: int) -> list[int]:
    """Greedy decoding over the real vocabulary, the chosen id shared by every rank."""
    from megatron.core import parallel_state as ps

    ids = list(prompt)
    for _ in range(new_tokens):
        logits = _forward_logits(model, ids)
        choice = torch.zeros(1, dtype=torch.long)
        if logits is not None and ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
            choice[0] = int(torch.argmax(logits[-1, :vocab]))
        torch.distributed.all_reduce(choice)
        ids.append(int(choice[0]))
    return ids[len(prompt):]


def run_variant(name: str, overrides: list[str], spec: dict, work: Path) -> None:
    from megatron.core import parallel_state as ps

    from megatron_snow.training.config import load_train_config
    from megatron_snow.training.trainer import Trainer, init_distributed, preflight, world_size_from_env

    cfg = load_train_config(None, overrides)
    plan = preflight(cfg, world_size_from_env())
    init_distributed(cfg)
    trainer = Trainer(cfg, plan)
    trainer.train()
    trainer.model.eval()
    rank = torch.distributed.get_rank()
    out = work / name
    (out / f"rank{rank}.json").write_text(json.dumps({
        "rank": rank, "world": torch.distributed.get_world_size(), "tp": ps.get_tensor_model_parallel_world_size(),
        "pp": ps.get_pipeline_model_parallel_world_size(), "tp_rank": ps.get_tensor_model_parallel_rank(),
        "pp_rank": ps.get_pipeline_model_parallel_rank()}))
    logits = _forward_logits(trainer.model, spec["tokens"])
    greedy = _greedy(trainer.model, spec["prompt"], spec["vocab_size"], spec["new_tokens"])
    if logits is not None and ps.get_tensor_model_parallel_rank() == 0 and ps.get_data_parallel_rank() == 0:
        torch.save({"logits": logits, "greedy": greedy}, out / "megatron.pt")
    torch.distributed.barrier()
    ps.destroy_model_parallel()


def main() -> None:
    warnings.filterwarnings("ignore")
    spec = json.loads(Path(sys.argv[1]).read_text())
    work = Path(spec["work"])
    for name, overrides in spec["variants"].items():
        run_variant(name, overrides, spec, work)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":  # dist_checkpointing's writer starts workers with spawn
    main()
